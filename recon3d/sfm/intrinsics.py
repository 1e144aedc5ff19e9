"""Bundle adjustment and the rules that decide a camera's intrinsics after mapping.

:func:`bundle_adjust` is a global bundle adjustment on pycolmap (with the intrinsics' covariance on
demand); :func:`principal_point_rule` and :func:`calibration_prior_rule` are the finish that
:func:`recon3d.sfm.mapping.refine_model` applies to every model.

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
from dataclasses import dataclass

import numpy as np

from recon3d.sfm.config import MapperConfig


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


def scaled_covariance(trial, covs, cid, cam, free_focal: bool, free_pp: bool, free_extra: bool, sigma2: float):
    """(variable parameter indices, their covariance scaled by the residual variance) or None."""
    groups = (set(cam.focal_length_idxs()) if free_focal else set()) | \
        (set(cam.principal_point_idxs()) if free_pp else set()) | (set(cam.extra_params_idxs()) if free_extra else set())
    variable = [i for i in range(len(cam.params)) if i in groups]
    cov = (covs or {}).get(cid)
    if cov is None or cov.shape[0] != len(variable):
        return None
    return variable, cov * sigma2


def residual_variance(rec) -> float:
    """Reprojection residual variance (px^2) per degree of freedom of ``rec``: the scale of BA covariances."""
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
    sigma2 = residual_variance(trial)
    decisions = []
    for cid, cam in trial.cameras.items():
        before = [float(v) for v in rec.cameras[cid].params]
        refined = [float(v) for v in cam.params]
        got = scaled_covariance(trial, covs, cid, cam, True, True, True, sigma2)
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
