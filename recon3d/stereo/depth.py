"""From disparity to metres: depth maps, coloured point clouds (PLY) and disparity pictures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from recon3d import geometry


def depth_from_disparity(disparity: np.ndarray, focal: float, baseline: float) -> np.ndarray:
    """Z-depth ``f B / d`` of a rectified-left disparity map.

    Args:
        disparity: ``(H, W)`` disparity in pixels, NaN / inf / <= 0 where invalid.
        focal: rectified focal length (px).
        baseline: camera distance (m).
    Returns:
        ``(H, W)`` float32 depth in metres, NaN where invalid.
    """
    d = np.asarray(disparity, dtype=np.float64)
    ok = np.isfinite(d) & (d > 0)
    z = np.full(d.shape, np.nan)
    z[ok] = focal * baseline / d[ok]
    return z.astype(np.float32)


def points_from_depth(depth: np.ndarray, K: np.ndarray, image: np.ndarray | None = None,
                      stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a z-depth map through a pinhole camera.

    Args:
        depth: ``(H, W)`` z-depth, NaN / inf / <= 0 where invalid.
        K: ``(3, 3)`` intrinsics (COLMAP pixel centres).
        image: optional ``(H, W, 3)`` uint8 BGR image for colours.
        stride: keep every ``stride``-th pixel in x and y.
    Returns:
        points ``(N, 3)`` float32 in the camera frame and colours ``(N, 3)`` uint8 RGB
        (grey 128 without an image).
    """
    h, w = depth.shape
    grid = geometry.pixel_grid(w, h)[::stride, ::stride]
    z = np.asarray(depth, dtype=np.float64)[::stride, ::stride]
    ok = np.isfinite(z) & (z > 0)
    rays = geometry.rays_cam_from_pixels(K, grid[ok])
    pts = (rays * z[ok][:, None]).astype(np.float32)
    if image is None:
        rgb = np.full((len(pts), 3), 128, dtype=np.uint8)
    else:
        rgb = image[::stride, ::stride][ok][:, ::-1].astype(np.uint8)
    return pts, rgb


def colorize_disparity(disparity: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """A turbo-coloured picture of a disparity map (near = red, far = blue, invalid = black).

    Args:
        disparity: ``(H, W)`` disparity, NaN / inf where invalid.
        lo, hi: value range of the colour map (default: 1st / 99th percentile of valid values).
    Returns:
        ``(H, W, 3)`` uint8 BGR image.
    """
    d = np.asarray(disparity, dtype=np.float32)
    ok = np.isfinite(d)
    if not ok.any():
        return np.zeros(d.shape + (3,), dtype=np.uint8)
    lo = float(np.percentile(d[ok], 1)) if lo is None else lo
    hi = float(np.percentile(d[ok], 99)) if hi is None else hi
    t = np.clip((np.where(ok, d, lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    out = cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    out[~ok] = 0
    return out


def ply_bytes(points: np.ndarray, colors: np.ndarray | None = None) -> bytes:
    """A binary little-endian PLY of points ``(N, 3)`` with optional RGB colours ``(N, 3)`` uint8."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    n = len(points)
    props = "property float x\nproperty float y\nproperty float z\n"
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        props += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(n, dtype=fields)
    rec["x"], rec["y"], rec["z"] = points.T
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        rec["red"], rec["green"], rec["blue"] = colors.T
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n{props}end_header\n"
    return header.encode() + rec.tobytes()


def write_ply(path: Path | str, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """Write a point cloud as binary PLY atomically; returns ``path``."""
    from recon3d.core.atomic import atomic_write_bytes

    return atomic_write_bytes(path, ply_bytes(points, colors))

