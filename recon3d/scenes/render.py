"""Rendering one view of a :class:`RayScene`: anti-aliased colour, exact depth and surface ids.

Colour averages ``supersample**2`` rays spread evenly over each pixel; depth and surface ids
come from the ray through each pixel centre (COLMAP convention, see :mod:`recon3d.geometry`).
Depth is z in the camera frame, ``inf`` where no surface is hit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from recon3d.geometry.camera import Camera
from recon3d.scenes.raycast import Hits, RayScene


@dataclass
class View:
    """A rendered view."""

    rgb: np.ndarray
    """(H, W, 3) float colour in [0, 1]."""
    depth: np.ndarray
    """(H, W) float32 z-depth in metres, inf where nothing is hit."""
    surface: np.ndarray
    """(H, W) int32 surface id at pixel centres, -1 for background."""


@functools.lru_cache(maxsize=8)
def _camera_rays_cached(width: int, height: int, K: tuple, dist: tuple, ss: int) -> np.ndarray:
    cam = Camera(width, height, np.array(K).reshape(3, 3), np.array(dist))
    offsets = (np.arange(ss) + 0.5) / ss
    ys = np.arange(height)[:, None, None, None] + offsets[None, None, :, None]
    xs = np.arange(width)[None, :, None, None] + offsets[None, None, None, :]
    pix = np.stack(np.broadcast_arrays(xs, ys), axis=-1).reshape(-1, 2)  # (H*W*ss*ss, 2)
    rays = cam.rays(pix) if cam.has_distortion else _pinhole_rays(cam.K, pix)
    rays.setflags(write=False)
    return rays


def _pinhole_rays(K: np.ndarray, pix: np.ndarray) -> np.ndarray:
    from recon3d.geometry import rays_cam_from_pixels

    return rays_cam_from_pixels(K, pix)


def camera_rays(camera: Camera, supersample: int = 1) -> np.ndarray:
    """Camera-frame rays ``(x, y, 1)``, ``(H * W * s * s, 3)`` ordered row, column, sub-row, sub-column.

    ``supersample=1`` gives the pixel-centre rays.
    """
    return _camera_rays_cached(camera.width, camera.height, tuple(camera.K.ravel()),
                               tuple(camera.dist.ravel()), supersample)


def cast_from_camera(scene: RayScene, camera: Camera, cam_from_world: np.ndarray, rays_cam: np.ndarray) -> Hits:
    """Cast camera-frame rays ``(N, 3)`` (z = 1) of a camera at ``cam_from_world`` ``(3, 4)``.

    As the rays have z = 1, the returned ``t`` is the z-depth of each hit.
    """
    R = cam_from_world[:3, :3]
    center = -R.T @ cam_from_world[:3, 3]
    return scene.cast(center, rays_cam @ R)


def render_view(scene: RayScene, camera: Camera, cam_from_world: np.ndarray, supersample: int = 2) -> View:
    """Render one view.

    Args:
        scene: the scene.
        camera: intrinsics and distortion (``(H, W)`` from it).
        cam_from_world: ``(3, 4)`` pose.
        supersample: rays per pixel side for colour.
    Returns:
        :class:`View` with colour, depth and surface ids.
    """
    H, W = camera.height, camera.width
    centre = cast_from_camera(scene, camera, cam_from_world, camera_rays(camera, 1))
    if supersample == 1:
        rgb = scene.shade(centre).reshape(H, W, 3)
    else:
        sub = cast_from_camera(scene, camera, cam_from_world, camera_rays(camera, supersample))
        rgb = scene.shade(sub).reshape(H, W, supersample * supersample, 3).mean(axis=2)
    return View(
        rgb=rgb,
        depth=centre.t.reshape(H, W).astype(np.float32),
        surface=centre.surface.reshape(H, W).astype(np.int32),
    )


def render_views(scene: RayScene, camera: Camera, cam_from_world: list[np.ndarray] | np.ndarray,
                 supersample: int = 2, threads: int | None = None) -> Iterator[View]:
    """:func:`render_view` of each pose ``(3, 4)`` of ``cam_from_world``, in order (:func:`render_many`)."""
    return render_many([(scene, camera, pose, supersample) for pose in cam_from_world], threads)


def render_many(jobs: list[tuple[RayScene, Camera, np.ndarray, int]], threads: int | None = None) -> Iterator[View]:
    """:func:`render_view` of each ``(scene, camera, cam_from_world (3, 4), supersample)``, in order, on
    ``threads`` threads.

    NumPy's array operations release the GIL, so views rendered side by side use every core; the
    views are the same as rendered one by one. At most ``2 * threads`` views are held at once.
    ``threads=None``: ``RECON3D_RENDER_THREADS`` if set, else the CPU count (at most 4).
    """
    import os
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    if threads is None:
        threads = int(os.environ.get("RECON3D_RENDER_THREADS", 0)) or min(4, os.cpu_count() or 1)
    jobs = list(jobs)
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield render_view(*job)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recon3d-render") as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(render_view, *job))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float [0, 1] -> uint8."""
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write a float RGB image as PNG/JPG (by suffix)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), cv2.cvtColor(to_uint8(rgb), cv2.COLOR_RGB2BGR), params):
        from recon3d.core.errors import UserError

        raise UserError(f"{path}: could not write the image; check the folder is writable")
