"""Stereo pairs from an SfM model: choosing partners, their rigs and disparity ranges.

For every registered image (the *reference*), :func:`select_pairs` looks for a partner whose
camera centre lies to the reference's right (so rectification keeps the reference as the left
view and its depth map in the reference's frame), with a baseline that is neither too short
(depth noise grows as depth / baseline) nor too long (the views differ too much to match):
``min_ratio <= baseline / median scene depth <= max_ratio``, optical axes within ``max_angle``,
and enough shared sparse points. Among those it takes the most co-visible partner, weighted
towards a baseline ratio near ``target_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.geometry import transforms as geometry
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import Rectification, StereoRig
from recon3d.io.cameras import camera_from_colmap
from recon3d.io.colmap import Model
from recon3d.stereo.rectify import rig_from_poses


@dataclass
class PairChoice:
    """One selected stereo pair of a model."""

    left_id: int
    """Image id of the reference (left) view."""
    right_id: int
    """Image id of the partner (right) view."""
    left_name: str
    right_name: str
    baseline_ratio: float
    """Baseline / median depth of the reference's sparse points."""
    angle_deg: float
    """Angle between the two optical axes."""
    shared_points: int
    """Sparse points observed by both views."""
    score: float


def model_camera(model: Model, image_id: int) -> Camera:
    """The :class:`Camera` of a model image."""
    im = model.images[image_id]
    return camera_from_colmap(*model.cameras[im.camera_id], where=f"the camera of {im.name} in the SfM model")


def _observed(model: Model, image_id: int) -> np.ndarray:
    ids = model.images[image_id].point3D_ids
    return np.unique(ids[ids >= 0])


def _points_of(model: Model, point_ids: np.ndarray) -> np.ndarray:
    """``(N, 3)`` positions of the given point ids (ids missing from the model are skipped)."""
    if len(point_ids) == 0 or len(model.point_ids) == 0:
        return np.zeros((0, 3))
    order = np.argsort(model.point_ids)
    sorted_ids = model.point_ids[order]
    idx = np.clip(np.searchsorted(sorted_ids, point_ids), 0, len(sorted_ids) - 1)
    ok = sorted_ids[idx] == point_ids
    return model.points[order[idx[ok]]]


def select_pairs(model: Model, min_ratio: float = 0.05, max_ratio: float = 0.45, target_ratio: float = 0.2,
                 max_angle: float = 40.0, min_shared: int = 10, max_pairs: int = 0) -> list[PairChoice]:
    """Choose one right-hand partner for each registered image (see the module docstring).

    Args:
        model: the SfM model (registered images, sparse points and their observations).
        min_ratio, max_ratio: accepted baseline / median depth.
        target_ratio: preferred baseline / median depth.
        max_angle: largest angle between optical axes (degrees).
        min_shared: fewest shared sparse points.
        max_pairs: keep at most this many pairs, evenly spread over the references (0 = all).
    Returns:
        Pairs in the order of the reference images' names.
    """
    ids = sorted(model.images, key=lambda i: model.images[i].name)
    poses = {i: model.images[i].cam_from_world for i in ids}
    centers = {i: -poses[i][:, :3].T @ poses[i][:, 3] for i in ids}
    observed = {i: _observed(model, i) for i in ids}
    pairs: list[PairChoice] = []
    for i in ids:
        pts = _points_of(model, observed[i])
        if len(pts) < min_shared:
            continue
        z = pts @ poses[i][2, :3] + poses[i][2, 3]
        z = z[z > 0]
        if len(z) == 0:
            continue
        med = float(np.median(z))
        best: PairChoice | None = None
        for j in ids:
            if j == i:
                continue
            c_in_i = poses[i][:, :3] @ centers[j] + poses[i][:, 3]
            if c_in_i[0] <= 0 or abs(c_in_i[0]) < abs(c_in_i[1]):
                continue  # not to the right of the reference
            ratio = float(np.linalg.norm(c_in_i)) / med
            angle = float(geometry.angle_between_deg(poses[i][2, :3], poses[j][2, :3]))  # optical axes
            if not (min_ratio <= ratio <= max_ratio) or angle > max_angle:
                continue
            shared = int(len(np.intersect1d(observed[i], observed[j], assume_unique=True)))
            if shared < min_shared:
                continue
            score = shared * float(np.exp(-0.5 * (np.log(ratio / target_ratio) / 0.5) ** 2))
            if best is None or score > best.score:
                best = PairChoice(i, j, model.images[i].name, model.images[j].name, ratio, angle, shared, score)
        if best is not None:
            pairs.append(best)
    if max_pairs and len(pairs) > max_pairs:
        keep = np.unique(np.round(np.linspace(0, len(pairs) - 1, max_pairs)).astype(int))
        pairs = [pairs[k] for k in keep]
    return pairs


def pair_rig(model: Model, pair: PairChoice) -> StereoRig:
    """The rig of a selected pair (left = reference) from the model's cameras and poses."""
    return rig_from_poses(model_camera(model, pair.left_id), model_camera(model, pair.right_id),
                          model.images[pair.left_id].cam_from_world, model.images[pair.right_id].cam_from_world)


def disparity_range(model: Model, pair: PairChoice, rect: Rectification, margin: float = 0.25,
                    scale: float = 1.0) -> tuple[int, int, float]:
    """Disparity search range of a pair from the sparse points both views observe.

    Args:
        model: the model; pair: the pair; rect: its rectification.
        margin: relative widening of the [1st, 99th] percentile range of the points' disparities.
        scale: image scale the range is for (disparities scale with it).
    Returns:
        ``(min disparity, max disparity, max depth)``: integers in pixels (the minimum may be
        negative) and the largest sparse-point depth in the rectified frame (metres).
    """
    shared = np.intersect1d(_observed(model, pair.left_id), _observed(model, pair.right_id), assume_unique=True)
    pts = _points_of(model, shared)
    pose = rect.R1 @ model.images[pair.left_id].cam_from_world
    z = pts @ pose[2, :3] + pose[2, 3]
    z = z[z > 1e-6]
    if len(z) == 0:
        raise ValueError("no shared points in front of the camera")
    d = rect.focal * rect.baseline / z * scale
    lo, hi = np.percentile(d, [1, 99])
    span = hi - lo
    return int(np.floor(lo - margin * span - 2)), int(np.ceil(hi + margin * span + 2)), float(np.max(z))
