"""Structure from motion: a folder of photos to bundle-adjusted cameras and sparse points.

:func:`run_sfm` is the stage (``recon3d sfm IMAGES -o WS``)::

    photos --scan/ingest--> WS/images --SIFT--> database.db --match/verify--> database.db
           --map (incremental + BA, or global)--> register the rest (recon3d.sfm.policy: second pass,
           global second opinion, merge) --> refine (filter, BA, principal point)
           --> WS/sparse/N/{cameras,images,points3D}.bin + points.ply, WS/reports/sfm.{json,md} + plots

Outputs are COLMAP's own formats, so any COLMAP-aware tool reads them; ``sparse/0`` is the
largest model, further models (when the photos split into groups that share nothing) are
``sparse/1``, ... Image names are the input file names.

Reruns: features already in ``database.db`` are reused (also when photos are added), matched
pairs are not matched again, and a finished stage with the same photos and config is skipped
unless ``overwrite``. When the workspace already holds a different photo set, the new one is
built in ``WS/.sfm-staging`` and moved in only when mapping succeeds, so a failed run never
leaves the workspace half-written.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from recon3d.core.atomic import (
    atomic_dir,
    atomic_write_json,
    owned_temp_prefix,
    remove_stale_temps,
    replace_dir,
)
from recon3d.core.cluster import connect, resolve
from recon3d.core.config import to_dict, validate
from recon3d.core.errors import UserError
from recon3d.core.workspace import StageResult, Workspace, config_hash
from recon3d.sfm.config import SfmConfig
from recon3d.sfm.images import ImageScan, InputImage
from recon3d.sfm.match import PairStats
from recon3d.sfm.policy import explain_unregistered  # noqa: F401 - re-exported (it lived here)

STAGING = ".sfm-staging"
"""Folder inside the workspace where a new photo set is reconstructed before it replaces the old one."""

MAPPER_SCRATCH = ".mapper."
"""Prefix of the mapper's scratch folders in the workspace (``.mapper.<pid>.<random>``)."""

EXIT_NO_MODEL = 3
"""Exit status when the photos are readable but no reconstruction is possible."""


@dataclass
class SfmResult(StageResult):
    """What :func:`run_sfm` returns: the stage result, with the report and (lazily) the model.

    ``outputs``: ``{"model": WS/sparse/0, "report": WS/reports/sfm.json, "config": WS/sparse/config.yaml}``;
    ``data``: the report (the content of ``reports/sfm.json``).
    """

    @property
    def report(self) -> dict:
        """The content of ``reports/sfm.json``."""
        return self.data

    @functools.cached_property
    def reconstruction(self):
        """The ``pycolmap.Reconstruction`` in ``sparse/0`` (read on first use)."""
        import pycolmap

        return pycolmap.Reconstruction(str(self.outputs["model"]))


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# --------------------------------------------------------------------------------- helpers
def _digests(folder: Path) -> dict[str, str]:
    from recon3d.io.images import IMAGE_EXTENSIONS
    from recon3d.sfm.images import sha1_file

    if not folder.is_dir():
        return {}
    return {p.name: sha1_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_inputs(scan: ImageScan, folder: Path) -> None:
    """One clear :class:`UserError` when too few usable photos are left."""
    if not scan.images:
        reasons = "; ".join(f"{n}: {r}" for n, r in scan.skipped[:3])
        more = f" (and {len(scan.skipped) - 3} more)" if len(scan.skipped) > 3 else ""
        raise UserError(f"{folder}: none of the {len(scan.skipped)} image files can be used ({reasons}{more}); "
                        "give a folder of readable photos")
    if len(scan.images) == 1:
        extra = f" ({len(scan.skipped)} other file(s) skipped)" if scan.skipped else ""
        raise UserError(f"{folder}: only one usable photo ({scan.images[0].name}){extra}; structure from motion "
                        "needs at least 2 overlapping photos of the scene")


# ------------------------------------------------------------------------------ the stages
def _features_stage(work: Workspace, images: list[InputImage], config: SfmConfig, camera, progress,
                    log: Callable[[str], None] = _stderr, reuse_database: bool = False, session=None) -> dict:
    """Extract features into ``work.database``; reuse the database when it is still valid.

    A database made with other extraction options, with other photos under the same names, or
    by another tool (no recon3d marker) is moved aside to ``database.db.old``, not deleted; with
    ``reuse_database`` its features are used instead when its images are these photos
    (:func:`recon3d.sfm.reuse.check_database`, else a :class:`UserError`).
    """
    from recon3d.sfm.extract import extract, keep_features

    key = config_hash({"extraction": config.extraction.key(), "camera": camera.to_json() if camera else None})
    marker = work.reports / "stages" / "sfm-features.json"
    info = _read_json(marker) if work.database.exists() else None
    digests = {im.name: im.digest for im in images}
    reused = None
    if work.database.exists():
        old = (info or {}).get("digests", {})
        stale = info is None or info.get("key") != key or any(old.get(n, d) != d for n, d in digests.items())
        if stale and reuse_database:
            from recon3d.sfm.reuse import check_database

            reused = check_database(work.database, images)
            keep_features(work.database)  # its features stay as they are: never extracted again
            stale, info = False, None
            (work.reports / "stages" / "sfm-matches.json").unlink(missing_ok=True)  # its matches are kept as they are
        if stale:
            backup = work.database.with_name(work.database.name + ".old")
            os.replace(work.database, backup)
            log(f"note: {work.database} was made with other photos or options (or by another tool); moved it to "
                f"{backup.name} and extracting features again (--reuse-database uses its features)")
            (work.reports / "stages" / "sfm-matches.json").unlink(missing_ok=True)
            info = None
    merged = {**((info or {}).get("digests", {})), **digests}
    atomic_write_json(marker, {"key": key, "digests": merged})  # before extracting: a partial DB stays valid
    if session is not None:
        from recon3d.sfm.cluster import extract_on_cluster
        feat = extract_on_cluster(session, work.database, work.images, images, config.extraction, camera=camera,
                                  progress=progress, device=config.device, log=log)
    else:
        feat = extract(work.database, work.images, images, config.extraction, camera=camera, progress=progress,
                       device=config.device, num_threads=config.num_threads)
    return {**feat, "reused_database": reused} if reused else feat


def _matches_stage(work: Workspace, config: SfmConfig, progress, session=None,
                   log: Callable[[str], None] = _stderr) -> dict:
    """Match and verify pairs (already matched pairs are skipped; a changed config matches again)."""
    import pycolmap

    from recon3d.sfm.match import match

    key = config_hash(config.matching.key(config.seed))
    marker = work.reports / "stages" / "sfm-matches.json"
    info = _read_json(marker)
    if info is not None and info.get("key") != key:
        db = pycolmap.Database.open(work.database)
        try:
            db.clear_matches()
            db.clear_two_view_geometries()
        finally:
            db.close()
    atomic_write_json(marker, {"key": key})
    if session is not None:
        from recon3d.sfm.cluster import match_on_cluster
        return match_on_cluster(session, work.database, config.matching, progress=progress, device=config.device,
                                seed=config.seed, num_threads=config.num_threads, log=log)
    return match(work.database, config.matching, progress=progress, device=config.device, seed=config.seed,
                 num_threads=config.num_threads)


def no_model_error(stats: PairStats, names: list[str], config: SfmConfig, global_tried: bool = False) -> UserError:
    index = [stats.names.index(n) for n in names if n in stats.names]
    inl = stats.inliers[index][:, index] if index else stats.inliers
    raw = stats.matches[index][:, index] if index else stats.matches
    sub = [stats.names[i] for i in index]
    if inl.size and inl.max() >= config.mapping.min_num_matches:
        i, j = divmod(int(inl.argmax()), inl.shape[1])
        msg = (f"no initial pair could be reconstructed (best verified pair {sub[i]} / {sub[j]} with "
               f"{int(inl.max())} inliers; the incremental mapper needs {config.mapping.init_min_num_inliers} and some "
               "parallax); take photos from more different positions"
               + (", or lower --mapping.init-min-num-inliers" if global_tried or config.mapping.mapper == "global"
                  else ", or try --mapper global"))
        if config.mapping.mapper == "global":
            msg = msg.replace("no initial pair could be reconstructed", "global mapping found no model")
    elif raw.size and raw.max() > 0:
        i, j = divmod(int(raw.argmax()), raw.shape[1])
        msg = (f"the photos share no usable content: no pair passed geometric verification (best pair "
               f"{sub[i]} / {sub[j]}: {int(raw.max())} raw matches); photograph one scene from overlapping viewpoints")
    else:
        msg = ("the photos share no content: not a single feature match between any two of them; "
               "photograph one scene from overlapping viewpoints")
    return UserError(f"no reconstruction: {msg}", exit_code=EXIT_NO_MODEL)


def _map_stage(work: Workspace, names: list[str], config: SfmConfig, progress) -> tuple[list, list, dict]:
    """Map, refine every model; returns (models largest first, refine reports, notes).

    When self-calibration degenerates (photos left out or split models while a distortion
    parameter was estimated), mapping runs once more with distortion fixed at zero, and the
    run whose largest model holds more photos wins. Narrow-angle views (long focal lengths,
    short arcs) cannot determine radial distortion, and a wild estimate blocks registration.
    """
    from recon3d.sfm.focal import exif_priors, hold_focal, image_sides
    from recon3d.sfm.mapping import refine_model

    notes: dict = {}
    priors = {} if config.fixed_intrinsics else exif_priors(work.database)
    hold = bool(priors) and hold_focal(priors, image_sides(work.database, names), config.mapping)
    if hold:
        notes["narrow_lens"] = {"reason": "every camera's EXIF focal length is over "
                                f"{config.mapping.narrow_focal_factor:g} x its longer image side: mapped with it held",
                                "focal_px": {str(k): round(v, 1) for k, v in priors.items()}}
    models = _run_mapper(work, names, config, progress, on_clusters=lambda c: notes.__setitem__("hierarchical", c),
                         hold_focal=hold)
    refine_extra_params = True
    if models and not config.fixed_intrinsics and (len(models) > 1 or models[0].num_reg_images() < len(names)) \
            and any(len(list(cam.extra_params_idxs())) > 0 for cam in models[0].cameras.values()):
        retry = _run_mapper(work, names, config, progress, desc="mapping again (distortion fixed)",
                            refine_extra_params=False, hold_focal=hold)
        better = bool(retry) and retry[0].num_reg_images() > models[0].num_reg_images()
        notes["distortion_retry"] = {
            "reason": f"{models[0].num_reg_images()}/{len(names)} photos in the largest model with distortion "
                      "estimated; tried again with distortion fixed at zero",
            "registered_with_distortion": int(models[0].num_reg_images()),
            "registered_without": int(retry[0].num_reg_images()) if retry else 0,
            "kept": "without distortion" if better else "with distortion"}
        if better:
            models, refine_extra_params = retry, False
    from recon3d.sfm.policy import complete_models

    models, notes["policy"] = complete_models(work.database, work.images, work.root, models, config, names,
                                              refine_extra_params, hold_focal=hold)
    refined, reports = [], []
    for rec in (progress(models, desc="refining", unit="model") if progress else models):
        rec, rep = refine_model(rec, config, refine_extra_params, priors)
        refined.append(rec)
        reports.append(rep.to_dict())
    order = sorted(range(len(refined)), key=lambda k: (-refined[k].num_reg_images(), -refined[k].num_points3D()))
    return [refined[k] for k in order], [reports[k] for k in order], notes


def _run_mapper(work: Workspace, names: list[str], config: SfmConfig, progress, desc: str | None = None,
                refine_extra_params: bool = True, on_clusters=None, hold_focal: bool = False) -> list:
    import tempfile

    from recon3d.sfm.mapping import map_database

    bar = progress(range(len(names)), desc=desc or f"mapping ({config.mapping.mapper})", unit="img") if progress else None
    it = iter(bar) if bar is not None else None

    def on_image() -> None:
        if it is not None:
            next(it, None)

    work.root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(work.root, MAPPER_SCRATCH)  # left by a run killed while mapping
    with tempfile.TemporaryDirectory(prefix=owned_temp_prefix(MAPPER_SCRATCH), dir=work.root) as scratch:
        models = map_database(work.database, work.images, Path(scratch), config, image_names=names, on_image=on_image,
                              refine_extra_params=refine_extra_params, on_clusters=on_clusters, hold_focal=hold_focal)
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    return models


def write_models(models: list, sparse_dir: Path, config: SfmConfig) -> None:
    """Write ``sparse/N/{cameras,images,points3D}.bin`` + ``points.ply`` and ``sparse/config.yaml`` atomically."""
    from recon3d.core.config import save_config

    with atomic_dir(sparse_dir) as tmp:
        for k, rec in enumerate(models):
            out = tmp / str(k)
            out.mkdir()
            rec.write_binary(str(out))
            rec.export_PLY(str(out / "points.ply"))
        save_config(config, tmp / "config.yaml")


def model_loads(model: Path) -> bool:
    """Whether ``model`` holds a COLMAP model that pycolmap reads, with registered images."""
    import pycolmap

    from recon3d.io.colmap import binary_model_problem

    if not any((Path(model) / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
        return False
    if (Path(model) / "cameras.bin").is_file() and binary_model_problem(model):
        return False
    try:
        return pycolmap.Reconstruction(str(model)).num_reg_images() > 0
    except Exception:  # noqa: BLE001 - a truncated or foreign file: not a finished stage
        return False


def check_pycolmap_options(config: SfmConfig) -> None:
    """Build every pycolmap options object of ``config`` once, so a bad ``pycolmap_options`` key is a
    :class:`UserError` before any work."""
    from recon3d.sfm.extract import extraction_options
    from recon3d.sfm.mapping import pipeline_options
    from recon3d.sfm.match import matching_options

    extraction_options(config.extraction, config.num_threads)
    matching_options(config.matching, config.seed, config.num_threads)
    pipeline_options(config)


def run_sfm(ws: Workspace | Path | str, images: Path | str | None = None, config: SfmConfig | None = None,
            overwrite: bool = False, progress: Callable | None = None,
            log: Callable[[str], None] = _stderr, reuse_database: bool = False, cluster=None) -> SfmResult:
    """Structure from motion from a folder of photos into workspace ``ws``.

    Args:
        ws: the workspace, or its folder (created if missing).
        images: folder of photos; ``None`` uses ``ws.images``.
        config: options (defaults: :class:`SfmConfig`).
        overwrite: map again even when a finished result with the same photos and config exists.
        progress: tqdm-like wrapper for progress bars (``recon3d.core.progress.progress``), or None.
        log: where warnings go (one line each; default stderr). Nothing is printed to stdout.
        reuse_database: use the features of a ``WS/database.db`` another tool made when its images are
            these photos (names and sizes; else a :class:`UserError`), instead of extracting again.
        cluster: :class:`recon3d.core.cluster.ClusterOptions`: extract and match as Ray tasks (:mod:`recon3d.sfm.cluster`;
            default address ``$RECON3D_CLUSTER``); the report's ``cluster`` says where the work ran.
    Returns:
        :class:`SfmResult` (``skipped``, ``summary``, ``report``, ``reconstruction``). Raises
        :class:`UserError` (exit code 2 for bad input, 3 when the photos cannot be reconstructed)
        with one line saying why.

    The stage contract (:meth:`Workspace.stage`): a finished run with the same photos, config and
    camera is skipped while its model still loads; a rerun clears the evaluation's marker. A new
    photo set for a workspace that holds another is built in ``WS/.sfm-staging`` before the stage
    is entered, so a failure leaves the workspace, markers included, as it was.
    """
    from recon3d.io.cameras import load_camera
    from recon3d.sfm.images import scan_images

    ws = ws if isinstance(ws, Workspace) else Workspace(ws)
    config = validate(config or SfmConfig())
    check_pycolmap_options(config)
    t_start = time.perf_counter()
    camera = load_camera(config.camera_file) if config.camera_file else None
    src = Path(images) if images is not None else ws.images
    if images is None and not ws.images.is_dir():
        raise UserError(f"{ws.images}: no photos in this workspace; give a folder: `recon3d sfm PHOTOS -o {ws.root}`")
    if ws.root.exists() and not ws.root.is_dir():
        raise UserError(f"{ws.root}: exists and is not a folder; choose another workspace path")
    scan = scan_images(src, progress=progress)
    for name, reason in scan.skipped:
        log(f"warning: skipping {src / name}: {reason}")
    check_inputs(scan, src)
    if camera is not None:  # a calibration for another camera fails here, before anything is written
        from recon3d.sfm.extract import camera_for_size

        for size in sorted({(im.width, im.height) for im in scan.images}):
            camera_for_size(camera, *size)
    timings = {"scan": time.perf_counter() - t_start}
    digests = {im.name: im.digest for im in scan.images}
    key = {"config": to_dict(config), "digests": digests, "camera": camera.to_json() if camera else None}
    outputs = {"model": ws.model, "report": ws.reports / "sfm.json", "config": ws.sparse / "config.yaml"}
    options = resolve(cluster)
    session = connect(options, log) if options is not None else None  # a bad address fails before any output
    try:
        return _run_stage(ws, src, scan, config, camera, key, digests, outputs, overwrite, progress, log, timings,
                          t_start, reuse_database, session)
    finally:
        if session is not None:
            session.close()


def _run_stage(ws: Workspace, src: Path, scan: ImageScan, config: SfmConfig, camera, key: dict, digests: dict,
               outputs: dict, overwrite: bool, progress, log: Callable[[str], None], timings: dict, t_start: float,
               reuse_database: bool, session) -> SfmResult:
    from recon3d.sfm.report import format_summary

    def finished(_recorded: dict[str, Path]) -> bool:
        return outputs["report"].is_file() and model_loads(ws.model)

    # a finished run with this key was made from these very photos: ws.images holds them (no hashing again)
    same_set = src.resolve() == ws.images.resolve() or ws.is_done("sfm", key) or _digests(ws.images) == digests
    staged = not same_set and (ws.images.exists() or ws.has_model())
    work = Workspace(ws.root / STAGING) if staged else ws
    if reuse_database and (staged or not ws.database.is_file()):
        log(f"note: --reuse-database: {ws.root} holds other photos or no database.db; extracting features")
    # a new photo set is built aside before the stage is entered: if it fails, ws (its marker too) stays as it was
    built = (_build(ws, work, same_set, scan, config, camera, progress, log, timings, reuse_database, session)
             if staged else None)
    with ws.stage("sfm", key, overwrite, check=finished, invalidates=("eval",)) as run:
        if run.skipped:
            if staged:
                shutil.rmtree(work.root, ignore_errors=True)
            report = _read_json(outputs["report"]) or {}
            return SfmResult(outputs, skipped=True, summary=format_summary(report, ws), data=report)
        if built is None:
            built = _build(ws, work, same_set, scan, config, camera, progress, log, timings, reuse_database, session)
        if staged:
            _promote(work, ws)
        report = _report(ws, scan, config, built, timings, t_start, session)
        run.outputs = outputs
    return SfmResult(outputs, skipped=False, summary=format_summary(report, ws), data=report)


def _build(ws: Workspace, work: Workspace, same_set: bool, scan: ImageScan, config: SfmConfig, camera, progress,
           log: Callable[[str], None], timings: dict[str, float], reuse_database: bool = False, session=None) -> dict:
    """Photos, features, matches, mapping and ``sparse/`` in ``work`` (``ws``, or its staging folder)."""
    from recon3d.sfm.match import pair_stats

    ws.create()
    digests = {im.name: im.digest for im in scan.images}
    if work is not ws:
        old = _read_json(work.reports / "stages" / "sfm-features.json")
        if work.root.exists() and (old is None or any(old.get("digests", {}).get(n, d) != d for n, d in digests.items())):
            shutil.rmtree(work.root)
    names = [im.name for im in scan.images]
    try:
        if not same_set:
            from recon3d.sfm.images import ingest_images

            ingest_images(scan.images, work.images)
        t = time.perf_counter()
        feat = _features_stage(work, scan.images, config, camera, progress, log, reuse_database, session)
        timings["features"] = time.perf_counter() - t
        t = time.perf_counter()
        matches = _matches_stage(work, config, progress, session, log)
        timings["matching"] = time.perf_counter() - t
        stats = pair_stats(work.database)
        t = time.perf_counter()
        models, refine_reports, notes = _map_stage(work, names, config, progress)
        if not models:
            raise no_model_error(stats, names, config, "global" in notes.get("policy", {}))
        timings["mapping"] = time.perf_counter() - t
        write_models(models, work.sparse, config)
    except UserError:
        if work is not ws:
            shutil.rmtree(work.root, ignore_errors=True)
        raise
    return {"names": names, "features": feat, "matches": matches, "stats": stats, "models": models,
            "refine": refine_reports, "notes": notes}


def _report(ws: Workspace, scan: ImageScan, config: SfmConfig, built: dict, timings: dict[str, float],
            t_start: float, session=None) -> dict:
    """Write ``reports/sfm.{json,md}`` and the plots; returns the report."""
    from recon3d.sfm.policy import unregistered_entries
    from recon3d.sfm.report import build_report, write_report

    models = built["models"]
    registered = {}
    for k, rec in enumerate(models):
        for im in rec.images.values():
            if im.has_pose:
                registered.setdefault(im.name, k)
    policy = built["notes"].get("policy", {})
    unregistered = unregistered_entries(explain_unregistered(built["stats"], built["names"], registered, config),
                                        policy.get("rejected", []), policy.get("inconsistent"))
    timings["total"] = time.perf_counter() - t_start
    report = build_report(ws, config, scan, built["features"], built["matches"], models, built["refine"],
                          unregistered, timings)
    report["notes"] = {k: v for k, v in built["notes"].items() if k != "policy"}
    report["policy"] = policy
    if session is not None:
        report["cluster"] = session.summary()
    write_report(ws, report, models, built["stats"])
    return report


def _promote(work: Workspace, ws: Workspace) -> None:
    """Move a staged reconstruction (images, database, models, markers) into the workspace."""
    replace_dir(work.images, ws.images)
    os.replace(work.database, ws.database)
    replace_dir(work.sparse, ws.sparse)
    (ws.reports / "stages").mkdir(parents=True, exist_ok=True)
    for name in ("sfm-features.json", "sfm-matches.json"):
        src = work.reports / "stages" / name
        if src.exists():
            os.replace(src, ws.reports / "stages" / name)
    shutil.rmtree(work.root, ignore_errors=True)
