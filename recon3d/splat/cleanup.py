"""The end-of-training cleanup: drop Gaussians that no two training cameras constrain.

A short run (the CPU preview) leaves Gaussians that only one training photo, or none, ever sees:
in front of a single camera, behind all of them, far outside every frustum. They cost nothing in
the training views' loss, so nothing removes them, but from anywhere else (the viewer's opening
view, a point between two cameras) they float in front of the scene as large colourful blobs.
:func:`cleanup_mask` keeps a Gaussian only when

- its centre projects into at least ``min_views`` training images (in front of the camera, inside
  the image bounds, grown by the projected 3-sigma radius of the Gaussian, so that one reaching
  into a picture from just outside counts): :func:`visibility_counts`, and
- it is not both huge (largest axis above ``huge_scale`` x the scene scale) and faint (opacity
  below ``faint_opacity``): such a Gaussian tints a whole view a little and explains no detail.

The functions are pure numpy (no torch), so they are tested on synthetic Gaussians with known
visibility; :func:`prune_params` applies a mask to the training parameters (gsplat layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def visibility_counts(means: np.ndarray, cam_from_world: np.ndarray, K: np.ndarray, sizes: np.ndarray,
                      radii: np.ndarray | None = None, near: float = 1e-6) -> np.ndarray:
    """How many cameras see each point: in front of the camera and projecting inside its image (or,
    with ``radii``, a disc of that radius around it reaching into the image).

    Args:
        means: ``(N, 3)`` world points (Gaussian centres).
        cam_from_world: ``(V, 3, 4)`` camera poses.
        K: ``(V, 3, 3)`` intrinsics (COLMAP convention: the image spans ``[0, W] x [0, H]``).
        sizes: ``(V, 2)`` image ``(width, height)`` in pixels.
        radii: optional ``(N,)`` world-space radius of each point (e.g. 3 sigma of a Gaussian): the image
            bounds grow by its projection, ``fx * radius / depth`` pixels.
        near: a point counts as in front when its camera depth exceeds this.
    Returns:
        ``(N,)`` int64 counts in ``[0, V]``.
    """
    means = np.asarray(means, np.float64).reshape(-1, 3)
    cam_from_world = np.asarray(cam_from_world, np.float64).reshape(-1, 3, 4)
    K = np.asarray(K, np.float64).reshape(-1, 3, 3)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    if not (len(cam_from_world) == len(K) == len(sizes)):
        raise ValueError(f"cam_from_world {cam_from_world.shape}, K {K.shape}, sizes {sizes.shape}: "
                         "expected one of each per camera")
    radii = np.zeros(len(means)) if radii is None else np.asarray(radii, np.float64).reshape(len(means))
    counts = np.zeros(len(means), np.int64)
    for pose, k, (w, h) in zip(cam_from_world, K, sizes):
        x = means @ pose[:, :3].T + pose[:, 3]
        z = x[:, 2]
        front = z > near
        zs = np.where(front, z, 1.0)
        u = k[0, 0] * x[:, 0] / zs + k[0, 1] * x[:, 1] / zs + k[0, 2]
        v = k[1, 1] * x[:, 1] / zs + k[1, 2]
        r = k[0, 0] * radii / zs
        counts += front & (u >= -r) & (u <= w + r) & (v >= -r) & (v <= h + r)
    return counts


@dataclass
class Cleanup:
    """What :func:`cleanup_mask` decided."""

    keep: np.ndarray
    """``(N,)`` bool: the Gaussians that stay."""
    unseen: int
    """Removed because fewer than ``min_views`` training cameras see them."""
    huge_faint: int
    """Removed (among the rest) because they are huge and faint."""

    @property
    def removed(self) -> int:
        """Gaussians removed in all."""
        return int((~self.keep).sum())


def cleanup_mask(means: np.ndarray, scales: np.ndarray, opacities: np.ndarray, cam_from_world: np.ndarray,
                 K: np.ndarray, sizes: np.ndarray, scene_scale: float, min_views: int = 2,
                 huge_scale: float = 0.05, faint_opacity: float = 0.05) -> Cleanup:
    """Which Gaussians the training cameras constrain (see the module docstring).

    Args:
        means: ``(N, 3)`` centres; scales: ``(N, 3)`` standard deviations (activated, not logs);
        opacities: ``(N,)`` in [0, 1] (activated, not logits).
        cam_from_world: ``(V, 3, 4)``; K: ``(V, 3, 3)``; sizes: ``(V, 2)`` (width, height) of the
            training cameras.
        scene_scale: the scene's size (the unit of ``huge_scale``).
        min_views: keep Gaussians seen by at least this many cameras (0: no visibility test).
        huge_scale: largest axis, in units of ``scene_scale``, above which a faint Gaussian goes.
        faint_opacity: opacity below which a huge Gaussian goes (0: no size test).
    """
    n = len(means)
    scales = np.asarray(scales, np.float64).reshape(n, 3)
    radii = 3.0 * scales.max(axis=1)
    seen = (visibility_counts(means, cam_from_world, K, sizes, radii) >= min_views if min_views > 0
            else np.ones(n, bool))
    opacities = np.asarray(opacities, np.float64).reshape(n)
    huge_faint = (scales.max(axis=1) > huge_scale * scene_scale) & (opacities < faint_opacity)
    keep = seen & ~huge_faint
    return Cleanup(keep, int((~seen).sum()), int((seen & huge_faint).sum()))


def prune_params(params: dict, keep: np.ndarray) -> dict:
    """The training parameters (gsplat layout, :mod:`recon3d.splat.model`) of the kept Gaussians only.

    Args:
        params: ``{name: (N, ...) tensor}``.
        keep: ``(N,)`` bool.
    Returns:
        a new dict of detached ``(M, ...)`` tensors, ``M = keep.sum()``.
    """
    import torch

    idx = torch.as_tensor(np.flatnonzero(keep), dtype=torch.long, device=params["means"].device)
    return {k: v.detach()[idx] for k, v in params.items()}
