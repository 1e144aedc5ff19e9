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
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def orbit_workspace(root: Path):
    from recon3d.scenes import load_spec, render_scene, write_gt_as_sparse
    from recon3d.workspace import Workspace

    spec = load_spec("orbit")
    cache = os.environ.get("RECON3D_TEST_CACHE")
    src = Path(cache) / "orbit" if cache else None
    if src is None or not Workspace(src).is_done("scene", spec):
        src = root.parent / "orbit_render"
        render_scene(spec, src)
    shutil.copytree(src / "images", root / "images")
    shutil.copytree(src / "gt", root / "gt")
    ws = Workspace(root)
    write_gt_as_sparse(ws)
    return ws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (config cpu_threads)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nerf_cpu.md")
    args = parser.parse_args()

    import torch

    from recon3d.cli.train import apply_overrides
    from recon3d.nerf.config import preset_nerf_fast
    from recon3d.nerf.train import train

    load_before = os.getloadavg()
    ws = orbit_workspace(Path(tempfile.mkdtemp(prefix="bench_nerf_orbit_")) / "ws")
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
        "| metric | value |",
        "|---|---|",
        f"| held-out PSNR (final) | {m['psnr']:.2f} dB |",
        f"| held-out SSIM (final) | {m['ssim']:.4f} |",
        f"| training time | {m['train_seconds']:.0f} s wall |",
        f"| process CPU time (all, incl. evaluation) | {cpu:.0f} s ({wall:.0f} s wall) |",
        f"| steps/s | {m['steps_per_s']:.2f} |",
        f"| rays/s | {m['rays_per_s']:.0f} |",
        f"| first held-out PSNR >= 20 dB | "
        + (f"step {first20['step']}, {first20['seconds']:.0f} s |" if first20 else "not reached |"),
        "",
        "Held-out PSNR over training time (evaluation time excluded):",
        "",
        "| step | train s | held-out PSNR dB |",
        "|---|---|---|",
        *[f"| {h['step']} | {h['seconds']:.0f} | {h['test_psnr']:.2f} |" for h in evals],
        "",
        f"Reproduce: `python scripts/bench_nerf_cpu.py --steps {args.steps} --eval-every {args.eval_every} "
        f"--threads {args.threads}`.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps({"config": dataclasses.asdict(config), "metrics": m,
                                                         "wall_s": wall, "cpu_s": cpu,
                                                         "load_before": load_before, "load_after": load_after},
                                                        indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
