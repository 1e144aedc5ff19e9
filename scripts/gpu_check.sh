#!/usr/bin/env bash
# Prove recon3d's GPU path on a Linux machine with an NVIDIA GPU, a CUDA torch and nvcc, and NO package index.
#
#   bash scripts/gpu_bundle.sh .gpu_bundle              # beforehand, where the package index is reachable
#   bash scripts/gpu_check.sh                           # on the GPU machine (bundle .gpu_bundle, data ../shared/data)
#   bash scripts/gpu_check.sh --bundle DIR --data DIR --out DIR
#   bash scripts/gpu_check.sh --dry-run                 # on a CPU machine: check the bundles and the plan
#   bash scripts/gpu_check.sh --print-plan              # the steps and their time limits
#
# Installs the bundle's wheels into python3's environment (pip --no-index; what the image already has is
# used as it is) and recon3d's own wheel with --no-deps (the machine's CUDA torch stays), compiles gsplat's
# CUDA kernels for the GPU found (TORCH_CUDA_ARCH_LIST from torch.cuda.get_device_capability(), MAX_JOBS =
# cores), then runs each step of the plan under its own time limit (together under 9 minutes): the
# CUDA-marked tests, `recon3d run` on the orbit scene with the splat preset (short schedule), the fern
# splat benchmark (7000 steps) and the NeRF benchmark (time-boxed). Every result goes into one small folder
# (default benchmarks/gpu/<date>-<gpu>/): summary.md (GPU, driver, versions, each step's outcome and time),
# the benchmark tables and one log per step. A failed step is recorded and the next one runs, except after
# a failed install or compile. Exit status: 0 when every step passed, 1 otherwise, 2 for bad arguments.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HERE="$PWD"
cd "$ROOT"

# The plan: name, time limit (s), command. Limits + KILL_GRACE per step must stay under 540 s
# (tests/test_gpu_kit.py checks); `timeout` sends TERM at the limit and KILL KILL_GRACE s later.
KILL_GRACE=2
# The fourth field names the step's log file in the results folder (few files: the device tool returns 8).
PLAN=(
  "install|25|install_bundle|setup"
  "compile|170|compile_gsplat|setup"
  "tests|135|run_tests|tests"
  "run|60|run_orbit|run"
  "splat|85|bench_splat|bench"
  "nerf|45|bench_nerf|bench"
)

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "gpu_check: $*" >&2; exit 2; }

BUNDLE="$ROOT/.gpu_bundle"; DATA=""; OUT=""; DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) [ $# -ge 2 ] || die "--bundle needs a folder"; BUNDLE="$2"; shift 2 ;;
    --data) [ $# -ge 2 ] || die "--data needs a folder"; DATA="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --print-plan)
      for step in "${PLAN[@]}"; do IFS='|' read -r name limit fn _ <<<"$step"; echo "$name $limit $fn"; done
      echo "kill_grace $KILL_GRACE"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

abspath() { case "$1" in /*|"") echo "$1" ;; *) echo "$HERE/$1" ;; esac; }
BUNDLE="$(abspath "$BUNDLE")"; DATA="$(abspath "$DATA")"; OUT="$(abspath "$OUT")"

plan_total() {
  local total=0 name limit rest
  for step in "${PLAN[@]}"; do IFS='|' read -r name limit rest <<<"$step"; total=$((total + limit + KILL_GRACE)); done
  echo "$total"
}

# ------------------------------------------------------------------------------------------- dry run
if [ "$DRY" = 1 ]; then
  set -e
  unset PYTHONPATH  # the fresh venv must import the installed wheel, not a checkout
  total=$(plan_total)
  echo "gpu_check --dry-run: plan of ${#PLAN[@]} steps, limits + grace = ${total} s (must be < 540 s)"
  [ "$total" -lt 540 ] || { echo "gpu_check: the plan's limits add up to ${total} s, over 9 minutes" >&2; exit 1; }
  bash -n "$ROOT/scripts/gpu_bundle.sh"; bash -n "$0"
  work="$(mktemp -d /tmp/recon3d_gpu_dry.XXXXXX)"
  trap 'rm -rf "$work"' EXIT
  host_py="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  # 1. completeness: a bundle for this machine's Python, nothing assumed but torch, into a fresh venv
  echo "gpu_check --dry-run: [1/2] bundle for CPython $host_py (image 'bare') -> fresh venv, --no-index"
  python3 "$ROOT/scripts/gpu_kit.py" bundle "$work/bundle_host" --python "$host_py" --image bare
  python3 -m venv "$work/venv"
  # the GPU image has torch: here the venv gets the CPU build of the same version, as pip is set up here
  "$work/venv/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 \
    | { grep -v "^WARNING: Location .* is ignored" || true; }
  BUNDLE="$work/bundle_host"
  env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    "$work/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$BUNDLE" \
    -r "$BUNDLE/requirements.txt"
  env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$work/venv/bin/python" -m pip install -q \
    --disable-pip-version-check --no-index --no-deps "$BUNDLE"/recon3d-*.whl
  (cd "$work" && "$work/venv/bin/python" -c "
import recon3d, recon3d.splat, recon3d.nerf, recon3d.cli, gsplat, pycolmap, viser, cv2, pytest
from recon3d.splat import rasterize, strategy, train
from recon3d.nerf import train as nerf_train
assert recon3d.__file__.startswith('$work'), recon3d.__file__
print('gpu_check --dry-run: fresh venv imports recon3d.splat and recon3d.nerf from', recon3d.__file__)")
  # the CUDA tests collect (their imports are all in the bundle); they are skipped without a GPU
  mapfile -t cuda_files < <(grep -l "pytest.mark.cuda" "$ROOT"/tests/test_*.py)
  (cd "$ROOT" && "$work/venv/bin/python" -m pytest -q -p no:cacheprovider --collect-only -m cuda \
    "${cuda_files[@]}" | tail -n 1)
  # 2. size: the bundle for the GPU image (CPython 3.12, manylinux x86-64)
  echo "gpu_check --dry-run: [2/2] bundle for CPython 3.12 / manylinux_2_28_x86_64 (image 'cuda')"
  python3 "$ROOT/scripts/gpu_kit.py" bundle "$work/bundle312" --python 3.12 --image cuda
  size=$(python3 "$ROOT/scripts/gpu_kit.py" size "$work/bundle312")
  echo "gpu_check --dry-run: bundle for Python 3.12: ${size} MiB (limit 60 MiB)"
  python3 -c "import sys; sys.exit(0 if $size < 60 else 1)" \
    || { echo "gpu_check: the Python 3.12 bundle is ${size} MiB, over 60 MiB" >&2; exit 1; }
  echo "gpu_check --dry-run: ok (plan ${total} s < 540 s, host bundle installs with --no-index, 3.12 bundle ${size} MiB)"
  exit 0
fi

# -------------------------------------------------------------------------------------- on the GPU
[ -f "$BUNDLE/requirements.txt" ] || die "$BUNDLE: no bundle there (make one with: bash scripts/gpu_bundle.sh $BUNDLE)"
if [ -z "$DATA" ]; then
  for d in "$ROOT/../shared/data" "$ROOT/.gpu_data"; do [ -d "$d/fern" ] && { DATA="$d"; break; }; done
fi
[ -n "$DATA" ] && [ -d "$DATA/fern" ] || die "no fern photos found (../shared/data/fern or .gpu_data/fern); give --data DIR holding fern/"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || die "no CUDA GPU visible to python3's torch (torch.cuda.is_available() is False)"
GPU="$(python3 -c 'import torch; print(torch.cuda.get_device_name(0))')"
SLUG="$(echo "$GPU" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\{1,\}/-/g; s/^-//; s/-$//')"
[ -n "$OUT" ] || OUT="$ROOT/benchmarks/gpu/$(date -u +%Y-%m-%d)-$SLUG"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d /tmp/recon3d_gpu.XXXXXX)"
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST="$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')"
export MAX_JOBS="$(nproc)"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$HOME/.cache/recon3d_torch_extensions}"
export RECON3D_TEST_CACHE="$WORK/cache"

install_bundle() {
  python3 -m pip install -q --disable-pip-version-check --no-index --find-links "$BUNDLE" -r "$BUNDLE/requirements.txt" \
    && python3 -m pip install -q --disable-pip-version-check --no-index --no-deps --force-reinstall "$BUNDLE"/recon3d-*.whl \
    && (cd "$WORK" && python3 -c "import recon3d.splat, recon3d.nerf, gsplat, pycolmap, viser, cv2; print('imports ok')")
}
compile_gsplat() {
  echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS TORCH_EXTENSIONS_DIR=$TORCH_EXTENSIONS_DIR"
  python3 -c "
import time; t = time.time()
from gsplat.cuda._backend import _C
assert _C is not None, 'gsplat CUDA extension did not build'
print(f'gsplat CUDA kernels ready in {time.time() - t:.0f} s')"
}
# test_run_end_to_end_on_cuda is left to the run step (the same pipeline, with the splat preset)
run_tests() {
  mapfile -t files < <(grep -l "pytest.mark.cuda" tests/test_*.py)
  python3 -m pytest -m cuda -k "not test_run_end_to_end_on_cuda" -q -p no:cacheprovider -rsP "${files[@]}"
}
run_orbit() {
  # the orbit scene as the tests rendered it (when they did): `recon3d run` then skips rendering
  [ -f "$RECON3D_TEST_CACHE/orbit/scene.yaml" ] && cp -r "$RECON3D_TEST_CACHE/orbit" "$WORK/orbit"
  python3 -m recon3d run -o "$WORK/orbit" --train splat --steps 2000 --train-device cuda \
    && echo "orbit splat/metrics.json:" && cat "$WORK/orbit/splat/metrics.json"
}
bench_splat() {
  python3 scripts/bench_splat_gpu.py --fern "$DATA/fern" --out "$WORK/fern_splat" --steps 7000 --results "$OUT/splat_gpu.md"
}
bench_nerf() {
  python3 scripts/bench_nerf_gpu.py --data "$DATA/fern" --workspace "$WORK/fern_nerf" --minutes 0.3 \
    --eval-every 500 --out "$OUT/nerf_gpu.md"
}

{
  echo "# recon3d GPU check: $GPU"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') with \`bash scripts/gpu_check.sh\` (recon3d $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))."
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 | head -n 3
  python3 -c "import torch, sys, platform; print(f'python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {platform.platform()}')"
  nvcc --version 2>&1 | tail -n 1
  echo "cores $(nproc), TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
  echo '```'
  echo
  echo "| step | limit s | took s | result |"
  echo "|---|---|---|---|"
} > "$OUT/summary.md"

failed=0; stop=0; start_all=$(date +%s)
for step in "${PLAN[@]}"; do
  IFS='|' read -r name limit fn logname <<<"$step"
  log="$OUT/$logname.log"
  if [ "$stop" = 1 ]; then echo "| $name | $limit | - | not run (an earlier step failed) |" >> "$OUT/summary.md"; continue; fi
  echo "gpu_check: $name (limit $limit s) -> $log"
  t0=$(date +%s)
  export -f install_bundle compile_gsplat run_tests run_orbit bench_splat bench_nerf
  export BUNDLE DATA OUT WORK
  echo "===== $name (limit $limit s) =====" >> "$log"
  timeout --kill-after="$KILL_GRACE" "$limit" bash -c "$fn" >> "$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - t0 ))
  case $rc in
    0) result="passed" ;;
    124|137) result="**timed out**" ;;
    *) result="**failed** (exit $rc)" ;;
  esac
  [ "$name" = tests ] && result="$result: $(grep -E '(passed|failed|skipped|error)' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//')"
  echo "| $name | $limit | $took | $result |" >> "$OUT/summary.md"
  echo "gpu_check: $name: $result ($took s)"
  if [ $rc -ne 0 ]; then failed=1; tail -n 5 "$log"; case "$name" in install|compile) stop=1 ;; esac; fi
  # keep the folder small: at most 2 MiB of each log (its end)
  if [ "$(stat -c %s "$log")" -gt 2097152 ]; then tail -c 2097152 "$log" > "$log.tmp" && mv "$log.tmp" "$log"; fi
done
{
  echo
  echo "Whole check: $(( $(date +%s) - start_all )) s (the plan's limits: $(plan_total) s)."
  echo
  for f in splat_gpu.md nerf_gpu.md; do [ -f "$OUT/$f" ] && { echo "## $f"; echo; sed '1d' "$OUT/$f"; echo; }; done
} >> "$OUT/summary.md"
rm -rf "$WORK"
echo "gpu_check: results in $OUT ($(du -sh "$OUT" | cut -f1))"
exit $failed
