"""The model frame: where the scene of interest is, how big it is, and the near/far planes.

The field lives in *model space*: ``x_model = (x_world - center) / radius``. For unbounded
scenes the unit ball of model space holds the scene of interest (most SfM points) at full grid
resolution and everything beyond is contracted (:mod:`recon3d.nerf.contraction`); for object
scenes a box around the SfM points bounds the field.

From the sparse points (as COLMAP gives them): ``center`` is their median, ``radius`` the 90th
percentile of their distances to it, near/far come from their depths in every camera. Without
points (e.g. a workspace imported from nerfstudio) the centre is the point closest to all
optical axes, and near/far come from the config or from the camera spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.geometry.framing import (
    MIN_POINTS,
    focus_point,
    scene_center,
    usable_points,
)

__all__ = ["MIN_POINTS", "SceneFrame", "focus_point", "scene_frame"]


@dataclass
class SceneFrame:
    """World <-> model space, and the ray bounds (world units)."""

    center: np.ndarray
    """(3,) world point at the model origin."""
    radius: float
    """World length of one model unit."""
    near: float
    """Near plane (world units, along the ray)."""
    far: float
    """Far plane (world units); unbounded scenes sample to 1000 radii regardless."""
    mode: str
    """'unbounded' (contraction) or 'object' (box)."""
    aabb: np.ndarray
    """(2, 3) box in model space (object mode; [-2, 2]^3 for unbounded)."""

    def to_dict(self) -> dict:
        return {"center": self.center.tolist(), "radius": self.radius, "near": self.near, "far": self.far,
                "mode": self.mode, "aabb": self.aabb.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "SceneFrame":
        return cls(np.asarray(d["center"], float), float(d["radius"]), float(d["near"]), float(d["far"]),
                   str(d["mode"]), np.asarray(d["aabb"], float))


def scene_frame(cam_from_world: np.ndarray, points: np.ndarray, mode: str = "auto",
                near: float = 0.0, far: float = 0.0) -> SceneFrame:
    """Choose the model frame and ray bounds of a scene.

    Args:
        cam_from_world: ``(V, 3, 4)`` poses of all views.
        points: ``(P, 3)`` sparse points (world), possibly empty.
        mode: 'auto', 'unbounded' or 'object' ('auto' means unbounded).
        near, far: world-unit overrides (0: automatic).
    Returns:
        the :class:`SceneFrame`.
    """
    cam_from_world = np.asarray(cam_from_world, dtype=np.float64)
    R = cam_from_world[:, :, :3]
    t = cam_from_world[:, :, 3]
    centers = -np.einsum("vji,vj->vi", R, t)
    mode = "unbounded" if mode == "auto" else mode
    points = usable_points(points)
    spread = float(np.linalg.norm(centers - centers.mean(0), axis=1).max()) if len(centers) > 1 else 1.0
    spread = spread or 1.0
    auto_near = auto_far = None
    center = scene_center(cam_from_world, points, near, far)
    if len(points) >= MIN_POINTS:
        dist = np.linalg.norm(points - center, axis=1)
        radius = float(np.percentile(dist, 90))
        nears, fars = [], []
        for v in range(len(R)):
            zv = points @ R[v, 2] + t[v, 2]  # depths in view v
            zv = zv[zv > 1e-9]
            if len(zv):
                nears.append(np.percentile(zv, 1))
                fars.append(np.percentile(zv, 99))
        if nears:
            auto_near = 0.5 * float(min(nears))
            auto_far = 1.5 * float(max(fars))
        lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    else:
        radius = float(np.linalg.norm(centers - center, axis=1).max())
        lo = hi = None
    radius = radius if radius > 1e-9 else spread
    near = near or auto_near or 0.02 * radius
    far = far or auto_far or 1000.0 * radius
    if mode == "object":
        if lo is None:
            aabb = np.array([[-1.0] * 3, [1.0] * 3])
        else:
            pad = 0.1 * (hi - lo) + 1e-6 * radius
            aabb = (np.stack([lo - pad, hi + pad]) - center) / radius
    elif mode == "unbounded":
        aabb = np.array([[-2.0] * 3, [2.0] * 3])
    else:
        raise ValueError(f"scene mode must be auto, unbounded or object, got {mode!r}")
    return SceneFrame(center=np.asarray(center, float), radius=radius, near=float(near), far=float(far),
                      mode=mode, aabb=aabb)
