"""Pose error against ground truth: Sim(3)-aligned rotation and position errors and
relative-pose AUC (as in SuperGlue / LightGlue).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from recon3d import geometry
from recon3d.core.errors import UserError
from recon3d.geometry.align import robust_rotation_alignment, robust_sim3

AUC_THRESHOLDS_DEG = (1.0, 3.0, 5.0)


"""Thresholds of the relative-pose AUC."""


# ----------------------------------------------------------------------------------- errors
@dataclass
class PoseEvaluation:
    """Errors of estimated cameras against ground truth (common images only)."""

    names: list[str]
    """Images present in both (registered and in the ground truth), sorted."""
    missing: list[str]
    """Ground-truth images the estimate does not have."""
    rotation_deg: np.ndarray
    """(N,) rotation error after the Sim(3) alignment (its rotation fitted to the centres)."""
    position: np.ndarray
    """(N,) centre error after Sim(3) alignment, ground-truth units (nan when not alignable)."""
    extent: float
    """Diagonal of the bounding box of the ground-truth camera centres."""
    rotation_fit_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(N,) rotation error after the global rotation that best fits the orientations (robust mean)."""
    scale: float = float("nan")
    """Sim(3) scale (est -> gt)."""
    sim3_inliers: int = 0
    """Cameras that agree with the Sim(3) (position error under 5 % of the extent)."""
    pair_errors_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(P,) relative-pose error max(rotation, translation direction) of each ground-truth pair, inf when missing."""
    auc: dict[str, float] = field(default_factory=dict)
    """Relative-pose AUC at each threshold in degrees, keyed '1', '3', '5'."""

    def to_dict(self, per_image: bool = True) -> dict:
        def stats(x: np.ndarray) -> dict:
            x = x[np.isfinite(x)]
            if len(x) == 0:
                return {"mean": None, "median": None, "max": None}
            return {"mean": float(np.mean(x)), "median": float(np.median(x)), "max": float(np.max(x))}

        rel = self.position / self.extent if self.extent > 0 else self.position * np.nan
        out = {
            "common_images": len(self.names),
            "missing_images": self.missing,
            "rotation_deg": stats(self.rotation_deg),
            "rotation_fit_deg": stats(self.rotation_fit_deg),
            "position": stats(self.position),
            "position_rel_extent": stats(rel),
            "extent": self.extent,
            "sim3_scale": self.scale,
            "sim3_inliers": self.sim3_inliers,
            "pairs": int(len(self.pair_errors_deg)),
            "auc": self.auc,
        }
        if per_image:
            out["per_image"] = {
                n: {"rotation_deg": float(r), "rotation_fit_deg": float(rf),
                    "position": None if not np.isfinite(p) else float(p)}
                for n, r, rf, p in zip(self.names, self.rotation_deg, self.rotation_fit_deg, self.position)
            }
        return out


def pose_auc(errors: np.ndarray, thresholds=AUC_THRESHOLDS_DEG) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, normalised to [0, 1].

    Args:
        errors: ``(P,)`` errors (inf for failures).
        thresholds: thresholds in the errors' unit.
    Returns:
        One AUC per threshold.
    """
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    if len(errors) == 0:
        return [0.0 for _ in thresholds]
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    aucs = []
    for t in thresholds:
        last = int(np.searchsorted(errors, t))
        r = np.concatenate([recall[:last], [recall[last - 1]]])
        e = np.concatenate([errors[:last], [t]])
        aucs.append(float(np.trapezoid(r, x=e) / t))
    return aucs


def relative_pose_errors(est: dict[str, np.ndarray], gt: dict[str, np.ndarray]) -> np.ndarray:
    """Relative-pose error of every pair of ground-truth images.

    Args:
        est: name -> ``(3, 4)`` estimated ``cam_from_world``.
        gt: name -> ``(3, 4)`` true ``cam_from_world``.
    Returns:
        ``(P,)`` errors in degrees, ``max(rotation error, translation direction error)``,
        ``inf`` for pairs with an image missing from ``est``; pairs in sorted name order.
    """
    names = sorted(gt)
    out = []
    for a, b in itertools.combinations(names, 2):
        if a not in est or b not in est:
            out.append(np.inf)
            continue
        rel_e = geometry.compose_rigid(est[b], geometry.invert_rigid(est[a]))
        rel_g = geometry.compose_rigid(gt[b], geometry.invert_rigid(gt[a]))
        r_err = float(geometry.rotation_angle_deg(rel_e[:, :3], rel_g[:, :3]))
        if np.linalg.norm(rel_g[:, 3]) < 1e-12 or np.linalg.norm(rel_e[:, 3]) < 1e-12:
            t_err = 0.0 if np.linalg.norm(rel_g[:, 3]) < 1e-12 else 180.0
        else:
            t_err = float(geometry.angle_between_deg(rel_e[:, 3], rel_g[:, 3]))
        out.append(max(r_err, t_err))
    return np.asarray(out, dtype=np.float64)


def evaluate_poses(est: dict[str, np.ndarray], gt: dict[str, np.ndarray]) -> PoseEvaluation:
    """Compare estimated cameras to ground truth (see the module docstring for the method).

    Args:
        est: name -> ``(3, 4)`` estimated ``cam_from_world`` (registered images).
        gt: name -> ``(3, 4)`` true ``cam_from_world``.
    Returns:
        A :class:`PoseEvaluation`.
    """
    names = sorted(set(est) & set(gt))
    missing = sorted(set(gt) - set(est))
    if not names:
        raise UserError("no image of the model is in the ground truth (image names differ?); "
                        "check that the ground truth belongs to these photos")
    T_e = np.stack([est[n] for n in names])
    T_g = np.stack([gt[n] for n in names])
    C_e, C_g = geometry.camera_centers(T_e), geometry.camera_centers(T_g)
    all_gt_centres = geometry.camera_centers(np.stack(list(gt.values())))
    extent = float(np.linalg.norm(all_gt_centres.max(0) - all_gt_centres.min(0)))
    position = np.full(len(names), np.nan)
    scale, n_inl, R_sim = float("nan"), 0, None
    spread = np.linalg.svd(C_g - C_g.mean(0), compute_uv=False) if len(names) >= 3 else np.zeros(3)
    if len(names) >= 3 and spread[1] > 1e-9 * max(spread[0], 1e-300):
        s, R_sim, t, inl = robust_sim3(C_e, C_g, threshold=0.05 * max(extent, 1e-12))
        position = np.linalg.norm(C_e @ (s * R_sim).T + t - C_g, axis=1)
        scale, n_inl = s, int(inl.sum())
    # X_gt = s R_sim X_est + t, so R_est = R_gt @ R_sim
    A_fit = robust_rotation_alignment(T_g[:, :, :3], T_e[:, :, :3], None if R_sim is None else R_sim)
    rotation_fit = geometry.rotation_angle_deg(T_e[:, :, :3], T_g[:, :, :3] @ A_fit)
    rotation = rotation_fit if R_sim is None else geometry.rotation_angle_deg(T_e[:, :, :3], T_g[:, :, :3] @ R_sim)
    pair_err = relative_pose_errors(est, gt)
    auc = {f"{t:g}": a for t, a in zip(AUC_THRESHOLDS_DEG, pose_auc(pair_err))}
    return PoseEvaluation(names, missing, rotation, position, extent, rotation_fit, scale, n_inl, pair_err, auc)
