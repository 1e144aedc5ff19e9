"""Checkerboard scenes: calibration photos through a distorting lens with exact corner positions.

Output of :func:`render_checkerboard` in ``OUT``::

    images/view_NN.png       board photos (radial-tangential distortion)
    gt/camera.json           the true camera (see recon3d.geometry.camera), K in COLMAP pixel centres
    gt/corners.npy           (V, rows * cols, 2) true corner pixels, COLMAP pixel centres,
                             corner (i, j) at index j * cols + i, board point (i * s, j * s, 0)
    gt/board.json            cols, rows, square, and each view's cam_from_board (3x4)
    scene.yaml               the resolved spec

The board frame is the world frame: inner corners at ``(i * square, j * square, 0)``.

Views (``views.layout``): ``cover`` (the default) poses the board the way calibration guides ask
of real photos, pushed into each image corner, each edge and the centre in turn and tilted by
``views.tilt_deg``, so that the corners reach the whole sensor and all five radial-tangential
coefficients are determined (:func:`covering_board_poses`); ``random`` keeps the board near the
image centre (:func:`random_board_poses`; the stereo scene's board pairs use it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from recon3d import geometry
from recon3d.core.atomic import atomic_dir, atomic_write_json
from recon3d.core.errors import UserError
from recon3d.geometry.camera import Camera
from recon3d.io.cameras import save_camera
from recon3d.scenes.raycast import RayScene
from recon3d.scenes.render import render_views, write_image
from recon3d.scenes.spec import BoardSpec, LightSpec, ObjectSpec, SceneSpec


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


def _plate_and_corners(board: BoardSpec, margin: float | None = None) -> np.ndarray:
    """``(4 + rows * cols, 3)`` the board plate's outline corners, then its inner corners (board frame).

    ``margin``: the white margin (in squares) the outline includes; default all of it (``board.margin``).
    """
    center, _ = _board_extent(board)
    margin = board.margin if margin is None else min(margin, board.margin)
    half = np.array([(board.cols + 1 + 2 * margin), (board.rows + 1 + 2 * margin)]) * board.square / 2
    plate = center + np.array([[-half[0], -half[1], 0], [half[0], -half[1], 0],
                               [half[0], half[1], 0], [-half[0], half[1], 0]])
    return np.concatenate([plate, board_object_points(board)])


def _corner_radius(cam: Camera) -> float:
    """Largest normalised radius (undistorted) of the image's four corners."""
    corners = np.array([[0, 0], [cam.width, 0], [0, cam.height], [cam.width, cam.height]], float)
    rays = cam.rays(corners)
    return float(np.max(np.hypot(rays[:, 0], rays[:, 1])))


def _in_view(pose: np.ndarray, check: np.ndarray, cameras: list[Camera], rig: list[np.ndarray],
             margin_px: float, axes: slice = slice(0, 2), radii: list[float] | None = None) -> bool:
    """Whether every point of ``check`` (board frame) lies in front of and inside every camera.

    ``axes`` picks the image axes checked (``slice(0, 1)``: only x). Points beyond the image
    corners' rays (``radii``, per camera) are outside even where a radial distortion that folds
    back far outside the image would project them into it.
    """
    radii = radii or [_corner_radius(cam) for cam in cameras]
    for cam, k_from_0, r_max in zip(cameras, rig, radii):
        Xc = geometry.transform_points(geometry.compose_rigid(k_from_0, pose), check)
        if np.any(Xc[:, 2] <= 0.05):
            return False
        if np.any(np.hypot(Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2]) > r_max):
            return False
        uv = cam.project(Xc)[:, axes]
        if not np.all((uv > margin_px) & (uv < np.array([cam.width, cam.height])[axes] - margin_px)):
            return False
    return True


def random_board_poses(board: BoardSpec, cameras: list[Camera], count: int, distance: float,
                       rng: np.random.Generator, rig: list[np.ndarray] | None = None,
                       margin_px: float = 12.0) -> np.ndarray:
    """``(count, 3, 4)`` cam_from_board poses that show the whole board in every camera.

    Views look at the board from random directions (tilt up to 42 deg) with the board near the
    image centre, so its corners rarely reach the image edges (see :func:`covering_board_poses`).

    Args:
        cameras: the cameras that must all see the board (one, or two for a rig).
        distance: mean camera distance to the board centre (m).
        rig: per camera, ``(3, 4)`` cam_k_from_cam_0 (identity for the first).
    """
    center, size = _board_extent(board)
    check = _plate_and_corners(board)
    rig = rig or [np.eye(3, 4) for _ in cameras]
    radii = [_corner_radius(cam) for cam in cameras]
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
        if _in_view(pose, check, cameras, rig, margin_px, radii=radii):
            poses.append(pose)
    return np.stack(poses)


COVER_ANCHORS = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [0, -1], [1, 0], [0, 1], [-1, 0], [0, 0]], float)
"""Where :func:`covering_board_poses` pushes the board, in turn: towards the image's four corners,
its four edges, and its centre (x, y in -1..1; -1 is the left or top edge)."""


def _rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` (radians) about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def covering_board_poses(board: BoardSpec, cameras: list[Camera], count: int, distance: float,
                         rng: np.random.Generator, tilt_deg: tuple[float, float] = (30.0, 45.0),
                         max_roll_deg: float = 20.0, lean_spread_deg: float = 75.0,
                         depth_range: tuple[float, float] = (0.8, 1.2), keep_margin: float | None = 0.25,
                         rig: list[np.ndarray] | None = None, margin_px: float = 4.0) -> np.ndarray:
    """``(count, 3, 4)`` cam_from_board poses that together cover the image, the whole board in view in each.

    What calibration guides ask of real photos (views reaching the image's corners and edges,
    tilted by 30-45 deg): view ``k`` slides the board as far as it goes towards
    ``COVER_ANCHORS[k % 9]`` (the four image corners, the four edges, the centre), so that its
    corners reach every part of the sensor, where the distortion is largest. Each board is tilted
    against the image plane by a random angle in ``tilt_deg``; off-centre boards lean towards
    the camera (the tilt direction is the image direction of the anchor, give or take up to
    ``lean_spread_deg``) so that a board in a corner is not seen nearly edge-on; the centre board
    leans any way. Each is rolled about its normal by up to ``max_roll_deg``. The board centre
    starts at depth ``distance`` times a random factor in ``depth_range`` (more where the tilted
    board does not fit). Deterministic for a given ``rng`` state.

    "In view" means, in every camera: the squares and ``keep_margin`` squares of the white margin
    around them (the rest of the margin may leave the image) at least ``margin_px`` inside the
    image, every point in front of the camera and within the radius of the image corners' rays.

    Args:
        cameras: the cameras that must all see the board (one, or two for a rig; the anchors
            then refer to the first camera).
        distance: mean depth of the board centre (m).
        tilt_deg: (min, max) angle between the board and the image plane, degrees.
        rig: per camera, ``(3, 4)`` cam_k_from_cam_0 (identity for the first).
    """
    center, _ = _board_extent(board)
    check = _plate_and_corners(board, keep_margin)
    rig = rig or [np.eye(3, 4) for _ in cameras]
    radii = [_corner_radius(cam) for cam in cameras]
    poses = []
    for k in range(count):
        anchor = COVER_ANCHORS[k % len(COVER_ANCHORS)]
        tilt = np.radians(rng.uniform(*tilt_deg))
        turn = rng.uniform(-1, 1)
        roll = np.radians(rng.uniform(-max_roll_deg, max_roll_deg))
        depth = distance * rng.uniform(*depth_range)
        if anchor.any():  # turn the board towards the camera: its outer side comes nearer
            phi = np.arctan2(anchor[1], anchor[0]) + np.radians(lean_spread_deg) * turn
        else:
            phi = np.pi * turn
        axis = np.array([-np.sin(phi), np.cos(phi), 0.0])
        Rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
        # board z (away from the camera) becomes (sin(tilt) cos(phi), sin(tilt) sin(phi), cos(tilt))
        R = _rotation_about(axis, tilt) @ Rz

        def pose_at(x: float, y: float, z: float) -> np.ndarray:
            return np.concatenate([R, (np.array([x, y, z]) - R @ center)[:, None]], axis=1)

        def furthest(fits, limit: float) -> float:
            """The largest s in [0, limit] with fits(s), by bisection (fits(0) holds)."""
            lo, hi = 0.0, limit
            if fits(hi):
                return hi
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            return lo

        def fits(x: float, y: float, axes: slice = slice(0, 2)) -> bool:
            return _in_view(pose_at(x, y, depth), check, cameras, rig, margin_px, axes, radii)

        for _ in range(100):
            if fits(0.0, 0.0):
                break
            depth *= 1.05
        else:
            raise UserError(f"the {board.cols}x{board.rows} board does not fit into the image at any distance; "
                            "use a smaller board or a wider camera")
        # slide along x as far as the board's x extent allows, then along y likewise; the two
        # barely interact, and a last shrink towards the centre takes care of what they do
        x = anchor[0] * furthest(lambda s: fits(anchor[0] * s, 0.0, slice(0, 1)), depth) if anchor[0] else 0.0
        y = anchor[1] * furthest(lambda s: fits(x, anchor[1] * s, slice(1, 2)), depth) if anchor[1] else 0.0
        while not fits(x, y):
            x, y = 0.99 * x, 0.99 * y
        poses.append(pose_at(x, y, depth))
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
    views = spec.views
    if views.layout == "cover":
        if len(views.tilt_deg) != 2 or not 0 <= views.tilt_deg[0] <= views.tilt_deg[1] <= 60:
            raise UserError(f"{spec.name}: views.tilt_deg {views.tilt_deg} must be [min, max] degrees "
                            "with 0 <= min <= max <= 60")
        poses = covering_board_poses(board, [camera], views.count, views.radius, rng, tuple(views.tilt_deg))
    else:
        poses = random_board_poses(board, [camera], views.count, views.radius, rng)
    it = progress(range(len(poses)), desc=f"render {spec.name}", unit="view") if progress else range(len(poses))
    corners = []
    with atomic_dir(out / "images") as img_dir:
        for v, view in zip(it, render_views(scene, camera, poses, spec.supersample)):
            write_image(img_dir / f"view_{v:02d}.{spec.image_format}", view.rgb)
            corners.append(board_corners(camera, poses[v], board))
    with atomic_dir(out / "gt") as gt:
        save_camera(camera, gt / "camera.json")
        np.save(gt / "corners.npy", np.stack(corners))
        atomic_write_json(gt / "board.json", {
            "cols": board.cols, "rows": board.rows, "square": board.square,
            "pixel_convention": "colmap", "cam_from_board": [p.tolist() for p in poses],
        })
    return {"images": len(poses), "corners_per_view": board.cols * board.rows,
            "image_size": [camera.width, camera.height]}
