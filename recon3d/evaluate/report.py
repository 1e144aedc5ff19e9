"""Evaluation of a reconstruction: reprojection error, and pose error against ground truth.

* Reprojection error is recomputed from the model itself (every observation of every 3D
  point projected through its image's camera), not read from COLMAP's cached values.
* Against ground truth (any format of :mod:`recon3d.gt_formats`) the estimated cameras are
  aligned by a similarity (Sim(3), Umeyama on camera centres inside a RANSAC over camera
  triplets, so one bad camera cannot tilt the rest). Position errors are measured after that
  alignment, in ground-truth units and relative to the scene extent (diagonal of the bounding
  box of the ground-truth camera centres). Rotation errors are given twice: under the Sim(3)
  alignment (``rotation_deg``, the strict measure) and under the global rotation that best fits
  the camera orientations (``rotation_fit_deg``: robust chordal mean started from the Sim(3)
  rotation). The second does not inherit the centres' noise, but it also absorbs an error
  common to all cameras, e.g. the pan that a wrong principal point causes on an object ring.
* Relative-pose AUC (as in SuperGlue / LightGlue): for every pair of ground-truth images, the
  error is the larger of the relative rotation error and the angle between the relative
  translation directions; pairs with an unregistered image count as failures. The AUC of the
  recall curve up to 1, 3 and 5 degrees is reported.

:func:`evaluate_workspace` gathers all of it (plus any ``splat/metrics.json`` and
``nerf/metrics.json`` other backends wrote) and writes ``reports/eval.json``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon3d import geometry
from recon3d.errors import UserError

AUC_THRESHOLDS_DEG = (1.0, 3.0, 5.0)
"""Thresholds of the relative-pose AUC."""


# ------------------------------------------------------------------------------- alignment
def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s R src + t`` (Umeyama 1991).

    Args:
        src: ``(N, 3)`` points, N >= 3 (not all on a line).
        dst: ``(N, 3)`` corresponding points.
        with_scale: estimate ``s`` (else ``s = 1``).
    Returns:
        ``(s, R (3, 3), t (3,))``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"src and dst must both be (N, 3), got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def robust_sim3(src: np.ndarray, dst: np.ndarray, threshold: float, max_trials: int = 2000,
                seed: int = 0) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity ``dst ≈ s R src + t`` by RANSAC over point triplets, refit on the inliers.

    Args:
        src, dst: ``(N, 3)`` corresponding points (N >= 3).
        threshold: inlier distance in ``dst`` units.
        max_trials: triplets tried (all of them when there are fewer).
        seed: random seed for the triplet sample.
    Returns:
        ``(s, R (3, 3), t (3,), inliers (N,) bool)``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = len(src)
    if n < 3:
        raise ValueError("a similarity needs at least 3 point pairs")
    combos = list(itertools.combinations(range(n), 3)) if n <= 24 else None
    rng = np.random.default_rng(seed)
    trials = combos if combos is not None and len(combos) <= max_trials else (
        [tuple(rng.choice(n, 3, replace=False)) for _ in range(max_trials)])
    best = (-1, np.inf, None)
    for idx in trials:
        idx = list(idx)
        s, R, t = umeyama(src[idx], dst[idx])
        if not np.isfinite(s) or s <= 0:
            continue
        err = np.linalg.norm(src @ (s * R).T + t - dst, axis=1)
        inl = err < threshold
        score = (int(inl.sum()), float(np.sum(np.minimum(err, threshold))))
        if score[0] > best[0] or (score[0] == best[0] and score[1] < best[1]):
            best = (score[0], score[1], inl)
    inliers = best[2] if best[2] is not None and best[0] >= 3 else np.ones(n, dtype=bool)
    for _ in range(3):  # refit on inliers, re-classify
        s, R, t = umeyama(src[inliers], dst[inliers])
        err = np.linalg.norm(src @ (s * R).T + t - dst, axis=1)
        new = err < threshold
        if new.sum() < 3 or np.array_equal(new, inliers):
            break
        inliers = new
    return s, R, t, inliers


def rotation_mean(R: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations, ``(N, 3, 3) -> (3, 3)``."""
    U, _, Vt = np.linalg.svd(np.sum(R, axis=0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def robust_rotation_alignment(R_gt: np.ndarray, R_est: np.ndarray, R_init: np.ndarray | None = None) -> np.ndarray:
    """Global rotation ``A`` with ``R_est ≈ R_gt @ A``, robust to a few wrong cameras.

    Args:
        R_gt: ``(N, 3, 3)`` ground-truth ``cam_from_world`` rotations.
        R_est: ``(N, 3, 3)`` estimated ones.
        R_init: optional starting estimate (e.g. the Sim(3) rotation).
    Returns:
        ``(3, 3)`` rotation ``A`` (est world from gt world, rotation part).
    """
    per_cam = np.swapaxes(R_gt, -1, -2) @ R_est  # each camera's view of A
    A = R_init if R_init is not None else per_cam[0]
    for _ in range(5):
        dev = geometry.rotation_angle_deg(per_cam, np.broadcast_to(A, per_cam.shape))
        keep = dev <= max(3.0 * float(np.median(dev)), 0.5)
        A = rotation_mean(per_cam[keep] if keep.sum() else per_cam)
    return A


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


# --------------------------------------------------------------------------- reprojection
def reprojection_errors(model) -> dict[str, np.ndarray]:
    """Reprojection error of every observation, recomputed from the model.

    Args:
        model: a :class:`recon3d.colmap_io.Model`.
    Returns:
        image name -> ``(M,)`` pixel distances between each keypoint with a 3D point and the
        projection of that point through the image's pose and camera (any COLMAP model).
    """
    import pycolmap

    index = {int(pid): i for i, pid in enumerate(model.point_ids)}
    cams = {cid: pycolmap.Camera(model=name, width=w, height=h, params=params)
            for cid, (name, w, h, params) in model.cameras.items()}
    out = {}
    for im in model.images.values():
        has = im.point3D_ids >= 0
        if not has.any():
            out[im.name] = np.zeros(0)
            continue
        X = model.points[[index[int(p)] for p in im.point3D_ids[has]]]
        Xc = geometry.transform_points(im.cam_from_world, X)
        proj = cams[im.camera_id].img_from_cam(Xc, check_cheirality=False)
        err = np.linalg.norm(np.asarray(proj) - im.points2D[has], axis=1)
        err[Xc[:, 2] <= 0] = np.inf
        out[im.name] = err
    return out


def reprojection_summary(errors: dict[str, np.ndarray]) -> dict:
    """Mean, median and 95th percentile over all observations, and the mean per image."""
    allerr = np.concatenate([e for e in errors.values()]) if errors else np.zeros(0)
    if len(allerr) == 0:
        return {"observations": 0, "mean": None, "median": None, "p95": None, "per_image": {}}
    return {
        "observations": int(len(allerr)),
        "mean": float(np.mean(allerr)),
        "median": float(np.median(allerr)),
        "p95": float(np.percentile(allerr, 95)),
        "per_image": {n: (float(np.mean(e)) if len(e) else None) for n, e in sorted(errors.items())},
    }


# -------------------------------------------------------------------------------- workspace
def _read_metrics(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"error": f"{path} is not valid JSON"}
    return data if isinstance(data, dict) else {"value": data}


def evaluate_workspace(ws, gt: Path | str | None = None, write: bool = True) -> dict:
    """Evaluate a workspace's ``sparse/0`` (and collect other backends' metrics).

    Args:
        ws: a :class:`recon3d.workspace.Workspace` with a model in ``sparse/0``.
        gt: ground truth (any format of :func:`recon3d.gt_formats.load_gt_cameras`); defaults
            to ``WS/gt/sparse/0`` when it exists.
        write: write ``reports/eval.json``.
    Returns:
        The report as a dict (the content of ``eval.json``).
    """
    from recon3d.colmap_io import read_model
    from recon3d.gt_formats import load_gt_cameras
    from recon3d.workspace import IMAGE_EXTENSIONS, atomic_write_json

    model_dir = ws.require_model()
    model = read_model(model_dir)
    n_inputs = len([p for p in ws.images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]) if ws.images.is_dir() else None
    errors = reprojection_errors(model)
    n_points = len(model.point_ids)
    track_len = (sum(int((im.point3D_ids >= 0).sum()) for im in model.images.values()) / n_points) if n_points else 0.0
    report: dict = {
        "workspace": str(ws.root),
        "model": str(model_dir),
        "input_images": n_inputs,
        "registered_images": len(model.images),
        "points": n_points,
        "mean_track_length": track_len,
        "reprojection_px": reprojection_summary(errors),
    }
    defaulted = gt is None and ws.gt_model.is_dir()
    if defaulted:
        gt = ws.gt_model
    if gt is not None:
        gt_cams = load_gt_cameras(gt)
        if ws.images.is_dir():  # ground truth may cover more photos than this set (e.g. a full ring)
            present = {p.name for p in ws.images.iterdir()}
            gt_cams = {n: c for n, c in gt_cams.items() if n in present} or gt_cams
        est = {im.name: im.cam_from_world for im in model.images.values()}
        if defaulted and not set(est) & set(gt_cams):
            # ws/gt belongs to photos this workspace no longer holds (e.g. a scene replaced by other photos)
            report["gt_skipped"] = f"{gt} describes other photos than {model_dir}; not used"
        else:
            ev = evaluate_poses(est, {n: c.cam_from_world for n, c in gt_cams.items()})
            report["gt"] = {"source": str(gt), **ev.to_dict()}
    for name, path in (("splat", ws.splat / "metrics.json"), ("nerf", ws.nerf / "metrics.json")):
        metrics = _read_metrics(path)
        if metrics is not None:
            report[name] = metrics
    if write:
        atomic_write_json(ws.reports / "eval.json", report)
    return report


def format_report(report: dict) -> str:
    """Human-readable lines of an :func:`evaluate_workspace` report."""
    from recon3d.progress import summary

    rp = report["reprojection_px"]
    rows: list[tuple[str, object]] = []
    reg = report["registered_images"]
    total = report.get("input_images")
    rows.append(("registered images", f"{reg}" + (f" / {total}" if total else "")))
    rows.append(("3D points", f"{report['points']} (mean track length {report['mean_track_length']:.2f})"))
    if rp["mean"] is not None:
        rows.append(("reprojection error", f"mean {rp['mean']:.3f} px, median {rp['median']:.3f} px, "
                                           f"p95 {rp['p95']:.3f} px over {rp['observations']} observations"))
        worst = sorted(((v, k) for k, v in rp["per_image"].items() if v is not None), reverse=True)[:3]
        rows.append(("worst images", ", ".join(f"{k} {v:.2f} px" for v, k in worst)))
    if report.get("gt_skipped"):
        rows.append(("ground truth", report["gt_skipped"]))
    g = report.get("gt")
    if g:
        rows.append(("ground truth", f"{g['source']} ({g['common_images']} common images"
                                     + (f", {len(g['missing_images'])} missing" if g["missing_images"] else "") + ")"))
        r, rf = g["rotation_deg"], g["rotation_fit_deg"]
        rows.append(("rotation error", f"median {r['median']:.4f} deg, mean {r['mean']:.4f}, max {r['max']:.4f} "
                                       "(Sim(3) alignment)"))
        rows.append(("", f"median {rf['median']:.4f} deg, mean {rf['mean']:.4f}, max {rf['max']:.4f} "
                         "(rotation fitted to the orientations)"))
        p, pr = g["position"], g["position_rel_extent"]
        if p["median"] is not None:
            rows.append(("position error", f"median {p['median']:.4g} ({100 * pr['median']:.3f} % of extent "
                                           f"{g['extent']:.3g}), max {p['max']:.4g}; Sim(3) inliers "
                                           f"{g['sim3_inliers']}/{g['common_images']}"))
        rows.append(("relative-pose AUC", ", ".join(f"@{k} deg {v:.3f}" for k, v in g["auc"].items())
                     + f" over {g['pairs']} pairs"))
    for name in ("splat", "nerf"):
        m = report.get(name)
        if m:
            keys = [k for k in ("psnr", "ssim", "lpips", "num_test_views", "steps") if k in m]
            shown = ", ".join(f"{k} {m[k]:.4g}" if isinstance(m[k], float) else f"{k} {m[k]}" for k in keys) \
                if keys else ", ".join(f"{k} {v}" for k, v in list(m.items())[:6])
            rows.append((f"{name} metrics", shown))
    return summary(f"evaluation of {report['workspace']}", rows)
