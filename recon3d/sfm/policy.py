"""Registration policy: register every photo that can be registered, and say why the rest could not.

After the mapper (:func:`recon3d.sfm.mapping.map_database`) has built its models,
:func:`complete_models` runs, in order:

1. **Second registration pass.** When the largest model leaves photos out (in no model, or only in a
   smaller one), pycolmap's incremental mapper continues from that model with looser absolute-pose
   thresholds (``mapping.extend_min_inliers``, 6, and ``mapping.extend_min_inlier_ratio``, 0.05; measured
   to register more views of rings at the same accuracy, ``shared/SFM_NOTES.md``). A photo it adds is
   kept only when its mean reprojection error stays within what the model's other photos show
   (:func:`accept_extension`); the whole pass is dropped when it raises the other photos' error or
   moves the focal length.
2. **Two-view consistency** (``mapping.consistency_min_agreement``). Every model is checked against
   the database's verified two-view geometries (:mod:`recon3d.sfm.consistency`): a photo whose
   verified matches with the other registered photos mostly disagree with the model's poses is
   deregistered (``inconsistent`` in the report, with the counts), so a photo placed wrongly through
   false matches is refused rather than reported as registered.
3. **Global mapping as a second opinion** (``mapping.try_global``). When photos are still left out,
   the global mapper (GLOMAP) runs on the same database and its model goes through the same
   consistency check; it replaces the incremental one only when it then registers more photos at
   equal consistency, judged without ground truth: mean reprojection error at most 1.5 times the
   incremental model's (+0.1 px) and a plausible focal length (:func:`plausible_focal`).
   ``reports/sfm.json`` says which mapper won and why (``policy``).

   A model of two photos sets no bar, here or in step 1: it fits each point with one degree of freedom
   to spare, so its error is about half what the same photos show in any larger model (measured: 0.18
   px against 0.49 px on eight orbit views), and two views hardly determine the focal length (the
   second pass moved it 7-10 % there); :data:`MIN_IMAGES_FOR_ERROR_BAR`.
4. **Merging.** Smaller models whose photos all sit in the largest one after 1-3 are dropped (their
   photos are in ``sparse/0``); the rest stay as ``sparse/1``, ... A photo only there is *not*
   counted as registered: the report lists it with the step that refused it.

:func:`unregistered_entries` turns the reasons of :func:`explain_unregistered` into the report's
entries: the photo, the step that refused it (``no features``, ``no verified pair``,
``failed absolute pose``, ``rejected``, ``separate model``) and what would help.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from recon3d.sfm.config import SfmConfig
from recon3d.sfm.match import PairStats

HELP = {
    "no features": "more texture in view, or a lower --peak-threshold with more --max-features",
    "no verified pair": "more overlap: a photo between it and its neighbours, taken from a closer viewpoint",
    "failed absolute pose": "more overlap with the registered photos, or a known camera (--camera camera.json)",
    "rejected": "more overlap with the registered photos (its pose did not agree with the model), or a known camera",
    "separate model": "photos that bridge its group and the main model's (more overlap between them)",
}
"""What would help a photo refused at each step."""


def per_image_errors(rec) -> dict[int, float]:
    """Mean reprojection error (px) of each registered image of ``rec``: ``{image_id: error}``."""
    from recon3d.geometry.reprojection import reprojection_errors
    from recon3d.io.colmap import model_from_reconstruction

    errs = reprojection_errors(model_from_reconstruction(rec))
    ids = {im.name: iid for iid, im in rec.images.items()}
    return {ids[n]: float(np.mean(e)) if len(e) else float("inf") for n, e in errs.items() if n in ids}


def reg_names(rec) -> set[str]:
    """Names of the registered images of ``rec``."""
    return {rec.images[i].name for i in rec.reg_image_ids()}


def focal_lengths(rec) -> dict[int, float]:
    """Mean focal length of each camera of ``rec`` (px)."""
    return {int(cid): float(np.mean([cam.params[i] for i in cam.focal_length_idxs()])) for cid, cam in rec.cameras.items()}


def plausible_focal(rec) -> bool:
    """Whether every camera's focal length lies between 0.25 and 30 times its longer image side
    (fields of view from about 150 to 2 degrees)."""
    return all(0.25 * max(cam.width, cam.height) <= f <= 30 * max(cam.width, cam.height)
               for cid, f in focal_lengths(rec).items() for cam in [rec.cameras[cid]])


MIN_IMAGES_FOR_ERROR_BAR = 3
"""A model needs this many photos for its reprojection error to bar another model (see step 3)."""


def mean_error(rec) -> float:
    """Mean reprojection error of all observations of ``rec`` (px)."""
    from recon3d.sfm.intrinsics import residual_stats

    rss, n = residual_stats(rec)
    return float(np.sqrt(rss / n)) if n else float("inf")


def accept_extension(before, after, tolerance: float = 1.25) -> tuple[list[str], str]:
    """Deregister from ``after`` the images it added to ``before`` whose error is out of line.

    Args:
        before: the model before the second pass.
        after: the extended model (modified: rejected images are deregistered).
        tolerance: an added image is kept when its mean reprojection error is at most ``tolerance``
            times the largest per-image error of the images ``before`` held.
    Returns:
        ``(names of the rejected images, one line saying what was decided)``; ``after`` holds no added
        image when the pass raised the old images' error by over 25 % or moved a focal length by over 2 %
        (when ``before`` holds at least :data:`MIN_IMAGES_FOR_ERROR_BAR` images).
    """
    old = reg_names(before)
    errs = per_image_errors(after)
    old_err = [e for i, e in errs.items() if after.images[i].name in old]
    new_ids = [i for i in after.reg_image_ids() if after.images[i].name not in old]
    before_err = list(per_image_errors(before).values())
    f0, f1 = focal_lengths(before), focal_lengths(after)
    moved = max((abs(f1[c] / f0[c] - 1) for c in f0 if c in f1), default=0.0)
    bar = before.num_reg_images() >= MIN_IMAGES_FOR_ERROR_BAR
    if bar and old_err and before_err and np.mean(old_err) > 1.25 * np.mean(before_err) + 0.05:
        why = (f"second pass dropped: it raised the other photos' mean error from {np.mean(before_err):.2f} to "
               f"{np.mean(old_err):.2f} px")
        reject = new_ids
    elif bar and moved > 0.02:
        why = f"second pass dropped: it moved the focal length by {100 * moved:.1f} %"
        reject = new_ids
    else:
        limit = tolerance * max(old_err, default=1.0)
        reject = [i for i in new_ids if not errs.get(i, np.inf) <= limit]
        why = (f"second pass: {len(new_ids) - len(reject)} photo(s) added, {len(reject)} rejected "
               f"(mean reprojection error over {limit:.2f} px, {tolerance:g} x the worst registered photo's)")
    names = [after.images[i].name for i in reject]
    for i in reject:
        after.deregister_frame(after.images[i].frame_id)
    return names, why


def extend_model(database: Path, image_dir: Path, scratch: Path, rec, config: SfmConfig, names: list[str],
                 refine_extra_params: bool = True, hold_focal: bool = False):
    """Continue incremental registration from ``rec`` with the looser thresholds; returns the extended
    model (a new reconstruction) or None when the mapper gave nothing back."""
    import pycolmap

    from recon3d.sfm.mapping import incremental_options

    m = config.mapping
    o = incremental_options(m, seed=config.seed, num_threads=config.num_threads,
                            fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params,
                            hold_focal=hold_focal)
    o.mapper.abs_pose_min_num_inliers = min(m.extend_min_inliers, m.abs_pose_min_num_inliers)
    o.mapper.abs_pose_min_inlier_ratio = min(m.extend_min_inlier_ratio, m.inlier_ratio())
    o.multiple_models = False
    o.image_names = list(names)
    src = scratch / "extend-in"
    src.mkdir(parents=True, exist_ok=True)
    rec.write_binary(str(src))
    recs = pycolmap.incremental_mapping(database, image_dir, scratch / "extend-out", o, input_path=src)
    out = [r for r in recs.values() if r.num_reg_images() > 0]
    return max(out, key=lambda r: r.num_reg_images()) if out else None


def run_global(database: Path, image_dir: Path, scratch: Path, config: SfmConfig, names: list[str],
               refine_extra_params: bool = True, hold_focal: bool = False):
    """The global mapper's largest model on the same database, or None (it failed or found nothing)."""
    import pycolmap

    from recon3d.sfm.mapping import global_options

    o = global_options(config.mapping, seed=config.seed, num_threads=config.num_threads,
                       fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params,
                       hold_focal=hold_focal)
    o.image_names = list(names)
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 3  # a failing second opinion is reported in sfm.json, not as log errors
    try:
        recs = pycolmap.global_mapping(database, image_dir, scratch / "global", o)
    except Exception:  # noqa: BLE001 - pycolmap raises on degenerate input: no second opinion then
        return None
    finally:
        pycolmap.logging.minloglevel = level
    out = [r for r in recs.values() if r.num_reg_images() > 0]
    return max(out, key=lambda r: (r.num_reg_images(), r.num_points3D())) if out else None


def complete_models(database: Path, image_dir: Path, scratch_root: Path, models: list, config: SfmConfig,
                    names: list[str], refine_extra_params: bool = True, hold_focal: bool = False) -> tuple[list, dict]:
    """Steps 1-4 of the module docstring on the mapper's ``models`` (largest first).

    Returns:
        ``(models largest first, policy report)``; the report holds ``mapper`` (which mapper's model
        is ``sparse/0``), ``why``, ``second_pass``, ``global`` (with ``inconsistent``: how many photos
        step 2 took out of the global model), ``rejected`` (photos the second pass refused, and those
        of step 2), ``inconsistent`` (step 2 on the models kept: name -> reason, photos in sparse/0
        excepted) and ``merged`` (smaller models absorbed).
    """
    from recon3d.core.atomic import owned_temp_prefix

    m = config.mapping
    report: dict = {"mapper": m.mapper, "why": "the largest model holds every photo", "rejected": [], "merged": 0}
    if len(names) < 3:
        return models, report
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=owned_temp_prefix(".mapper."), dir=scratch_root) as tmp:
        scratch = Path(tmp)
        if models and m.second_pass and models[0].num_reg_images() < len(names):
            before = models[0]
            ext = extend_model(database, image_dir, scratch, before, config, names, refine_extra_params, hold_focal)
            if ext is not None and ext.num_reg_images() > before.num_reg_images():
                placed = int(ext.num_reg_images())
                rejected, why = accept_extension(before, ext)
                report["second_pass"] = {"before": int(before.num_reg_images()), "placed": placed,
                                         "after": int(ext.num_reg_images()), "decision": why}
                report["rejected"] = rejected
                if ext.num_reg_images() > before.num_reg_images():
                    models = [ext] + models[1:]
            else:
                report["second_pass"] = {"before": int(before.num_reg_images()), "after": int(before.num_reg_images()),
                                         "decision": "second pass registered no further photo"}
        evidence = _evidence(database, config)  # the verified matches, read once for every model checked
        checks = [(rec, _check(rec, evidence, config)) for rec in models]  # step 2: (model, refused)
        models = sorted((r for r in models if r.num_reg_images() > 0), key=lambda r: -r.num_reg_images())
        best = models[0].num_reg_images() if models else 0
        if m.try_global == "auto" and m.mapper == "incremental" and best < len(names):
            glob = run_global(database, image_dir, scratch, config, names, refine_extra_params, hold_focal)
            g_checked = _check(glob, evidence, config) if glob is not None else {}
            report["global"] = _judge_global(models[0] if models else None,
                                             glob if glob is not None and glob.num_reg_images() > 0 else None)
            report["global"]["inconsistent"] = len(g_checked)
            if report["global"]["won"]:
                report["mapper"], report["why"] = "global", report["global"]["why"]
                models = [glob] + models
                checks.append((glob, g_checked))
            else:
                report["why"] = report["global"]["why"]
    if m.consistency_min_agreement > 0:
        main_names = reg_names(models[0]) if models else set()
        # a photo refused by a smaller model but registered in sparse/0 is not refused
        report["inconsistent"] = {n: why for rec, refused in checks if any(rec is r for r in models)
                                  for n, why in refused.items() if n not in main_names}
        report["rejected"] = report["rejected"] + [n for n in report["inconsistent"] if n not in report["rejected"]]
    if models:
        main = reg_names(models[0])
        kept = [models[0]] + [r for r in models[1:] if not reg_names(r) <= main]
        report["merged"] = len(models) - len(kept)
        models = kept
    return models, report


def _evidence(database: Path, config: SfmConfig):
    """What step 2 checks models against (:class:`recon3d.sfm.consistency.Evidence`); None when it is off."""
    from recon3d.sfm.consistency import Evidence

    return Evidence(database) if config.mapping.consistency_min_agreement > 0 else None


def _check(rec, evidence, config: SfmConfig) -> dict[str, str]:
    """Step 2 on ``rec`` (modified): ``{name: reason}`` of the photos the consistency check deregistered."""
    from recon3d.sfm.consistency import check_model

    m = config.mapping
    if evidence is None:
        return {}
    return check_model(rec, evidence, m.consistency_max_error, m.consistency_min_agreement,
                       config.matching.min_num_inliers)


def _judge_global(inc, glob) -> dict:
    if glob is None:
        return {"registered": 0, "won": False, "why": "incremental model kept: global mapping found no model"}
    n_g, e_g = int(glob.num_reg_images()), mean_error(glob)
    out = {"registered": n_g, "reprojection_px": round(e_g, 3), "plausible_focal": plausible_focal(glob)}
    if inc is None:
        won = out["plausible_focal"]
        why = "global model used: incremental mapping found none" if won else \
            "no model: the global mapper's focal length is implausible"
        return {**out, "won": won, "why": why}
    n_i, e_i = int(inc.num_reg_images()), mean_error(inc)
    bar = n_i >= MIN_IMAGES_FOR_ERROR_BAR  # a smaller model's error is no bar (module docstring, step 3)
    if n_g <= n_i:
        why = f"incremental model kept: global mapping registered {n_g} photos, not more than its {n_i}"
    elif not out["plausible_focal"]:
        why = f"incremental model kept: the global model ({n_g} photos) has an implausible focal length"
    elif bar and e_g > 1.5 * e_i + 0.1:
        why = (f"incremental model kept: the global model registers {n_g} photos but reprojects worse "
               f"({e_g:.2f} px vs {e_i:.2f} px)")
    else:
        errors = f"{e_g:.2f} px vs {e_i:.2f} px"
        how = (f"at similar reprojection error ({errors})" if bar
               else f"(a model of {n_i} photos sets no error bar; {errors})")
        return {**out, "won": True, "why": f"global model used: {n_g} photos vs {n_i} {how}"}
    return {**out, "won": False, "why": why}


# ---------------------------------------------------------------------------------- reporting
def explain_unregistered(stats: PairStats, names: list[str], registered: dict[str, int], config: SfmConfig) -> dict[str, str]:
    """The likely reason each photo of ``names`` is not in ``sparse/0``.

    Args:
        stats: per-image and per-pair counts from the database.
        names: the photos used.
        registered: name -> index of the model it is in (0 for sparse/0).
        config: the options (thresholds quoted in the reasons).
    Returns:
        name -> one-line reason, for every photo not in sparse/0.
    """
    index = {n: i for i, n in enumerate(stats.names)}
    min_inl = max(config.matching.min_num_inliers, config.mapping.min_num_matches)
    main = {n for n, k in registered.items() if k == 0}
    out = {}
    for name in names:
        if name in main:
            continue
        if name in registered:
            out[name] = (f"only in the separate model sparse/{registered[name]}, which shares too little with "
                         "sparse/0 to be merged (not in the same coordinate frame)")
            continue
        i = index.get(name)
        if i is None or stats.keypoints[i] == 0:
            out[name] = "no features found (blank, overexposed or textureless photo)"
            continue
        kp = int(stats.keypoints[i])
        raw, inl = stats.matches[i].copy(), stats.inliers[i].copy()
        raw[i] = inl[i] = 0
        best_raw = int(raw.max()) if len(raw) else 0
        other_raw = stats.names[int(raw.argmax())] if best_raw else "-"
        if kp < 100:
            out[name] = f"only {kp} features (low texture); try --peak-threshold 0.002 --max-features 32768"
        elif best_raw < config.mapping.min_num_matches:
            out[name] = (f"too few matches (best {best_raw} with {other_raw}); the photo does not seem to "
                         "overlap the others")
        elif int(inl.max()) < min_inl:
            out[name] = (f"failed geometric verification (best pair {other_raw}: {best_raw} matches, "
                         f"{int(inl.max())} consistent, needs {min_inl})")
        else:
            reg_inl = [(int(inl[j]), stats.names[j]) for j in range(len(inl)) if stats.names[j] in main]
            best = max(reg_inl, default=(0, "-"))
            if best[0] >= min_inl:
                out[name] = (f"verified matches with registered photos ({best[0]} with {best[1]}) but its pose "
                             "could not be estimated (too few of them on 3D points), also with "
                             f"{config.mapping.extend_min_inliers} inliers in the second pass")
            else:
                partners = [stats.names[j] for j in range(len(inl)) if inl[j] >= min_inl]
                out[name] = ("verified matches only with other unregistered photos (" + ", ".join(partners[:4])
                             + ("..." if len(partners) > 4 else "") + ")")
    return out


def step_of(reason: str) -> str:
    """The step that refused a photo, from its :func:`explain_unregistered` reason."""
    if reason.startswith("only in the separate model"):
        return "separate model"
    if reason.startswith(("no features", "only ")):
        return "no features"
    if reason.startswith(("too few matches", "failed geometric", "verified matches only")):
        return "no verified pair"
    if reason.startswith("rejected"):
        return "rejected"
    return "failed absolute pose"


def unregistered_entries(reasons: dict[str, str], rejected: list[str],
                         inconsistent: dict[str, str] | None = None) -> list[dict]:
    """The report's ``unregistered`` list: ``{name, reason, step, help}`` per photo not in sparse/0
    (``inconsistent``: the reasons of photos the two-view consistency check deregistered)."""
    out = []
    for name, reason in sorted(reasons.items()):
        if name in (inconsistent or {}) and step_of(reason) == "failed absolute pose":
            reason = inconsistent[name]
        elif name in rejected and step_of(reason) == "failed absolute pose":
            reason = ("rejected: the second registration pass placed it, but its reprojection error was out of "
                      "line with the model's other photos")
        step = step_of(reason)
        out.append({"name": name, "reason": reason, "step": step, "help": HELP[step]})
    return out
