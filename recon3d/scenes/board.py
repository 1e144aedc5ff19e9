"""Checkerboard scenes: calibration photos through a distorting lens with exact corner positions.

Output of :func:`render_checkerboard` in ``OUT``::

    images/view_NN.png       board photos (radial-tangential distortion)
    gt/camera.json           the true camera (see recon3d.camera), K in COLMAP pixel centres
    gt/corners.npy           (V, rows * cols, 2) true corner pixels, COLMAP pixel centres,
                             corner (i, j) at index j * cols + i, board point (i * s, j * s, 0)
    gt/board.json            cols, rows, square, and each view's cam_from_board (3x4)
    scene.yaml               the resolved spec

The board frame is the world frame: inner corners at ``(i * square, j * square, 0)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from recon3d import geometry
from recon3d.camera import Camera
from recon3d.scenes.raycast import RayScene
from recon3d.scenes.render import render_view, write_image
from recon3d.scenes.spec import BoardSpec, LightSpec, ObjectSpec, SceneSpec
from recon3d.workspace import atomic_dir, atomic_write_json


def board_object_points(board: BoardSpec) -> np.ndarray:
    """``(rows * cols, 3)`` inner corners in the board frame, row-major (index j * cols + i)."""
    i, j = np.meshgrid(np.arange(board.cols), np.arange(board.rows))
    return np.stack([i.ravel() * board.square, j.ravel() * board.square, np.zeros(i.size)], axis=1)


def _board_extent(board: BoardSpec) -> tuple[np.ndarray, np.ndarray]:
    """Board plate centre ``(3,)`` and size ``(2,)`` (squares plus margin)."""
    s = board.square
    size = np.array([(board.cols + 1 + 2 * board.margin) * s, (board.rows + 1 + 2 * board.margin) * s])
    center = np.array([(board.cols - 1) / 2 * s, (board.rows - 1) / 2 * s, 0.0])
    return center, size


def board_scene(board: BoardSpec, background: list[float], light: LightSpec) -> RayScene:
    """A scene holding only the board, with an exact analytic checker albedo."""
    center, size = _board_extent(board)
    obj = ObjectSpec(type="plane", center=center.tolist(), size=size.tolist(), normal=[0.0, 0.0, 1.0])
    scene = RayScene([obj], light, background)
    s = board.square

    def albedo(uv: np.ndarray) -> np.ndarray:
        # plane axes for normal +z are world x and y, so board coordinates are uv + centre
        x = uv[:, 0] + center[0]
        y = uv[:, 1] + center[1]
        qx = np.floor(x / s)
        qy = np.floor(y / s)
        inside = (qx >= -1) & (qx <= board.cols - 1) & (qy >= -1) & (qy <= board.rows - 1)
        black = inside & (((qx + qy) % 2) == 0)
        value = np.where(black, 0.06, 0.94)
        return np.repeat(value[:, None], 3, axis=1)

    scene.analytic[0] = albedo
    return scene


def random_board_poses(board: BoardSpec, cameras: list[Camera], count: int, distance: float,
                       rng: np.random.Generator, rig: list[np.ndarray] | None = None,
                       margin_px: float = 12.0) -> np.ndarray:
    """``(count, 3, 4)`` cam_from_board poses that show the whole board in every camera.

    Args:
        cameras: the cameras that must all see the board (one, or two for a rig).
        distance: mean camera distance to the board centre (m).
        rig: per camera, ``(3, 4)`` cam_k_from_cam_0 (identity for the first).
    """
    center, size = _board_extent(board)
    half = size / 2
    plate = center + np.array([[-half[0], -half[1], 0], [half[0], -half[1], 0],
                               [half[0], half[1], 0], [-half[0], half[1], 0]])
    check = np.concatenate([plate, board_object_points(board)])
    rig = rig or [np.eye(3, 4) for _ in cameras]
    poses = []
    while len(poses) < count:
        tilt = np.radians(rng.uniform(0, 42))
        azim = rng.uniform(0, 2 * np.pi)
        d = distance * rng.uniform(0.8, 1.35)
        eye = center + d * np.array([np.sin(tilt) * np.cos(azim), np.sin(tilt) * np.sin(azim), -np.cos(tilt)])
        target = center + np.array([rng.uniform(-0.3, 0.3) * size[0], rng.uniform(-0.3, 0.3) * size[1], 0])
        roll = rng.uniform(-np.pi / 5, np.pi / 5)
        up = np.array([np.sin(roll), -np.cos(roll), 0.0])
        pose = geometry.cam_from_world_look_at(eye, target, up)
        ok = True
        for cam, k_from_0 in zip(cameras, rig):
            Xc = geometry.transform_points(geometry.compose_rigid(k_from_0, pose), check)
            if np.any(Xc[:, 2] <= 0.05):
                ok = False
                break
            uv = cam.project(Xc)
            ok &= bool(np.all((uv > margin_px) & (uv < np.array([cam.width, cam.height]) - margin_px)))
        if ok:
            poses.append(pose)
    return np.stack(poses)


def board_corners(camera: Camera, cam_from_board: np.ndarray, board: BoardSpec) -> np.ndarray:
    """``(rows * cols, 2)`` true corner pixels (with distortion, COLMAP pixel centres)."""
    return camera.project(geometry.transform_points(cam_from_board, board_object_points(board)))


def render_checkerboard(spec: SceneSpec, out: Path, progress: Callable | None = None) -> dict:
    """Render a checkerboard scene into ``out`` (see the module docstring); returns a summary."""
    from recon3d.scenes.multiview import camera_from_spec

    board = spec.board
    camera = camera_from_spec(spec.camera)
    scene = board_scene(board, spec.background, spec.light)
    rng = np.random.default_rng(spec.seed)
    poses = random_board_poses(board, [camera], spec.views.count, spec.views.radius, rng)
    it = progress(range(len(poses)), desc=f"render {spec.name}", unit="view") if progress else range(len(poses))
    corners = []
    with atomic_dir(out / "images") as img_dir:
        for v in it:
            view = render_view(scene, camera, poses[v], spec.supersample)
            write_image(img_dir / f"view_{v:02d}.{spec.image_format}", view.rgb)
            corners.append(board_corners(camera, poses[v], board))
    with atomic_dir(out / "gt") as gt:
        camera.save(gt / "camera.json")
        np.save(gt / "corners.npy", np.stack(corners))
        atomic_write_json(gt / "board.json", {
            "cols": board.cols, "rows": board.rows, "square": board.square,
            "pixel_convention": "colmap", "cam_from_board": [p.tolist() for p in poses],
        })
    return {"images": len(poses), "corners_per_view": board.cols * board.rows,
            "image_size": [camera.width, camera.height]}
