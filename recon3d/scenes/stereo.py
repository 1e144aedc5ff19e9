"""Stereo scenes: a calibrated rig with raw and rectified pairs, true disparity and depth.

Output of :func:`render_stereo` in ``OUT``::

    left/pair_NN.png, right/pair_NN.png                  raw pairs (lens distortion)
    rectified/left/pair_NN.png, rectified/right/...      the same pairs, rendered through the
                                                         ideal rectified cameras (no resampling)
    calib/left/board_NN.png, calib/right/board_NN.png    checkerboard pairs for calibrating the rig
    gt/stereo.json                                       the true rig and rectification (recon3d.geometry.rig)
    gt/disparity/pair_NN.npy   float32 (H, W) rectified-left disparity f B / Z (0 where no surface)
    gt/depth/pair_NN.npy       float32 (H, W) rectified-left z-depth, inf where no surface
    gt/depth_raw/pair_NN.npy   float32 (H, W) raw-left z-depth
    gt/corners_left.npy, gt/corners_right.npy   (Vc, rows * cols, 2) true board corners
    gt/board.json              board size and cam_from_board of the left camera per calib view
    gt/poses.json              left cam_from_world (3x4) per pair
    scene.yaml                 the resolved spec
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from recon3d import geometry
from recon3d.core.atomic import atomic_dir, atomic_write_json
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import StereoRig
from recon3d.io.cameras import save_rig
from recon3d.scenes.board import board_corners, board_scene, random_board_poses
from recon3d.scenes.multiview import camera_from_spec, view_poses
from recon3d.scenes.raycast import RayScene
from recon3d.scenes.render import render_many, write_image
from recon3d.scenes.spec import SceneSpec, ViewsSpec


def rotation_from_euler_xyz_deg(angles: list[float]) -> np.ndarray:
    """``(3, 3)`` rotation ``Rz @ Ry @ Rx`` from XYZ Euler angles in degrees."""
    ax, ay, az = np.radians(angles)
    Rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    Ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    Rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def rig_from_spec(spec: SceneSpec) -> StereoRig:
    """The true rig: both cameras from ``spec.camera``, the right one at ``+baseline`` along left x."""
    left = camera_from_spec(spec.camera)
    right = Camera(left.width, left.height, left.K.copy(), left.dist.copy())
    R = rotation_from_euler_xyz_deg(spec.rig.rotation_deg)
    T = -R @ np.array([spec.rig.baseline, 0.0, 0.0])
    return StereoRig(left, right, R, T)


def render_stereo(spec: SceneSpec, out: Path, progress: Callable | None = None) -> dict:
    """Render a stereo scene into ``out`` (see the module docstring); returns a summary."""
    rig = rig_from_spec(spec)
    rect = rig.rectify(alpha=0.0)
    right_from_left = np.concatenate([rig.R, rig.T[:, None]], axis=1)
    scene = RayScene.from_spec(spec)
    views = ViewsSpec(**{**spec.views.__dict__, "count": spec.rig.pairs})
    left_poses = view_poses(views, spec.seed)
    W, H = rig.left.width, rig.left.height
    rect_left = Camera(W, H, rect.P1[:3, :3])
    rect_right = Camera(W, H, rect.P2[:3, :3])

    n_pairs = len(left_poses)
    steps = progress(range(n_pairs), desc=f"render {spec.name}", unit="pair") if progress else range(n_pairs)
    depth, depth_raw, disparity = [], [], []
    with atomic_dir(out / "left") as l_dir, atomic_dir(out / "right") as r_dir, \
            atomic_dir(out / "rectified") as rect_dir:
        (rect_dir / "left").mkdir()
        (rect_dir / "right").mkdir()
        jobs = []
        for p in range(n_pairs):
            left_pose = left_poses[p]
            right_pose = geometry.compose_rigid(right_from_left, left_pose)
            rl_pose = np.concatenate([rect.R1 @ left_pose[:, :3], rect.R1 @ left_pose[:, 3:]], axis=1)
            rr_pose = np.concatenate([rect.R2 @ right_pose[:, :3], rect.R2 @ right_pose[:, 3:]], axis=1)
            jobs += [(scene, rig.left, left_pose, spec.supersample), (scene, rig.right, right_pose, spec.supersample),
                     (scene, rect_left, rl_pose, spec.supersample), (scene, rect_right, rr_pose, spec.supersample)]
        views = render_many(jobs)
        for p in steps:
            name = f"pair_{p:02d}.{spec.image_format}"
            raw_l, raw_r, rl, rr = [next(views) for _ in range(4)]
            write_image(l_dir / name, raw_l.rgb)
            write_image(r_dir / name, raw_r.rgb)
            write_image(rect_dir / "left" / name, rl.rgb)
            write_image(rect_dir / "right" / name, rr.rgb)
            depth.append(rl.depth)
            depth_raw.append(raw_l.depth)
            disparity.append((rect.focal * rect.baseline / rl.depth).astype(np.float32))
        views.close()

    # calibration pairs: the board alone, seen by both cameras
    bscene = board_scene(spec.board, [0.45, 0.45, 0.45], spec.light)
    rng = np.random.default_rng(spec.seed + 100)
    bposes = random_board_poses(spec.board, [rig.left, rig.right], spec.rig.calib_views,
                                spec.rig.calib_distance, rng, rig=[np.eye(3, 4), right_from_left])
    corners_l, corners_r = [], []
    with atomic_dir(out / "calib") as c_dir:
        (c_dir / "left").mkdir()
        (c_dir / "right").mkdir()
        rposes = [geometry.compose_rigid(right_from_left, pose) for pose in bposes]
        views = render_many([job for pose, rpose in zip(bposes, rposes)
                             for job in ((bscene, rig.left, pose, 3), (bscene, rig.right, rpose, 3))])
        for v, (pose, rpose) in enumerate(zip(bposes, rposes)):
            write_image(c_dir / "left" / f"board_{v:02d}.png", next(views).rgb)
            write_image(c_dir / "right" / f"board_{v:02d}.png", next(views).rgb)
            corners_l.append(board_corners(rig.left, pose, spec.board))
            corners_r.append(board_corners(rig.right, rpose, spec.board))
        views.close()

    with atomic_dir(out / "gt") as gt:
        save_rig(rig, gt / "stereo.json", rect)
        for sub, maps in (("depth", depth), ("depth_raw", depth_raw), ("disparity", disparity)):
            (gt / sub).mkdir()
            for p, m in enumerate(maps):
                np.save(gt / sub / f"pair_{p:02d}.npy", m)
        np.save(gt / "corners_left.npy", np.stack(corners_l))
        np.save(gt / "corners_right.npy", np.stack(corners_r))
        atomic_write_json(gt / "board.json", {
            "cols": spec.board.cols, "rows": spec.board.rows, "square": spec.board.square,
            "pixel_convention": "colmap", "cam_from_board": [p.tolist() for p in bposes]})
        atomic_write_json(gt / "poses.json", {"left_cam_from_world": [p.tolist() for p in left_poses]})
    return {"pairs": n_pairs, "calib_pairs": len(bposes), "baseline": rig.baseline,
            "image_size": [W, H]}
