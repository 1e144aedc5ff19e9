"""Benchmark the NeRF backend on the CPU: synthetic orbit scene at 1/8 resolution (80x60), true poses.

  python scripts/bench_nerf_cpu.py                       # writes benchmarks/results/nerf_cpu.md (+ .json)
  python scripts/bench_nerf_cpu.py --steps 3000 --threads 2

Trains preset ``nerf-fast`` on the 21 training views and evaluates the 3 held-out views (every
8th) every ``--eval-every`` steps: rays/s, steps/s and held-out PSNR over training time
(evaluation time excluded). The orbit scene is rendered first unless ``RECON3D_TEST_CACHE`` holds it.
CPU timings depend on what else runs: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from _bench import RESULTS, cache_or, md_table, psnr_history, scene_dir, write_report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (config cpu_threads)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--out", type=Path, default=RESULTS / "nerf_cpu.md")
    args = parser.parse_args()

    import torch

    from recon3d.core.config import apply_overrides
    from recon3d.nerf.config import preset_nerf_fast
    from recon3d.nerf.train import train
    from recon3d.scenes import scene_workspace

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_nerf_orbit_"))
    ws = scene_workspace(scene_dir("orbit", cache_or(tmp)), tmp / "ws")
    config = dataclasses.replace(preset_nerf_fast(), steps=args.steps, device="cpu", downscale=8.0,
                                 eval_every=args.eval_every, cpu_threads=args.threads)
    config = apply_overrides(config, args.set)
    cpu0, t0 = time.process_time(), time.perf_counter()
    train(config, ws, overwrite=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    load_after = os.getloadavg()
    m = json.loads((ws.nerf / "metrics.json").read_text())
    evals = [h for h in m["history"] if "test_psnr" in h]
    first20 = next((h for h in evals if h["test_psnr"] >= 20.0), None)
    lines = [
        "# NeRF CPU benchmark: orbit (synthetic), 80x60, true poses",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} ({os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}), preset `nerf-fast`, {m['num_train_views']} train / "
        f"{m['num_test_views']} held-out views, {m['steps']} steps of {config.batch_rays} rays. Load average before "
        f"{' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)}"
        " (other jobs shared the machine: wall times are inflated; the process CPU time is steadier).",
        "",
        *md_table(["metric", "value"], [
            ("held-out PSNR (final)", f"{m['psnr']:.2f} dB"),
            ("held-out SSIM (final)", f"{m['ssim']:.4f}"),
            ("training time", f"{m['train_seconds']:.0f} s wall"),
            ("process CPU time (all, incl. evaluation)", f"{cpu:.0f} s ({wall:.0f} s wall)"),
            ("steps/s", f"{m['steps_per_s']:.2f}"),
            ("rays/s", f"{m['rays_per_s']:.0f}"),
            ("first held-out PSNR >= 20 dB",
             f"step {first20['step']}, {first20['seconds']:.0f} s" if first20 else "not reached"),
        ]),
        "",
        *psnr_history(evals),
        "",
        f"Reproduce: `python scripts/bench_nerf_cpu.py --steps {args.steps} --eval-every {args.eval_every} "
        f"--threads {args.threads}`.",
        "",
    ]
    write_report(args.out, lines, {"config": dataclasses.asdict(config), "metrics": m, "wall_s": wall, "cpu_s": cpu,
                                   "load_before": load_before, "load_after": load_after})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
