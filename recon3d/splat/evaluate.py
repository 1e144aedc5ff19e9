"""Held-out evaluation of a splat model: PSNR and SSIM per view, ``metrics.json``, side-by-side pictures.

``WS/splat/metrics.json``::

    {"method": "splat", "split": "test", "psnr": 27.1, "ssim": 0.86, "num_views": 3,
     "num_gaussians": 41234, "steps": 30000, "train_seconds": 812.0, "device": "cuda",
     "resolution": [640, 480], "views": [{"name": "view_000.png", "psnr": ..., "ssim": ...}, ...]}

and ``WS/reports/splat_test_<name>.png``: the render (left) beside the photo (right).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon3d.core.atomic import atomic_path, atomic_write_json
from recon3d.core.workspace import Workspace
from recon3d.io.dataset import TrainView


def render_view(params: dict, view: TrainView, sh_degree: int, background: torch.Tensor, backend: str,
                tile_size: int, rasterize_mode: str = "classic") -> torch.Tensor:
    """``(H, W, 3)`` render of ``params`` from a view's camera, clamped to [0, 1], without grad."""
    from recon3d.splat.render import render_image

    return render_image(params, view.cam_from_world, view.camera.K, view.camera.width, view.camera.height,
                        sh_degree, background, backend, tile_size, rasterize_mode)


def side_by_side(render: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """``(H, 2W + 4, 3)`` uint8 picture: render | white gap | photo (inputs ``(H, W, 3)`` in [0, 1])."""
    h = render.shape[0]
    gap = np.ones((h, 4, 3))
    return (np.concatenate([render, gap, photo], 1).clip(0, 1) * 255 + 0.5).astype(np.uint8)


def evaluate(params: dict, views: list[TrainView], split: str, ws: Workspace, sh_degree: int,
             background: torch.Tensor, backend: str, tile_size: int, report_views: int = 3,
             extra: dict[str, Any] | None = None, rasterize_mode: str = "classic") -> dict:
    """PSNR/SSIM of every view, written to ``WS/splat/metrics.json``; pictures to ``WS/reports/``.

    Args:
        params: the trained parameters.
        views: views to score (the held-out split, or the training views when there is none).
        split: ``"test"`` or ``"train"``, recorded in the file.
        report_views: how many side-by-side pictures to write.
        extra: more entries for metrics.json (steps, timing, device ...).
    Returns:
        the metrics dict as written.
    """
    import cv2

    from recon3d.evaluate.images import psnr, ssim

    rows = []
    for i, view in enumerate(views):
        img = render_view(params, view, sh_degree, background, backend, tile_size, rasterize_mode)
        gt = torch.as_tensor(view.image, device=img.device)
        rows.append({"name": view.name, "psnr": float(psnr(img, gt)), "ssim": float(ssim(img, gt))})
        if i < report_views:
            pic = side_by_side(img.cpu().numpy(), view.image)
            path = ws.reports / f"splat_{split}_{Path(view.name).stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                cv2.imwrite(str(tmp), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
    metrics = {
        "method": "splat",
        "split": split,
        "psnr": float(np.mean([r["psnr"] for r in rows])) if rows else None,
        "ssim": float(np.mean([r["ssim"] for r in rows])) if rows else None,
        "num_views": len(rows),
        "num_gaussians": int(len(params["means"])),
        **(extra or {}),
        "views": rows,
    }
    atomic_write_json(ws.splat / "metrics.json", metrics)
    return metrics
