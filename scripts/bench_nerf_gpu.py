"""Benchmark the NeRF backend on a GPU: LLFF fern (20 photos, 504x378 as shipped), ground-truth poses.

  python scripts/bench_nerf_gpu.py                       # needs CUDA; writes benchmarks/results/nerf_gpu.md
  python scripts/bench_nerf_gpu.py --steps 20000 --eval-every 1000
  python scripts/bench_nerf_gpu.py --device cpu --steps 300 --downscale 4 --out /tmp/x.md   # a smoke test

The workspace is built from ``../shared/data/fern``: images as shipped, one PINHOLE camera
(f = poses_bounds focal / 8, principal point at the image centre), poses from
``gt/poses_bounds.npy`` (rotation columns down, right, backwards -> OpenCV [col1, col0, -col2]),
no 3D points (near/far come from the bounds). Held-out views: every 8th (image000, 008, 016),
as in the splat backend and the LLFF convention.

It trains preset ``nerf`` with ``eval_every`` held-out evaluations and records steps/s, rays/s, peak
GPU memory and held-out PSNR over training time (evaluation time excluded). Target: held-out
PSNR >= 24 dB within 10 minutes of training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench import (
    RESULTS,
    SHARED_DATA,
    fern_cameras,
    md_table,
    psnr_history,
    write_report,
)

TARGET_DB = 24.0
TARGET_SECONDS = 600.0


def fern_workspace(data: Path, root: Path):
    """A workspace of the fern photos with the ground-truth cameras in sparse/0 (COLMAP binary)."""
    import shutil

    import pycolmap

    from recon3d.core.workspace import Workspace
    from recon3d.io.colmap import Model, ModelImage, write_text_model

    names, camera, poses = fern_cameras(data)
    pb = np.load(data / "gt" / "poses_bounds.npy")
    ws = Workspace(root).create()
    shutil.copytree(data / "images", ws.images, dirs_exist_ok=True)
    images = {i: ModelImage(name, 1, pose) for i, (name, pose) in enumerate(zip(names, poses), start=1)}
    model_name, params = camera.colmap_model()
    cams = {1: (model_name, camera.width, camera.height, params)}
    write_text_model(Model(cams, images), root / "gt_txt")
    ws.model.mkdir(parents=True, exist_ok=True)
    pycolmap.Reconstruction(str(root / "gt_txt")).write_binary(str(ws.model))
    shutil.rmtree(root / "gt_txt")
    near, far = float(pb[:, 15].min()), float(pb[:, 16].max())
    return ws, near, far


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "fern")
    parser.add_argument("--steps", type=int, default=20000, help="steps of the learning-rate schedule")
    parser.add_argument("--minutes", type=float, default=12.0,
                        help="stop training after this much wall time (then evaluate what was trained)")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--downscale", type=float, default=1.0, help="divide the shipped 504x378 by this")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="nerf")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--workspace", type=Path, help="where to build the workspace (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "nerf_gpu.md")
    args = parser.parse_args()

    import torch

    from recon3d.core import registry as presets
    from recon3d.core.config import apply_overrides
    from recon3d.nerf.train import train

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; run this on a GPU machine (or pass --device cpu for a smoke test)")
    root = args.workspace or Path(tempfile.mkdtemp(prefix="bench_nerf_fern_")) / "ws"
    ws, near, far = fern_workspace(args.data, root)
    config = presets.make_config(args.preset)
    config = dataclasses.replace(config, steps=args.steps, device=args.device, downscale=args.downscale,
                                 eval_every=args.eval_every, near=0.9 * near, far=1.1 * far)
    config = apply_overrides(config, args.set)
    t0 = time.perf_counter()

    class _Budget(KeyboardInterrupt):
        pass

    def budget(event):
        if time.perf_counter() - t0 > 60.0 * args.minutes and not event.done:
            raise _Budget()

    try:
        train(config, ws, monitor=budget, overwrite=True)
    except _Budget:  # a checkpoint was saved at the last finished step: evaluate it as a shorter run
        from recon3d.nerf.checkpoint import list_checkpoints

        stopped = list_checkpoints(ws.nerf)[-1][0]
        print(f"time budget of {args.minutes} min reached at step {stopped}", file=sys.stderr)
        train(dataclasses.replace(config, steps=stopped), ws)
    wall = time.perf_counter() - t0
    m = json.loads((ws.nerf / "metrics.json").read_text())
    evals = [h for h in m["history"] if "test_psnr" in h]
    if not evals or evals[-1]["step"] != m["steps"]:
        evals.append({"step": m["steps"], "seconds": m["train_seconds"], "test_psnr": m["psnr"]})
    reached = next((h for h in evals if h["test_psnr"] >= TARGET_DB), None)
    device_name = torch.cuda.get_device_name() if m["device"].startswith("cuda") else platform.processor() or "cpu"
    verdict = (f"reached {TARGET_DB} dB after {reached['seconds']:.0f} s of training (step {reached['step']})"
               if reached else f"did not reach {TARGET_DB} dB (best {max([h['test_psnr'] for h in evals] + [m['psnr']]):.2f} dB)")
    ok = reached is not None and reached["seconds"] <= TARGET_SECONDS
    lines = [
        "# NeRF GPU benchmark: LLFF fern, ground-truth poses",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {device_name} (torch {torch.__version__}), preset `{args.preset}`, "
        f"{m['image_size'][0]}x{m['image_size'][1]} images, {m['num_train_views']} train / {m['num_test_views']} held-out "
        f"views, {m['steps']} steps done (schedule of {args.steps}, budget {args.minutes:g} min), "
        f"{config.batch_rays} rays per step. Overrides: {args.set or 'none'}.",
        "",
        f"**Target: held-out PSNR >= {TARGET_DB} dB within {TARGET_SECONDS / 60:.0f} minutes: "
        f"{'met' if ok else 'NOT met'}** ({verdict}).",
        "",
        *md_table(["metric", "value"], [
            ("held-out PSNR (final)", f"{m['psnr']:.2f} dB"),
            ("held-out SSIM (final)", f"{m['ssim']:.4f}"),
            ("training time", f"{m['train_seconds']:.0f} s (wall with evaluation and loading: {wall:.0f} s)"),
            ("steps/s", f"{m['steps_per_s']:.2f}"),
            ("rays/s", f"{m['rays_per_s']:.0f}"),
            ("peak GPU memory", f"{(m['peak_memory_bytes'] or 0) / 2**30:.2f} GiB"),
        ]),
        "",
        *psnr_history(evals),
        "",
        f"Reproduce: `python scripts/bench_nerf_gpu.py --steps {args.steps} --minutes {args.minutes:g} "
        f"--eval-every {args.eval_every}`.",
        "",
    ]
    write_report(args.out, lines, {"config": dataclasses.asdict(config), "metrics": m, "target_met": ok,
                                   "wall_s": wall})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
