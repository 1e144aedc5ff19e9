#!/usr/bin/env bash
# Run the test suite (sets up first). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
# Two pytest-xdist workers (RECON3D_TEST_WORKERS=N for N, 0 for none), each test file on one worker;
# expensive session fixtures are built once for both (tests/conftest.py: shared_once). The longest files go
# first (tests/conftest.py: HEAVY_FIRST; --no-loadscope-reorder keeps that order instead of xdist's by test count).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
workers="${RECON3D_TEST_WORKERS:-2}"
if [ "$workers" = 0 ]; then exec python3 -m pytest -q "$@"; fi
exec python3 -m pytest -q -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
