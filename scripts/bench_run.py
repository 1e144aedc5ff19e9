"""`recon3d run` wall time: the first run on the rendered ``orbit`` scene (SfM + evaluation, no
training) and reruns that find every stage done and skip it (what ``tests/test_run.py`` used to
time). Each run is a fresh ``python -m recon3d run`` process, so the times include the interpreter
and imports, as a user sees them. Writes ``benchmarks/results/run.{md,json}``.

  python scripts/bench_run.py [--reruns 5] [--max-image-size 400] [--max-features 2048]
  python scripts/bench_run.py --workspace WS --reruns 3   # reruns only, on a finished workspace
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import (  # first: this checkout on sys.path
    REPO,
    RESULTS,
    cache_or,
    md_table,
    scene_dir,
    write_report,
)


def timed_run(ws: Path, extra: list[str]) -> tuple[float, str]:
    """Seconds of one ``recon3d run -o ws --train none`` process, and its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "recon3d", "run", "-o", str(ws), "--train", "none", *extra],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"recon3d run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reruns", type=int, default=5, help="reruns timed after the first run")
    ap.add_argument("--max-image-size", type=int, default=400)
    ap.add_argument("--max-features", type=int, default=2048)
    ap.add_argument("--workspace", type=Path, help="a finished workspace: time reruns only (skips the first run)")
    ap.add_argument("--out", type=Path, default=RESULTS / "run.md")
    args = ap.parse_args(argv)
    extra = ["--max-image-size", str(args.max_image_size), "--max-features", str(args.max_features)]

    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        first = None
        if args.workspace:
            ws = args.workspace
        else:
            ws = Path(tmp) / "ws"
            shutil.copytree(scene_dir("orbit", cache_or(Path(tmp) / "scenes")), ws)
            first, out = timed_run(ws, extra)
            print(f"first run: {first:.1f} s", flush=True)
        reruns = []
        for i in range(args.reruns):
            seconds, out = timed_run(ws, extra)
            if "sfm: already done" not in out or "eval: already done" not in out:
                raise SystemExit(f"rerun {i + 1} did not skip the finished stages:\n{out}")
            reruns.append(seconds)
            print(f"rerun {i + 1}: {seconds:.1f} s", flush=True)

    load = os.getloadavg()[0]
    rows = []
    if first is not None:
        rows.append(("first run (scene already rendered; SfM + evaluation)", f"{first:.1f}", "1"))
    if reruns:
        rows.append(("rerun, every stage skipped (median)", f"{statistics.median(reruns):.1f}", str(len(reruns))))
        rows.append(("rerun, slowest", f"{max(reruns):.1f}", str(len(reruns))))
    lines = [
        "# `recon3d run` wall time, orbit scene",
        "",
        f"`recon3d run -o WS --train none --max-image-size {args.max_image_size} --max-features "
        f"{args.max_features}` on the rendered 24-view `orbit` scene, each run a fresh process "
        f"(interpreter start and imports included). Machine: {os.cpu_count()} cores, load average "
        f"{load:.1f} at the end.",
        "",
        *md_table(["run", "seconds", "runs"], rows),
        "",
        "A rerun reads the stage markers and skips SfM, evaluation and training; its time is mostly "
        "the interpreter and imports.",
    ]
    data = {"first_run_s": first, "reruns_s": reruns, "max_image_size": args.max_image_size,
            "max_features": args.max_features, "cpus": os.cpu_count(), "load_average": load}
    write_report(args.out, lines, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
