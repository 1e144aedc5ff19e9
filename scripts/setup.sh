#!/usr/bin/env bash
# Set up recon3d on a fresh Debian/Ubuntu machine: system packages, then the Python package.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: libusb for open3d, chromium for the browser-viewer tests, colmap for benchmarks.
need=()
for pkg in libusb-1.0-0 chromium colmap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need[*]} (apt)"
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${need[@]}" >/dev/null; }
fi

# Python package (torch is pinned to 2.13.0; pip finds the CPU wheel in /opt/wheels where present).
if ! python3 -c "import recon3d, pycolmap, gsplat, viser, open3d, cv2, torch, playwright, ray, xdist, filelock
from importlib.metadata import version
assert tuple(int(x) for x in version('pytest-xdist').split('.')[:2]) >= (3, 8)" >/dev/null 2>&1 \
   || [ "$(python3 -c 'import recon3d, os; print(os.path.dirname(os.path.dirname(recon3d.__file__)))' 2>/dev/null)" != "$PWD" ]; then
  echo "setup: installing recon3d and its Python dependencies (pip)"
  python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
fi
echo "setup: ok ($(python3 -c 'import recon3d, torch, pycolmap; print(f"recon3d {recon3d.__version__}, torch {torch.__version__}, pycolmap {pycolmap.__version__}")'))"
