"""Helpers for the calibration tests: synthetic board views without the ray tracer."""

from __future__ import annotations

import cv2
import numpy as np

from recon3d import geometry
from recon3d.geometry.camera import Camera


def look_at_poses(count: int, target: np.ndarray, distance: float, seed: int, max_tilt_deg: float = 40.0,
                  spread: float = 0.0) -> np.ndarray:
    """``(count, 3, 4)`` cam_from_board poses looking at ``target`` on the board (z = 0) from the -z side."""
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(count):
        tilt = np.radians(rng.uniform(0, max_tilt_deg))
        azim = rng.uniform(0, 2 * np.pi)
        eye = target + distance * rng.uniform(0.9, 1.2) * np.array(
            [np.sin(tilt) * np.cos(azim), np.sin(tilt) * np.sin(azim), -np.cos(tilt)])
        aim = target + np.array([rng.uniform(-spread, spread), rng.uniform(-spread, spread), 0.0])
        roll = rng.uniform(-0.4, 0.4)
        poses.append(geometry.cam_from_world_look_at(eye, aim, np.array([np.sin(roll), -np.cos(roll), 0.0])))
    return np.stack(poses)


def camera_rays(camera: Camera, supersample: int = 2) -> np.ndarray:
    """``(H * W * supersample**2, 3)`` rays through the sub-pixel centres of ``camera``.

    Exact at a quarter of the pixels, bilinear in between (rays are smooth; this is for speed).
    """
    step = 2
    gx = np.arange(0, camera.width + step, step, dtype=np.float64)
    gy = np.arange(0, camera.height + step, step, dtype=np.float64)
    pix = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 1, 2) - 0.5
    xy = cv2.undistortPoints(pix, camera.K_opencv, camera.dist,
                             criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 30, 1e-10))
    xy = xy.reshape(len(gy), len(gx), 2).astype(np.float32)
    W, H = camera.width * supersample, camera.height * supersample
    sub = (np.arange(W) + 0.5) / supersample / step, (np.arange(H) + 0.5) / supersample / step
    mx, my = np.meshgrid(*sub)
    fine = cv2.remap(xy, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2).astype(np.float64)
    return np.concatenate([fine, np.ones((len(fine), 1))], axis=1)


def render_planar(texture: np.ndarray, metres_per_px: float, camera: Camera, cam_from_board: np.ndarray,
                  origin: tuple[float, float] = (0.0, 0.0), supersample: int = 2, background: int = 128,
                  rays: np.ndarray | None = None) -> np.ndarray:
    """Grey ``(H, W)`` view of a flat printed ``texture`` whose top-left corner is at board ``origin``.

    Pixel ``(u, v)`` of the texture covers board ``origin + [u, u + 1) * metres_per_px``
    (COLMAP-style pixel areas). Rays through the distorted camera hit the plane z = 0; pass
    ``rays`` (from :func:`camera_rays`) to reuse them across views.
    """
    W, H = camera.width * supersample, camera.height * supersample
    rays = camera_rays(camera, supersample) if rays is None else rays
    R, t = cam_from_board[:, :3], cam_from_board[:, 3]
    centre = -R.T @ t
    d = rays @ R  # R^T ray, per row
    s = -centre[2] / d[:, 2]
    hit = centre[None, :2] + s[:, None] * d[:, :2]
    uv = ((hit - np.asarray(origin)) / metres_per_px - 0.5).astype(np.float32).reshape(H, W, 2)
    uv[(s <= 0).reshape(H, W)] = -1e6
    img = cv2.remap(texture, uv[..., 0], uv[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=background)
    return cv2.resize(img, (camera.width, camera.height), interpolation=cv2.INTER_AREA)


def charuco_views(board, camera: Camera, count: int, seed: int, px_per_square: int = 60) -> tuple[list[np.ndarray], np.ndarray]:
    """Synthetic photos of a ChArUco :class:`recon3d.calibrate_board.Board` (with a one-square white
    margin) and their ``(count, 3, 4)`` cam_from_board poses (OpenCV's ChArUco board frame)."""
    cb = board.charuco_board()
    tex = cb.generateImage((board.cols * px_per_square, board.rows * px_per_square), marginSize=0)
    tex = cv2.copyMakeBorder(tex, px_per_square, px_per_square, px_per_square, px_per_square, cv2.BORDER_CONSTANT,
                             value=255)
    mpp = board.square / px_per_square
    centre = np.array([board.cols * board.square / 2, board.rows * board.square / 2, 0.0])
    width = (board.cols + 2) * board.square
    f = camera.K[0, 0]
    distance = 1.15 * f * width / camera.width
    poses = look_at_poses(count, centre, distance, seed, spread=0.15 * width)
    rays = camera_rays(camera)
    images = [render_planar(tex, mpp, camera, P, origin=(-board.square, -board.square), rays=rays) for P in poses]
    return images, poses


def checkerboard_texture(cols: int, rows: int, px_per_square: int = 40, margin_squares: int = 1) -> np.ndarray:
    """``(H, W)`` uint8 printed checkerboard with ``cols x rows`` inner corners and a white margin.

    Its top-left pixel corner is at board ``(-(1 + margin) s, -(1 + margin) s)``, so the inner corner
    ``(i, j)`` is at ``(i s, j s)`` as in :func:`recon3d.calibrate_board.Board.object_points`; the
    square diagonal from corner 0 (outside the grid) is black.
    """
    q = np.add.outer(np.arange(rows + 1), np.arange(cols + 1)) % 2
    squares = np.where(q == 0, 0, 255).astype(np.uint8)
    board = np.kron(squares, np.ones((px_per_square, px_per_square), np.uint8))
    m = margin_squares * px_per_square
    return cv2.copyMakeBorder(board, m, m, m, m, cv2.BORDER_CONSTANT, value=255)


def checkerboard_view(camera: Camera, cols: int, rows: int, square: float, cam_from_board: np.ndarray,
                      px_per_square: int = 40) -> np.ndarray:
    """A grey photo of a checkerboard (inner corners ``cols x rows``) through ``camera``."""
    tex = checkerboard_texture(cols, rows, px_per_square)
    origin = -2 * square
    return render_planar(tex, square / px_per_square, camera, cam_from_board, origin=(origin, origin))
