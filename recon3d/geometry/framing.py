"""Where a set of cameras looks: the point nearest to all optical axes, and the centre of a scene.

Used to frame a scene: the NeRF's model space (:mod:`recon3d.nerf.scene`) and the orbit camera
path of ``recon3d render`` (:mod:`recon3d.render.paths`) are centred with these.
"""

from __future__ import annotations

import numpy as np

MIN_POINTS = 20
"""Fewer sparse points than this count as none."""
MAX_POINTS = 20_000
"""More points than this are subsampled (seeded) before taking percentiles and medians."""


def focus_point(cam_from_world: np.ndarray, prior: np.ndarray, reg: float = 1e-2) -> np.ndarray:
    """The point nearest to all optical axes (least squares), pulled weakly towards ``prior``.

    Args:
        cam_from_world: ``(V, 3, 4)`` poses.
        prior: ``(3,)`` fallback along directions the axes do not constrain (parallel axes).
        reg: weight of the prior relative to one axis.
    Returns:
        ``(3,)`` world point.
    """
    R = cam_from_world[:, :, :3]
    centers = -np.einsum("vji,vj->vi", R, cam_from_world[:, :, 3])
    axes = R[:, 2, :]
    A = reg * np.eye(3)
    b = reg * prior
    for c, d in zip(centers, axes):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c
    return np.linalg.solve(A, b)


def usable_points(points: np.ndarray) -> np.ndarray:
    """``(P', 3)`` finite points, at most :data:`MAX_POINTS` of them (a seeded subsample)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(1)]
    if len(points) > MAX_POINTS:  # plenty for percentiles
        points = points[np.random.default_rng(0).choice(len(points), MAX_POINTS, replace=False)]
    return points


def scene_center(cam_from_world: np.ndarray, points: np.ndarray, near: float = 0.0, far: float = 0.0) -> np.ndarray:
    """The centre of a scene: the median sparse point, or without points where the cameras look.

    Args:
        cam_from_world: ``(V, 3, 4)`` poses of all views.
        points: ``(P, 3)`` sparse points (world), possibly empty (fewer than :data:`MIN_POINTS` count as none).
        near, far: expected depth range (0: from the camera spacing); without points the focus
            point is pulled towards the middle of that range in front of the cameras.
    Returns:
        ``(3,)`` world point.
    """
    cam_from_world = np.asarray(cam_from_world, dtype=np.float64)
    points = usable_points(points)
    if len(points) >= MIN_POINTS:
        return np.median(points, axis=0)
    R = cam_from_world[:, :, :3]
    centers = -np.einsum("vji,vj->vi", R, cam_from_world[:, :, 3])
    spread = float(np.linalg.norm(centers - centers.mean(0), axis=1).max()) if len(centers) > 1 else 1.0
    spread = spread or 1.0
    mid = 0.5 * ((near or spread) + (far or 4 * spread))
    prior = centers.mean(0) + R[:, 2, :].mean(0) * mid
    return focus_point(cam_from_world, prior)
