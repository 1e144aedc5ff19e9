"""Mapping and final refinement on pycolmap: incremental or global SfM, bundle adjustment, principal point.

:func:`map_database` runs pycolmap's incremental mapper (with bundle adjustment) or its global
mapper (GLOMAP) on a matched ``database.db``. :func:`refine_model` then gives every model the
same finish: drop observations that reproject worse than ``max_reproj_error`` pixels, bundle
adjust, and apply the principal-point rule of :func:`principal_point_rule`.

The principal-point rule (why: COLMAP keeps the principal point at the image centre; a real
camera's can be ~20 px off, which tilts every camera; but refining it where the views do not
constrain it makes things worse). The principal point is refined in a bundle adjustment and
the result is kept for a camera only when the data clearly ask for it:

* it is well determined: the standard deviation of each coordinate (BA covariance scaled by the
  residual variance) is under ``pp_max_sd_frac`` (0.2 %) of the image diagonal, and
* it moved significantly: the shift's Mahalanobis distance under that covariance exceeds
  ``pp_min_sigma`` (5), i.e. the reprojection error dropped by far more than two free
  parameters explain by chance, and
* it stayed plausible: within 10 % of the image size from the centre.

Otherwise the camera keeps its previous principal point (and the model its previous BA).

With a calibration given as a prior (``camera.json`` without ``--fixed-intrinsics``), mapping
runs with the calibrated intrinsics fixed, and :func:`calibration_prior_rule` then refines all
of them in a final BA under the same kind of test: the refinement is kept only when every
parameter is well determined (focal lengths to 0.5 %, principal point as above, distortion
coefficients to 0.02) and the change is significant (over ``calibration_min_sigma``, 20, standard
deviations jointly: BA standard deviations are optimistic, see the field).
A calibration is usually better than what a handful of views can say about a camera.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from recon3d.core.errors import UserError
from recon3d.sfm.config import MapperConfig, SfmConfig, apply_pycolmap_options


def _set_seed(o, seed: int) -> None:
    for obj in (o, getattr(o, "mapper", None), getattr(o, "triangulation", None)):
        if obj is not None and hasattr(obj, "random_seed"):
            obj.random_seed = seed


def incremental_options(config: MapperConfig, seed: int = 0, num_threads: int = -1, fixed_intrinsics: bool = False,
                        refine_extra_params: bool = True, hold_focal: bool = False):
    """``pycolmap.IncrementalPipelineOptions`` for ``config``, then its ``pycolmap_options``.

    Args:
        config: the mapping section.
        seed: random seed (-1: random).
        num_threads: CPU threads (-1: all).
        fixed_intrinsics: keep the cameras' intrinsics as they are in the database (a calibration).
        refine_extra_params: refine distortion (False keeps it at the database's values).
        hold_focal: keep the focal lengths at the database's values (the narrow-lens rule,
            :mod:`recon3d.sfm.focal`).
    """
    import pycolmap

    o = pycolmap.IncrementalPipelineOptions()
    _set_seed(o, seed)
    o.num_threads = num_threads
    o.min_num_matches = config.min_num_matches
    o.min_model_size = config.min_model_size
    o.mapper.init_min_num_inliers = config.init_min_num_inliers
    o.mapper.abs_pose_min_num_inliers = config.abs_pose_min_num_inliers
    o.mapper.abs_pose_min_inlier_ratio = config.inlier_ratio()
    o.ba_refine_principal_point = False
    if not refine_extra_params:
        o.ba_refine_extra_params = False
        o.mapper.abs_pose_refine_extra_params = False
    if fixed_intrinsics or hold_focal:
        o.ba_refine_focal_length = False
        o.mapper.abs_pose_refine_focal_length = False
    if fixed_intrinsics:
        o.ba_refine_extra_params = False
        o.mapper.abs_pose_refine_focal_length = False
        o.mapper.abs_pose_refine_extra_params = False
    apply_pycolmap_options(config.pycolmap_options, "mapping.pycolmap_options", {"": o})
    return o


def global_options(config: MapperConfig, seed: int = 0, num_threads: int = -1, fixed_intrinsics: bool = False,
                   refine_extra_params: bool = True, hold_focal: bool = False):
    """``pycolmap.GlobalPipelineOptions`` for ``config`` (arguments as :func:`incremental_options`)."""
    import pycolmap

    o = pycolmap.GlobalPipelineOptions()
    o.random_seed = seed
    o.mapper.random_seed = seed
    o.mapper.rotation_averaging.random_seed = seed
    o.mapper.global_positioning.random_seed = seed
    o.mapper.retriangulation.random_seed = seed
    o.num_threads = num_threads
    o.mapper.num_threads = num_threads
    o.min_num_matches = config.min_num_matches
    o.min_model_size = config.min_model_size
    o.mapper.global_positioning.use_gpu = False
    o.mapper.bundle_adjustment.ceres.use_gpu = False
    o.mapper.bundle_adjustment.refine_principal_point = False
    if not refine_extra_params:
        o.mapper.bundle_adjustment.refine_extra_params = False
    if fixed_intrinsics or hold_focal:
        o.mapper.bundle_adjustment.refine_focal_length = False
    if fixed_intrinsics:
        o.mapper.bundle_adjustment.refine_extra_params = False
    apply_pycolmap_options(config.pycolmap_options, "mapping.pycolmap_options", {"": o})
    return o


def hierarchical_options(config: MapperConfig, seed: int = 0, num_threads: int = -1, fixed_intrinsics: bool = False,
                         refine_extra_params: bool = True, hold_focal: bool = False):
    """``pycolmap.HierarchicalPipelineOptions`` for ``config`` (arguments as :func:`incremental_options`).

    Each cluster is mapped with :func:`incremental_options`' settings; ``pycolmap_options`` keys go
    to those (``mapper.init_max_error``), to the clustering (``clustering.leaf_max_num_images``) or
    to the top level (``hierarchical.num_workers``).
    """
    import pycolmap

    o = pycolmap.HierarchicalPipelineOptions()
    inc = incremental_options(dataclasses.replace(config, pycolmap_options={}), seed, num_threads, fixed_intrinsics,
                              refine_extra_params, hold_focal)
    inc.ba_refine_sensor_from_rig = False  # pycolmap: merging is unreliable when clusters move rig extrinsics
    o.incremental_options = inc
    o.num_threads = num_threads
    o.clustering_options.leaf_max_num_images = config.cluster_max_images
    o.clustering_options.image_overlap = config.cluster_overlap
    apply_pycolmap_options(config.pycolmap_options, "mapping.pycolmap_options",
                           {"": o.incremental_options, "clustering": o.clustering_options, "hierarchical": o})
    return o


def pipeline_options(config: SfmConfig, refine_extra_params: bool = True, hold_focal: bool = False):
    """pycolmap's incremental, global or hierarchical pipeline options for the whole :class:`SfmConfig`."""
    build = {"global": global_options, "hierarchical": hierarchical_options}.get(config.mapping.mapper,
                                                                               incremental_options)
    return build(config.mapping, seed=config.seed, num_threads=config.num_threads,
                 fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params, hold_focal=hold_focal)


def map_database(database: Path, image_dir: Path, out_dir: Path, config: SfmConfig,
                 image_names: list[str] | None = None, on_image: Callable[[], None] | None = None,
                 refine_extra_params: bool = True, on_clusters: Callable[[dict], None] | None = None,
                 hold_focal: bool = False) -> list:
    """Run the mapper; returns the models (``pycolmap.Reconstruction``), largest first.

    Args:
        database: matched ``database.db``.
        image_dir: the photos (for point colours).
        out_dir: scratch folder pycolmap writes its own copies into.
        config: the options (``config.mapping`` and the shared seed and threads).
        image_names: map only these photos (the database may hold others); None: all.
        on_image: called after each registered image (incremental mapper), for progress bars.
        refine_extra_params: refine distortion (False keeps it fixed at the database's values).
        on_clusters: hierarchical mapper: called with what :func:`hierarchical_mapping` says of its clusters.
        hold_focal: keep the focal lengths at the database's (EXIF) values (:mod:`recon3d.sfm.focal`).
    """
    import pycolmap

    from recon3d.core.log import glog_level

    pycolmap.logging.minloglevel = glog_level()  # everything with -v
    if config.seed >= 0:
        pycolmap.set_random_seed(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    o = pipeline_options(config, refine_extra_params, hold_focal)
    if image_names:
        (o.incremental_options if config.mapping.mapper == "hierarchical" else o).image_names = list(image_names)
    if config.mapping.mapper == "global":
        recs = pycolmap.global_mapping(database, image_dir, out_dir, o)
    elif config.mapping.mapper == "hierarchical":
        recs, clusters = hierarchical_mapping(database, image_dir, out_dir, o)
        if image_names:  # pycolmap maps each cluster's photos, whatever image_names says: drop the others
            keep = set(image_names)
            for rec in recs.values():
                for frame_id in {rec.images[i].frame_id for i in rec.reg_image_ids() if rec.images[i].name not in keep}:
                    rec.deregister_frame(frame_id)
        if on_clusters is not None:
            on_clusters(clusters)
        for _ in range(max((r.num_reg_images() for r in recs.values()), default=0) if on_image else 0):
            on_image()  # the clusters report no progress: the bar jumps to the end
    else:
        recs = pycolmap.incremental_mapping(database, image_dir, out_dir, o, next_image_callback=on_image)
    models = [r for r in recs.values() if r.num_reg_images() > 0]
    models.sort(key=lambda r: (-r.num_reg_images(), -r.num_points3D()))
    if config.mapping.mapper == "hierarchical":
        kept, seen = [], set()  # a cluster's leftover model whose photos are all in a larger one adds nothing
        for rec in models:
            names = {rec.images[i].name for i in rec.reg_image_ids()}
            kept += [rec] if names - seen else []
            seen |= names
        for rec in kept if clusters["merges"] else []:  # merged clusters disagree where they meet (by over a
            # pixel): adjust each model whole before refine_model's filter cuts the observations joining them
            bundle_adjust(rec, fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params)
        models = kept
    return models


_CLUSTER_LINE = re.compile(r"Cluster \d+ with (\d+) images")
_MERGE_LINE = re.compile(r"Merged clusters with (\d+) and (\d+) images into (\d+) images")


def hierarchical_mapping(database: Path, image_dir: Path, out_dir: Path, options) -> tuple[dict, dict]:
    """``pycolmap.hierarchical_mapping`` and what it did with the clusters.

    pycolmap reports its partition only in its log, so the log (fd 2) is read for the duration of
    the call; its warnings and errors are passed on to stderr.

    Returns:
        ``({id: pycolmap.Reconstruction}, {"clusters": number of leaf clusters, "cluster_sizes":
        [photos per cluster, overlap included], "merges": number of successful merges})``.
    """
    import pycolmap

    level = pycolmap.logging.minloglevel
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            os.dup2(log.fileno(), 2)
            pycolmap.logging.minloglevel = 0
            recs = pycolmap.hierarchical_mapping(database, image_dir, out_dir, options)
        finally:
            pycolmap.logging.minloglevel = level
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line[:1] in ("W", "E", "F"):
            print(line, file=sys.stderr)
    sizes = [int(m.group(1)) for m in _CLUSTER_LINE.finditer(text)]
    return recs, {"clusters": len(sizes), "cluster_sizes": sizes, "merges": len(_MERGE_LINE.findall(text))}


# ------------------------------------------------------------------------------- refinement
def bundle_adjust(rec, refine_principal_point: bool = False, fixed_intrinsics: bool = False,
                  covariance: bool = False, refine_extra_params: bool = True,
                  constant_intrinsics: list[int] = ()) -> tuple[object, dict[int, np.ndarray] | None]:
    """Global bundle adjustment of ``rec`` in place (Ceres, trivial loss, gauge on two cameras).

    Args:
        rec: a ``pycolmap.Reconstruction``.
        refine_principal_point: let the principal points move.
        fixed_intrinsics: keep focal lengths and distortion fixed.
        covariance: also return each camera's intrinsics covariance (unit pixel variance).
        refine_extra_params: let distortion parameters move (unless ``fixed_intrinsics``).
        constant_intrinsics: ids of cameras whose intrinsics stay as they are.
    Returns:
        ``(summary, {camera_id: (P, P) tangent covariance of its parameters} or None)``.
    """
    import pycolmap

    o = pycolmap.BundleAdjustmentOptions()
    o.print_summary = False
    o.refine_principal_point = refine_principal_point
    o.refine_focal_length = not fixed_intrinsics
    o.refine_extra_params = refine_extra_params and not fixed_intrinsics
    cfg = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        cfg.add_image(image_id)
    for camera_id in constant_intrinsics:
        cfg.set_constant_cam_intrinsics(camera_id)
    if len(list(rec.reg_image_ids())) >= 2:
        cfg.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    adjuster = pycolmap.create_default_ceres_bundle_adjuster(o, cfg, rec)
    summary = adjuster.solve()
    covs = None
    if covariance:
        covs = {}
        try:
            cov = pycolmap.estimate_ba_covariance(pycolmap.BACovarianceOptions(), rec, adjuster)
        except Exception:  # noqa: BLE001 - a singular problem simply means "not determined"
            cov = None
        if cov is not None:
            for cid, cam in rec.cameras.items():
                c = cov.get_other_params_cov(cam.params)
                if c is not None:
                    covs[cid] = np.asarray(c)
    return summary, covs


def residual_stats(rec) -> tuple[float, int]:
    """Sum of squared reprojection errors (px^2) and number of observations of ``rec``."""
    from recon3d.geometry.reprojection import reprojection_errors
    from recon3d.io.colmap import model_from_reconstruction

    errs = reprojection_errors(model_from_reconstruction(rec))
    allerr = np.concatenate(list(errs.values())) if errs else np.zeros(0)
    allerr = allerr[np.isfinite(allerr)]
    return float(np.sum(allerr ** 2)), int(len(allerr))


def filter_observations(rec, max_reproj_error: float, min_tri_angle: float) -> int:
    """Drop observations reprojecting worse than ``max_reproj_error`` px, and weak points; returns the count."""
    import pycolmap

    return int(pycolmap.ObservationManager(rec).filter_all_points3D(max_reproj_error, min_tri_angle))


@dataclass
class IntrinsicsDecision:
    """What a refinement rule (principal point, or calibration prior) decided for one camera."""

    camera_id: int
    before: list[float]
    """Parameters before refinement: the (2,) principal point, or the calibration's parameters."""
    refined: list[float]
    """The same parameters as the final refinement found them."""
    sd: list[float]
    """Standard deviation of each refined parameter in pixels (nan when not computable)."""
    shift_sigma: float
    """Shift in standard deviations (Mahalanobis distance)."""
    kept: bool
    """Whether the refined parameters were kept."""
    reason: str
    """One line saying why."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _scaled_covariance(trial, covs, cid, cam, free_focal: bool, free_pp: bool, free_extra: bool, sigma2: float):
    """(variable parameter indices, their covariance scaled by the residual variance) or None."""
    groups = (set(cam.focal_length_idxs()) if free_focal else set()) | \
        (set(cam.principal_point_idxs()) if free_pp else set()) | (set(cam.extra_params_idxs()) if free_extra else set())
    variable = [i for i in range(len(cam.params)) if i in groups]
    cov = (covs or {}).get(cid)
    if cov is None or cov.shape[0] != len(variable):
        return None
    return variable, cov * sigma2


def _sigma2(rec) -> float:
    rss, n_obs = residual_stats(rec)
    return rss / max(1, 2 * n_obs - 6 * rec.num_reg_images() - 3 * rec.num_points3D())


def calibration_prior_rule(rec, config: MapperConfig) -> tuple[object, list[IntrinsicsDecision]]:
    """Refine calibrated intrinsics where the views determine them (see the module docstring).

    Args:
        rec: a model mapped with the calibration's intrinsics fixed.
        config: the thresholds (``pp_max_sd_frac``, ``calibration_min_sigma``).
    Returns:
        ``(reconstruction to use, one decision per camera)``.
    """
    import pycolmap

    trial = pycolmap.Reconstruction(rec)
    _, covs = bundle_adjust(trial, refine_principal_point=True, covariance=True)
    sigma2 = _sigma2(trial)
    decisions = []
    for cid, cam in trial.cameras.items():
        before = [float(v) for v in rec.cameras[cid].params]
        refined = [float(v) for v in cam.params]
        got = _scaled_covariance(trial, covs, cid, cam, True, True, True, sigma2)
        sd, sigma = [float("nan")] * len(before), float("nan")
        if got is None:
            kept, reason = False, "calibration kept: the uncertainty of a refinement could not be computed"
        else:
            variable, C = got
            sd_var = np.sqrt(np.maximum(np.diag(C), 0))
            for k, i in enumerate(variable):
                sd[i] = float(sd_var[k])
            shift = np.subtract(refined, before)[variable]
            try:
                sigma = float(np.sqrt(shift @ np.linalg.solve(C, shift)))
            except np.linalg.LinAlgError:
                sigma = float("nan")
            diag = float(np.hypot(cam.width, cam.height))
            loose = [f"focal {i}" for i in cam.focal_length_idxs() if not sd[i] < 0.005 * abs(refined[i])]
            loose += ["principal point"] if any(not sd[i] < config.pp_max_sd_frac * diag for i in cam.principal_point_idxs()) else []
            loose += [f"distortion {i}" for i in cam.extra_params_idxs() if not sd[i] < 0.02]
            if loose:
                kept, reason = False, f"calibration kept: the views do not determine {', '.join(loose)}"
            elif not sigma > config.calibration_min_sigma:
                kept, reason = False, (f"calibration kept: the refinement moves it only {sigma:.1f} sd "
                                       f"(needs {config.calibration_min_sigma:g})")
            else:
                kept, reason = True, f"refined: the views determine the intrinsics and move them {sigma:.0f} sd"
        decisions.append(IntrinsicsDecision(int(cid), before, refined, sd, sigma, kept, reason))
    if all(d.kept for d in decisions):
        return trial, decisions
    if any(d.kept for d in decisions):
        for d in decisions:
            if d.kept:
                rec.cameras[d.camera_id].params = trial.cameras[d.camera_id].params
        bundle_adjust(rec, fixed_intrinsics=True)
    return rec, decisions


def principal_point_rule(rec, config: MapperConfig, fixed_intrinsics: bool = False,
                         refine_extra_params: bool = True) -> tuple[object, list[IntrinsicsDecision]]:
    """Refine principal points where the data determine them (see the module docstring).

    Args:
        rec: a bundle-adjusted ``pycolmap.Reconstruction`` (may be modified).
        config: ``refine_principal_point`` ('auto', 'always' or 'never') and the rule's thresholds.
        fixed_intrinsics: the intrinsics come from a calibration (nothing is refined).
        refine_extra_params: distortion is refined along.
    Returns:
        ``(reconstruction to use, one decision per camera)``.
    """
    import pycolmap

    if config.refine_principal_point == "never" or fixed_intrinsics:
        return rec, []
    trial = pycolmap.Reconstruction(rec)
    before = {cid: [cam.principal_point_x, cam.principal_point_y] for cid, cam in rec.cameras.items()}
    _, covs = bundle_adjust(trial, refine_principal_point=True, covariance=config.refine_principal_point == "auto",
                            refine_extra_params=refine_extra_params)
    rss, n_obs = residual_stats(trial)
    sigma2 = rss / max(1, 2 * n_obs - 6 * rec.num_reg_images() - 3 * rec.num_points3D())
    decisions = []
    for cid, cam in trial.cameras.items():
        refined = [cam.principal_point_x, cam.principal_point_y]
        shift = np.subtract(refined, before[cid])
        diag = float(np.hypot(cam.width, cam.height))
        sd = [float("nan")] * 2
        sigma = float("nan")
        at = f"({before[cid][0]:.1f}, {before[cid][1]:.1f})"
        to = f"({refined[0]:.1f}, {refined[1]:.1f})"
        if config.refine_principal_point == "always":
            kept, reason = True, f"refined to {to}: --refine-principal-point always"
        else:
            cov = (covs or {}).get(cid)
            # the covariance omits constant parameters: locate the principal point among the variable ones
            extra = set(cam.extra_params_idxs()) if refine_extra_params else set()
            variable = [i for i in range(len(cam.params))
                        if i in set(cam.focal_length_idxs()) | set(cam.principal_point_idxs()) | extra]
            idx = [variable.index(i) for i in cam.principal_point_idxs()]
            if cov is None or cov.shape[0] != len(variable):
                kept, reason = False, f"left at {at}: its uncertainty could not be computed"
            else:
                C = cov[np.ix_(idx, idx)] * sigma2
                sd = [float(np.sqrt(max(C[0, 0], 0))), float(np.sqrt(max(C[1, 1], 0)))]
                try:
                    sigma = float(np.sqrt(shift @ np.linalg.solve(C, shift)))
                except np.linalg.LinAlgError:
                    sigma = float("nan")
                if not max(sd) < config.pp_max_sd_frac * diag:
                    kept, reason = False, (f"left at {at}: the views do not determine it "
                                           f"(sd {max(sd):.1f} px > {config.pp_max_sd_frac * diag:.1f} px)")
                elif not sigma > config.pp_min_sigma:
                    kept, reason = False, (f"left at {at}: the refined shift {np.linalg.norm(shift):.1f} px is "
                                           f"only {sigma:.1f} sd (needs {config.pp_min_sigma:g})")
                elif abs(shift[0]) > 0.1 * cam.width or abs(shift[1]) > 0.1 * cam.height:
                    kept, reason = False, f"left at {at}: the refined point {to} is implausibly far from it"
                else:
                    kept, reason = True, (f"refined to {to}: moved {np.linalg.norm(shift):.1f} px ({sigma:.0f} sd, "
                                          f"sd {max(sd):.2f} px)")
        decisions.append(IntrinsicsDecision(int(cid), [float(v) for v in before[cid]],
                                                [float(v) for v in refined], sd, sigma, kept, reason))
    kept_ids = {d.camera_id for d in decisions if d.kept}
    if kept_ids and len(kept_ids) == len(decisions):
        return trial, decisions
    if kept_ids:
        for cid in kept_ids:
            rec.cameras[cid].params = trial.cameras[cid].params
        bundle_adjust(rec, refine_extra_params=refine_extra_params)
    return rec, decisions


@dataclass
class RefineReport:
    """What :func:`refine_model` did to one model."""

    filtered_observations: int = 0
    principal_point: list[dict] = field(default_factory=list)
    calibration: list[dict] = field(default_factory=list)
    focal: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"filtered_observations": self.filtered_observations, "principal_point": self.principal_point,
                "calibration": self.calibration, "focal": self.focal}


def refine_model(rec, config: SfmConfig, refine_extra_params: bool = True,
                 priors: dict[int, float] | None = None) -> tuple[object, RefineReport]:
    """Final finish of a model: filter, bundle adjust (twice), principal-point rule, focal-length rule
    (:func:`recon3d.sfm.focal.focal_rule`, with the EXIF focal lengths ``priors``), filter.

    Returns ``(the refined reconstruction (``rec`` or a refined copy), what was done)``.
    """
    report = RefineReport()
    for _ in range(2):
        report.filtered_observations += filter_observations(rec, config.mapping.max_reproj_error, config.mapping.min_tri_angle)
        bundle_adjust(rec, fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params)
    if rec.num_reg_images() >= 3 and rec.num_points3D() >= 20:
        if config.calibration_prior:
            rec, decisions = calibration_prior_rule(rec, config.mapping)
            report.calibration = [d.to_dict() for d in decisions]
        else:
            rec, decisions = principal_point_rule(rec, config.mapping, config.fixed_intrinsics, refine_extra_params)
            report.principal_point = [d.to_dict() for d in decisions]
            if not config.fixed_intrinsics:
                from recon3d.sfm.focal import focal_rule

                rec, focal = focal_rule(rec, priors or {}, config.mapping, refine_extra_params)
                report.focal = [d.to_dict() for d in focal]
    report.filtered_observations += filter_observations(rec, config.mapping.max_reproj_error, config.mapping.min_tri_angle)
    return rec, report


def check_models(models: list) -> None:
    """Raise :class:`UserError` when mapping produced nothing usable."""
    if not models:
        raise UserError("mapping found no model", exit_code=3)
