"""The focal length: how well the views determine it, and the narrow-lens rule.

Self-calibration finds the focal length from perspective effects alone. Through a long lens
(a field of view of 10-20 deg) those are weak: the focal length trades off against the distance
to the scene, and on a few hundred weak features it can run away (a 3045 px lens was estimated at
8600 px on the ``lowtex`` scene, and the poses went wrong with it). Two-view estimates from the
verified fundamental matrices do not help there: measured on ``lowtex`` and ``narrow`` their
median is 2-10 times too short (the problem is as ill-conditioned for a pair as for the model),
so they are not used as a prior. What can help is a prior the photos carry, their EXIF focal
length (pycolmap turns it into the camera's initial focal length and sets
``has_prior_focal_length``):

* **Mapping.** When every camera has an EXIF focal length longer than ``narrow_focal_factor`` times
  its longer image side (a narrow lens), mapping runs with the focal lengths held at the EXIF values
  (:func:`hold_focal`; distortion and poses still refined).
* **Final refinement** (:func:`focal_rule`, after the bundle adjustments of
  :func:`recon3d.sfm.mapping.refine_model`). A second bundle adjustment with the focal length free
  gives its standard deviation (covariance scaled by the residual variance). A camera with an EXIF
  prior keeps the self-calibrated value only when the views determine it (standard deviation under
  ``focal_max_sd_frac`` of it) and it moved from the prior by more than ``focal_min_sigma`` standard
  deviations; otherwise the focal length is set back to the prior and the model bundle adjusted with
  it held (the "second BA").
* **Reporting.** Every self-calibrated camera's focal length is reported with its standard deviation
  (``refinement.focal`` in ``reports/sfm.json``); one the views do not determine, or outside the
  plausible range (:func:`recon3d.sfm.policy.plausible_focal`), is a warning in the summary: the
  poses of such a model may be wrong, and a known camera (``--camera``) or EXIF is what helps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.sfm.config import MapperConfig


@dataclass
class FocalDecision:
    """The focal length of one camera after the final refinement."""

    camera_id: int
    focal: float
    """Final focal length (px; the mean of fx and fy for two-focal models)."""
    sd: float
    """Its standard deviation (px) with the focal length free; nan when not computable."""
    prior: float | None
    """The EXIF focal length (px), or None."""
    source: str
    """'self-calibrated' or 'EXIF prior' (the prior was kept)."""
    determined: bool
    """Whether the views determine the focal length (sd under ``focal_max_sd_frac`` of it)."""
    reason: str
    """One line saying what was decided and why."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def exif_priors(database: Path) -> dict[int, float]:
    """``{camera_id: focal length (px)}`` of the cameras of ``database`` that have an EXIF focal length."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        return {int(c.camera_id): _focal(c) for c in db.read_all_cameras() if c.has_prior_focal_length}
    finally:
        db.close()


def image_sides(database: Path, names: list[str]) -> dict[int, int]:
    """``{camera_id: longer image side}`` of the cameras of the photos ``names`` in ``database``."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        used = {im.camera_id for im in db.read_all_images() if im.name in set(names)}
        return {int(c.camera_id): max(c.width, c.height) for c in db.read_all_cameras() if c.camera_id in used}
    finally:
        db.close()


def hold_focal(priors: dict[int, float], sizes: dict[int, int], config: MapperConfig) -> bool:
    """Whether mapping holds the focal lengths at their EXIF values: every camera (``sizes``:
    camera_id -> longer image side) has a prior longer than ``narrow_focal_factor`` times its side."""
    return bool(sizes) and all(c in priors and priors[c] > config.narrow_focal_factor * s for c, s in sizes.items())


def _focal(cam) -> float:
    return float(np.mean([cam.params[i] for i in cam.focal_length_idxs()]))


def _focal_sd(rec, refine_extra_params: bool) -> dict[int, float]:
    """Standard deviation (px) of each camera's focal length in a bundle adjustment of a copy of ``rec``."""
    import pycolmap

    from recon3d.sfm.intrinsics import (
        bundle_adjust,
        residual_variance,
        scaled_covariance,
    )

    trial = pycolmap.Reconstruction(rec)
    _, covs = bundle_adjust(trial, covariance=True, refine_extra_params=refine_extra_params)
    sigma2 = residual_variance(trial)
    out = {}
    for cid, cam in trial.cameras.items():
        got = scaled_covariance(trial, covs, cid, cam, True, False, refine_extra_params, sigma2)
        if got is None:
            out[cid] = float("nan")
            continue
        variable, cov = got
        idx = [variable.index(i) for i in cam.focal_length_idxs()]
        var = float(np.mean(np.diag(cov)[idx]))
        out[cid] = float(np.sqrt(var)) if var >= 0 else float("nan")
    return out


def focal_rule(rec, priors: dict[int, float], config: MapperConfig,
               refine_extra_params: bool = True) -> tuple[object, list[FocalDecision]]:
    """The final focal-length decision of every camera of ``rec`` (see the module docstring).

    Args:
        rec: a bundle-adjusted, self-calibrated ``pycolmap.Reconstruction`` (modified when a prior is kept).
        priors: EXIF focal lengths, :func:`exif_priors`.
        config: ``focal_max_sd_frac`` and ``focal_min_sigma``.
        refine_extra_params: distortion is refined along.
    Returns:
        ``(rec, one decision per camera)``.
    """
    from recon3d.sfm.intrinsics import bundle_adjust

    sds = _focal_sd(rec, refine_extra_params)
    decisions, held = [], []
    for cid, cam in rec.cameras.items():
        f, sd, prior = _focal(cam), sds.get(cid, float("nan")), priors.get(int(cid))
        side = max(cam.width, cam.height)
        determined = bool(sd < config.focal_max_sd_frac * f)
        plausible = 0.25 * side <= f <= 30 * side
        src = "self-calibrated"
        if prior is not None:
            sigma = abs(f - prior) / sd if sd > 0 else float("inf")
            if determined and sigma > config.focal_min_sigma and plausible:
                reason = (f"self-calibrated {f:.1f} px (sd {sd:.1f} px): the views determine it and move it "
                          f"{sigma:.0f} sd from the EXIF {prior:.1f} px")
            else:
                held.append(int(cid))
                src = "EXIF prior"
                why = (f"the views do not determine it (sd {sd:.1f} px, {100 * sd / f:.1f} %)" if not determined else
                       f"self-calibration ({f:.1f} px) is implausible" if not plausible else
                       f"self-calibration moves it only {sigma:.1f} sd ({f:.1f} px)")
                reason = f"EXIF focal length {prior:.1f} px kept: {why}"
        elif not plausible:
            reason = (f"WARNING: focal length {f:.1f} px is implausible for a {side} px image: the poses may be "
                      "wrong; give the camera (--camera camera.json) or photos with EXIF")
        elif not determined:
            reason = (f"WARNING: the views do not determine the focal length ({f:.1f} px, sd "
                      f"{sd if np.isfinite(sd) else float('nan'):.1f} px, {100 * sd / f:.1f} %): the poses may be "
                      "wrong; give the camera (--camera camera.json) or photos with EXIF")
        else:
            reason = f"self-calibrated {f:.1f} px, sd {sd:.1f} px ({100 * sd / f:.2f} %)"
        decisions.append(FocalDecision(int(cid), f, sd, prior, src, determined, reason))
    if held:
        for cid in held:
            cam = rec.cameras[cid]
            params = np.array(cam.params)
            params[list(cam.focal_length_idxs())] = priors[cid]
            cam.params = params
        bundle_adjust(rec, refine_extra_params=refine_extra_params, constant_intrinsics=held)
        for d in decisions:
            if d.camera_id in held:
                d.focal = _focal(rec.cameras[d.camera_id])
    return rec, decisions


def focal_warning(decisions: list[dict]) -> str:
    """One line for the summary when a focal length is not determined or implausible ('' otherwise)."""
    bad = [d for d in decisions if d["reason"].startswith("WARNING")]
    if not bad:
        return ""
    return "warning: " + bad[0]["reason"][len("WARNING: "):] + (f" (and {len(bad) - 1} more camera(s))" if len(bad) > 1 else "")
