#!/usr/bin/env bash
# Make the wheel folder that scripts/gpu_check.sh installs recon3d from on a GPU machine with no package index.
#
#   bash scripts/gpu_bundle.sh DIR                      # CPython 3.12, manylinux x86-64, a CUDA image (default)
#   bash scripts/gpu_bundle.sh DIR --python 3.11 --image bare      # everything but torch (a bare image)
#
# Resolves recon3d's dependencies for the target Python and platform with pip (torch taken as installed:
# the GPU machine's CUDA torch is used), leaves out what the GPU checks never import (open3d, playwright)
# and, with --image cuda, what that image already holds (scripts/gpu_image_packages.txt), downloads the
# rest with `pip download --only-binary=:all:`, builds recon3d's own wheel, and writes DIR/requirements.txt
# and DIR/MANIFEST.txt (what was left out and why, the size). Needs the package index; run it beforehand.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && exit 0
  echo "gpu_bundle: give the folder to write the wheels to (e.g. .gpu_bundle)" >&2
  exit 2
fi
exec python3 "$(dirname "$0")/gpu_kit.py" bundle "$@"
