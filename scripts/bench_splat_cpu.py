"""Benchmark: Gaussian splatting on CPU with the pure-torch rasterizer, on the synthetic orbit scene.

Trains orbit at 1/4 resolution (160 x 120) from its ground-truth poses and points with the ``splat-cpu``
preset, as the CPU acceptance test (tests/test_splat.py) does, then times the rasterizer (forward + backward) of the
trained model against the naive reference (every pixel x every Gaussian) on a subset small enough
for the naive one. Writes ``benchmarks/results/splat_cpu.md``.

    python scripts/bench_splat_cpu.py                 # renders orbit into a temp folder if needed
    RECON3D_TEST_CACHE=/tmp/r3dcache python scripts/bench_splat_cpu.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _bench import REPO, RESULTS, cache_or, md_table, scene_dir, write_report

STEPS = 500


def time_fn(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def rasterizer_timings(ws) -> list[tuple[str, str]]:
    """Forward + backward times of our torch rasterizer and of the naive reference."""
    import torch

    from recon3d.io.dataset import load_scene
    from recon3d.io.gaussians_ply import read_splat_ply
    from recon3d.splat.model import params_from_splats, viewmat
    from recon3d.splat.rasterize import _rasterize_dense_reference, _rasterize_torch

    splats = read_splat_ply(ws.splat / "point_cloud.ply")
    view = load_scene(ws, downscale=4).test[0]
    w, h = view.camera.width, view.camera.height
    vm = torch.as_tensor(viewmat(view.cam_from_world), dtype=torch.float32)
    K = torch.as_tensor(view.camera.K, dtype=torch.float32)
    p = params_from_splats(splats, "cpu")
    rows = []

    def inputs(n):
        return [x.detach()[:n].clone().requires_grad_(True) for x in
                (p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
                 (p["sh0"][:, 0] * 0.28209479177387814 + 0.5).clamp(0, 1))]

    def ours(n):
        def run():
            img, alpha, _ = _rasterize_torch(*inputs(n), vm[None], K[None], w, h)
            (img.sum() + alpha.sum()).backward()
        return run

    def naive(n):
        def run():
            img, alpha = _rasterize_dense_reference(*inputs(n), vm, K, w, h)
            (img.sum() + alpha.sum()).backward()
        return run

    n_all = len(splats)
    rows.append((f"ours, all {n_all} Gaussians, {w}x{h}, fwd+bwd", f"{time_fn(ours(n_all), 5) * 1e3:.0f} ms"))
    for n in (500, 2000):
        t_ours, t_naive = time_fn(ours(n), 5), time_fn(naive(n), 1)
        rows.append((f"ours vs naive, first {n} Gaussians, fwd+bwd",
                     f"{t_ours * 1e3:.0f} ms vs {t_naive * 1e3:.0f} ms ({t_naive / t_ours:.0f}x)"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS / "splat_cpu.md")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()

    import torch

    from recon3d.cli import main as cli
    from recon3d.scenes import scene_workspace

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ws = scene_workspace(scene_dir("orbit", cache_or(Path(tmp))), Path(tmp) / "ws")
        argv = ["train", str(ws.root), "--method", "splat-cpu", "--device", "cpu", "--steps", str(args.steps)]
        t = time.perf_counter()
        cpu = time.process_time()
        assert cli(argv) == 0
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        metrics = json.loads((ws.splat / "metrics.json").read_text())
        timings = rasterizer_timings(ws)
        picture = REPO / "docs" / "images" / "splat_orbit_test.png"  # render | photo of a held-out view
        picture.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ws.reports / "splat_test_view_000.png", picture)
    per_view = ", ".join("%.2f" % v["psnr"] for v in metrics["views"])
    rows = [
        ("machine", f"{os.cpu_count()} CPU cores, torch {torch.__version__}; training on 1 thread (splat-cpu), "
                    f"rasterizer timings on {torch.get_num_threads()}"),
        ("run", f"orbit 160x120, ground-truth poses, preset splat-cpu ({args.steps} steps, the first 200 at "
                "80x60), as in tests/test_splat.py"),
        ("stage wall time / CPU time", f"{wall:.0f} s / {cpu:.0f} s"),
        ("steps/s (training loop)", f"{args.steps / metrics['train_seconds']:.1f}"),
        ("Gaussians at the end", metrics["num_gaussians"]),
        ("held-out PSNR (3 views)", f"{metrics['psnr']:.2f} dB ({per_view})"),
        ("held-out SSIM", f"{metrics['ssim']:.4f}"),
        *timings,
    ]
    write_report(args.results, [
        "# Gaussian splatting on CPU (torch rasterizer): orbit at 1/4 resolution", "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python scripts/bench_splat_cpu.py` on a machine shared with "
        f"other jobs (load average {load:.1f} at the start), so times may be inflated.", "",
        *md_table(["quantity", "value"], rows)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
