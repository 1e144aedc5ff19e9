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

import json
from pathlib import Path

from recon3d.core.workspace import StageResult
from recon3d.evaluate.poses import evaluate_poses
from recon3d.geometry.reprojection import (
    point_errors,
    reprojection_errors,
    reprojection_summary,
)


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
    from recon3d.core.atomic import atomic_write_json
    from recon3d.io.colmap import read_model
    from recon3d.io.gt_formats import load_gt_cameras
    from recon3d.io.images import IMAGE_EXTENSIONS

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
        "reprojection_px": reprojection_summary(errors, point_errors(model)),
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


def evaluate_stage(ws, overwrite: bool = False) -> StageResult:
    """The ``eval`` stage: :func:`evaluate_workspace` unless ``reports/eval.json`` is there from a finished run.

    Args:
        ws: the workspace.
        overwrite: evaluate again (e.g. because SfM made a new model).
    Returns:
        :class:`StageResult` with output ``report``; ``data`` is the report, ``summary`` its
        :func:`format_report` text.
    """
    import json

    path = ws.reports / "eval.json"
    with ws.stage("eval", None, overwrite, check=lambda _: path.is_file()) as run:
        if run.skipped:
            report = json.loads(path.read_text())
            return StageResult(run.previous_outputs, skipped=True, summary=format_report(report), data=report)
        report = evaluate_workspace(ws)
        run.outputs = {"report": path}
    return StageResult(run.outputs, skipped=False, summary=format_report(report), data=report)


def format_report(report: dict) -> str:
    """Human-readable lines of an :func:`evaluate_workspace` report."""
    from recon3d.core.progress import summary

    rp = report["reprojection_px"]
    rows: list[tuple[str, object]] = []
    reg = report["registered_images"]
    total = report.get("input_images")
    rows.append(("registered images", f"{reg}" + (f" / {total}" if total else "")))
    rows.append(("3D points", f"{report['points']} (mean track length {report['mean_track_length']:.2f})"))
    if rp["mean"] is not None:
        rows.append(("reprojection error", f"mean per observation {rp['mean']:.3f} px, median {rp['median']:.3f} px, "
                                           f"p95 {rp['p95']:.3f} px over {rp['observations']} observations"))
        if rp.get("mean_per_point") is not None:
            rows.append(("", f"mean per point {rp['mean_per_point']:.3f} px (each point's track averaged "
                             "first; COLMAP model_analyzer's figure)"))
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
