"""Benchmark: Gaussian splatting on a CUDA GPU with gsplat, on the real LLFF fern photos.

Builds a workspace from ``../shared/data/fern`` (20 photos, 504 x 378): the COLMAP poses of
``gt/poses_bounds.npy`` as ``sparse/0`` (PINHOLE) and 3D points triangulated from SIFT matches with
those poses fixed (pycolmap). Then trains ``recon3d train --method splat`` for 7000 steps on the GPU and
records steps/s, peak GPU memory, held-out PSNR/SSIM (every 8th photo), and the time one gsplat
forward + backward takes alone at that resolution and Gaussian count (the floor our loop adds to).
Writes ``benchmarks/results/splat_gpu.md``.

    python scripts/bench_splat_gpu.py                       # needs CUDA
    python scripts/bench_splat_gpu.py --steps 30000 --out /tmp/fern_ws
    python scripts/bench_splat_gpu.py --prepare-only        # just the workspace (CPU is fine)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
from _bench import (  # first: this checkout on sys.path
    RESULTS,
    SHARED_DATA,
    fern_cameras,
    md_table,
    write_report,
)

from recon3d.core.atomic import atomic_dir
from recon3d.core.workspace import Workspace
from recon3d.io.colmap import Model, ModelImage, write_text_model


def prepare_fern(fern: Path, out: Path) -> Workspace:
    """A workspace with fern's photos, its poses as ``sparse/0`` and points triangulated with them."""
    import pycolmap

    ws = Workspace(out).create()
    if ws.has_model():
        return ws
    shutil.copytree(fern / "images", ws.images, dirs_exist_ok=True)
    names, camera, poses = fern_cameras(fern)
    if ws.database.exists():
        ws.database.unlink()
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = ",".join(str(v) for v in camera.colmap_model()[1])
    pycolmap.extract_features(ws.database, ws.images, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader)
    pycolmap.match_exhaustive(ws.database)
    db = pycolmap.Database.open(ws.database)
    ids = {im.name: im.image_id for im in db.read_all_images()}
    cam_id = db.read_all_cameras()[0].camera_id
    images = {}
    for name, pose in zip(names, poses):
        kp = db.read_keypoints(ids[name])[:, :2]
        images[ids[name]] = ModelImage(name, cam_id, pose, kp, np.full(len(kp), -1, np.int64))
    db.close()
    model_name, params = camera.colmap_model()
    known = out / "known_poses"
    write_text_model(Model({cam_id: (model_name, camera.width, camera.height, list(params))}, images), known)
    rec = pycolmap.Reconstruction(str(known))
    tri = out / "triangulated"
    tri.mkdir(exist_ok=True)
    rec = pycolmap.triangulate_points(rec, ws.database, ws.images, tri)
    with atomic_dir(ws.model) as tmp:
        rec.write_binary(str(tmp))
    shutil.rmtree(known)
    shutil.rmtree(tri)
    print(f"fern workspace: {len(names)} images, {rec.num_points3D()} triangulated points -> {ws.model}")
    return ws


def time_gsplat_alone(ply: Path, ws: Workspace, repeats: int = 50) -> float:
    """Seconds of one gsplat forward + backward (+ SSIM loss) of the trained model at training resolution."""
    import torch

    from recon3d.evaluate.images import ssim
    from recon3d.io.dataset import load_scene
    from recon3d.io.gaussians_ply import read_splat_ply
    from recon3d.splat.model import params_from_splats, render, viewmat

    params = params_from_splats(read_splat_ply(ply), "cuda")
    view = load_scene(ws).train[0]
    vm = torch.as_tensor(viewmat(view.cam_from_world), dtype=torch.float32, device="cuda")[None]
    K = torch.as_tensor(view.camera.K, dtype=torch.float32, device="cuda")[None]
    gt = torch.as_tensor(view.image, device="cuda")
    sh = (params["shN"].shape[1] + 1) ** 0.5 - 1

    def once():
        img, _, info = render(params, vm, K, view.camera.width, view.camera.height, int(sh), backend="cuda")
        loss = 0.8 * (img[0] - gt).abs().mean() + 0.2 * (1 - ssim(img[0], gt))
        loss.backward()
        for p in params.values():
            p.grad = None

    for _ in range(5):
        once()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        once()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fern", type=Path, default=SHARED_DATA / "fern")
    parser.add_argument("--out", type=Path, default=Path("/tmp/recon3d_bench_fern"), help="workspace folder")
    parser.add_argument("--steps", type=int, default=7000)
    parser.add_argument("--method", default="splat")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS / "splat_gpu.md")
    args = parser.parse_args()

    ws = prepare_fern(args.fern, args.out)
    if args.prepare_only:
        return 0
    import torch

    from recon3d.core import registry as presets
    from recon3d.splat.train import train

    if not torch.cuda.is_available():
        raise SystemExit("bench_splat_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    config = dataclasses.replace(presets.make_config(args.method), steps=args.steps, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    ply = train(config, ws, overwrite=True).outputs["ply"]
    seconds = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30
    metrics = json.loads((ws.splat / "metrics.json").read_text())
    alone = time_gsplat_alone(ply, ws)
    rows = [
        ("device", torch.cuda.get_device_name(0)),
        ("data", f"fern, {metrics['resolution'][0]}x{metrics['resolution'][1]}, {metrics['num_views']} held-out views"),
        ("method / steps", f"{args.method} / {args.steps}"),
        ("steps/s (whole run, incl. densification, checkpoints)", f"{args.steps / metrics['train_seconds']:.1f}"),
        ("wall time of the stage (incl. loading, evaluation)", f"{seconds:.0f} s"),
        ("peak GPU memory (torch allocator)", f"{peak:.2f} GiB"),
        ("Gaussians at the end", metrics["num_gaussians"]),
        ("held-out PSNR", f"{metrics['psnr']:.2f} dB"),
        ("held-out SSIM", f"{metrics['ssim']:.4f}"),
        ("one gsplat forward+backward alone (final model)", f"{alone * 1e3:.2f} ms ({1 / alone:.0f} /s)"),
    ]
    write_report(args.results, ["# Gaussian splatting on GPU (gsplat): fern", "",
                                f"Measured {time.strftime('%Y-%m-%d')} with `python scripts/bench_splat_gpu.py "
                                f"--steps {args.steps}`.", "", *md_table(["quantity", "value"], rows)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
