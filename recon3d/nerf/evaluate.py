"""Rendering whole views, held-out metrics (PSNR, SSIM) and the report pictures of a NeRF run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from recon3d.core.atomic import atomic_path
from recon3d.io.dataset import TrainView
from recon3d.nerf.model import NerfModel
from recon3d.nerf.rays import image_rays


@torch.no_grad()
def render_view(model: NerfModel, K: np.ndarray, cam_from_world: np.ndarray, width: int, height: int,
                chunk: int = 8192) -> dict[str, np.ndarray]:
    """Render one pinhole view.

    Args:
        K: ``(3, 3)`` intrinsics (COLMAP pixel centres); cam_from_world: ``(3, 4)``.
    Returns:
        ``rgb`` ``(H, W, 3)`` float in [0, 1], ``depth`` ``(H, W)`` z-depth in world units, ``acc`` ``(H, W)``.
    """
    device = model.center.device
    was_training = model.training
    model.eval()
    origins, dirs, zscale = image_rays(K, cam_from_world, width, height, device=device)
    out = model.render_rays(origins, dirs, chunk)
    model.train(was_training)
    return {"rgb": out["rgb"].clamp(0, 1).view(height, width, 3).cpu().numpy(),
            "depth": (out["depth"] * zscale).view(height, width).cpu().numpy(),
            "acc": out["acc"].view(height, width).cpu().numpy()}


def render_uint8(model: NerfModel, cam_from_world: np.ndarray, K: np.ndarray, width: int, height: int,
                 chunk: int = 8192) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB render (the :class:`~recon3d.monitor.TrainEvent` ``render`` signature)."""
    rgb = render_view(model, np.asarray(K), np.asarray(cam_from_world), int(width), int(height), chunk)["rgb"]
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def evaluate_views(model: NerfModel, views: list[TrainView], chunk: int = 8192
                   ) -> tuple[list[dict], list[dict[str, np.ndarray]]]:
    """PSNR and SSIM of each view against its photo.

    Returns:
        per-view ``{"name", "psnr", "ssim"}`` and the renders (:func:`render_view` dicts).
    """
    from recon3d.evaluate.images import psnr, ssim

    rows, renders = [], []
    for v in views:
        r = render_view(model, v.camera.K, v.cam_from_world, v.camera.width, v.camera.height, chunk)
        pred = torch.from_numpy(r["rgb"]).float()
        gt = torch.from_numpy(v.image).float()
        rows.append({"name": v.name, "psnr": float(psnr(pred, gt)), "ssim": float(ssim(pred, gt))})
        renders.append(r)
    return rows, renders


def depth_colormap(depth: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Colour a depth map by inverse depth (turbo; near = red, far = blue), so unbounded scenes with a
    distant background keep contrast in the foreground.

    Args:
        depth: ``(H, W)``; valid: ``(H, W)`` bool of pixels to scale by (default: finite and > 0).
    Returns:
        ``(H, W, 3)`` uint8 BGR, and the near/far depths of the colour scale.
    """
    ok = np.isfinite(depth) & (depth > 0)
    valid = ok if valid is None else valid & ok
    if valid.sum() < 2:
        return np.zeros(depth.shape + (3,), np.uint8), 0.0, 0.0
    inv = 1.0 / np.where(ok, depth, np.inf)
    lo, hi = np.percentile(inv[valid], [2, 98])
    x = np.clip((inv - lo) / max(hi - lo, 1e-12), 0, 1)
    img = cv2.applyColorMap((x * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    return img, float(1.0 / hi), float(1.0 / lo) if lo > 0 else float("inf")


def _upscale(img: np.ndarray, min_width: int = 320) -> np.ndarray:
    f = max(1, int(np.ceil(min_width / img.shape[1])))
    return cv2.resize(img, (img.shape[1] * f, img.shape[0] * f), interpolation=cv2.INTER_NEAREST) if f > 1 else img


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _write_png(path: Path, bgr: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), bgr):
            raise OSError(f"could not write {path}")
    return path


def write_report_pictures(reports: Path, views: list[TrainView], rows: list[dict],
                          renders: list[dict[str, np.ndarray]], max_views: int = 4) -> list[Path]:
    """``nerf_test_views.png`` (photo | render | depth per held-out view) and ``nerf_depth.png``.

    Returns:
        the paths written (none when ``max_views`` is 0).
    """
    if not views or max_views <= 0:
        return []
    lines = []
    for v, row, r in list(zip(views, rows, renders))[:max_views]:
        gt = _upscale(cv2.cvtColor((v.image * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
        pred = _upscale(cv2.cvtColor((r["rgb"] * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
        depth, _, _ = depth_colormap(r["depth"], r["acc"] > 0.5)
        depth = _upscale(depth)
        lines.append(np.concatenate([_label(gt, f"{v.name} (photo)"),
                                     _label(pred, f"NeRF {row['psnr']:.2f} dB"),
                                     _label(depth, "NeRF depth")], axis=1))
    grid = np.concatenate(lines, axis=0)
    first = renders[0]
    depth, lo, hi = depth_colormap(first["depth"], first["acc"] > 0.5)
    depth = _label(_upscale(depth, 640), f"{views[0].name}: z-depth {lo:.3g} (red) .. {hi:.3g} (blue)")
    return [_write_png(reports / "nerf_test_views.png", grid), _write_png(reports / "nerf_depth.png", depth)]
