"""Photos in, verified feature matches out: image checks, SIFT extraction and matching (pycolmap).

The stage reads a folder of photos and fills a COLMAP ``database.db``:

1. :func:`scan_images` decodes every photo up front (Pillow, so truncated files are caught),
   applies the EXIF orientation, drops exact duplicates, and explains every skipped file.
2. :func:`ingest_images` copies (hard-links when it can) the photos into ``WS/images`` under
   their own names; rotated photos are written upright.
3. :func:`extract` runs SIFT (CPU or CUDA) through pycolmap into the database: one shared
   camera per image size by default (``camera_mode='single'``), one per image, or COLMAP's EXIF
   grouping; a ``camera.json`` (``recon3d calibrate``) sets the camera model and a prior.
   Images whose features are already in the database are not extracted again.
4. :func:`match` picks image pairs (exhaustive under ``exhaustive_max_images`` images,
   retrieval by a vocabulary tree trained on the photos themselves (:mod:`recon3d.retrieval`),
   sequential with overlap and optional loop detection, or spatial from GPS EXIF), matches
   them, and verifies each pair geometrically (F/E/H by RANSAC; inlier count kept per pair).
   Pairs already in the database are skipped on rerun.

:func:`pair_stats` reads the per-pair raw and verified match counts back for reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from pathlib import Path
from typing import Callable

from recon3d.core.errors import UserError
from recon3d.sfm.config import ExtractionConfig, apply_pycolmap_options
from recon3d.sfm.images import InputImage


# ---------------------------------------------------------------------------------- database
def sift_device(name: str):
    import pycolmap

    return {"auto": pycolmap.Device.auto, "cpu": pycolmap.Device.cpu, "cuda": pycolmap.Device.cuda}[name]


def quiet_glog() -> None:
    import pycolmap

    from recon3d.core.log import glog_level

    pycolmap.logging.minloglevel = glog_level()  # warnings and errors only; recon3d prints its own progress


def split_chunks(items: list, n_chunks: int) -> list[list]:
    size = max(1, -(-len(items) // max(1, n_chunks)))
    return [items[i:i + size] for i in range(0, len(items), size)]


def camera_for_size(camera, width: int, height: int):
    """A ``recon3d.camera.Camera`` rescaled to an image size of the same aspect ratio.

    Raises :class:`UserError` when the aspect ratios differ (the calibration is for another camera).
    """
    if (camera.width, camera.height) == (width, height):
        return camera
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise UserError(f"camera file is for {camera.width}x{camera.height} images but the photos are {width}x{height} "
                        "(another aspect ratio); calibrate this camera or drop --camera")
    return camera.scaled(sx)


ALIAS_PREFIX = "recon3d-alias-"
"""Names of photos COLMAP's text pair lists cannot carry are swapped for this prefix plus the hex of
the name's UTF-8 bytes while matching (:func:`alias_image_names`); the alias carries the name back."""


def text_safe_name(name: str) -> bool:
    """Whether COLMAP's text readers (pair lists split on spaces, lines trimmed, ``#`` comments) keep
    ``name`` whole."""
    return bool(name) and not name.startswith("#") and not any(c.isspace() for c in name)


def alias_image_names(db) -> dict[str, str]:
    """Rename, in the open database ``db``, every photo whose name is not :func:`text_safe_name` to
    its alias; returns ``{name: alias}`` of all photos (safe names map to themselves).

    The alias holds the name (hex), so :func:`restore_image_names` undoes it even after a kill.
    """
    out = {}
    for im in db.read_all_images():
        if text_safe_name(im.name):
            out[im.name] = im.name
            continue
        alias = ALIAS_PREFIX + im.name.encode("utf-8").hex()
        out[im.name] = alias
        im.name = alias
        db.update_image(im)
    return out


def restore_image_names(db) -> int:
    """Give every aliased photo of the open database ``db`` its name back; returns how many."""
    n = 0
    for im in db.read_all_images():
        if im.name.startswith(ALIAS_PREFIX):
            im.name = bytes.fromhex(im.name[len(ALIAS_PREFIX):]).decode("utf-8")
            db.update_image(im)
            n += 1
    return n


def extraction_options(config: ExtractionConfig, num_threads: int = -1):
    """``pycolmap.FeatureExtractionOptions`` for ``config``, then its ``pycolmap_options``."""
    import pycolmap

    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = config.max_image_size
    ext.num_threads = num_threads
    ext.sift.max_num_features = config.max_num_features
    ext.sift.peak_threshold = config.peak_threshold
    ext.sift.first_octave = config.first_octave
    ext.sift.estimate_affine_shape = config.affine_shape
    apply_pycolmap_options(config.pycolmap_options, "extraction.pycolmap_options", {"": ext})
    return ext


def extract(database: Path, image_dir: Path, images: list[InputImage], config: ExtractionConfig,
            camera=None, progress: Callable | None = None, device: str = "auto", num_threads: int = -1) -> dict:
    """SIFT features of ``images`` into ``database`` (created if missing); existing ones are kept.

    Args:
        database: path of ``database.db``.
        image_dir: folder holding the photos (``WS/images``).
        images: photos to use (from :func:`scan_images`).
        config: options.
        camera: optional ``recon3d.camera.Camera`` (a calibration): its COLMAP model and
            parameters become every camera's starting values (one camera per image size).
        progress: optional tqdm-like wrapper.
        device: 'auto', 'cpu' or 'cuda' (SIFT).
        num_threads: CPU threads (-1: all).
    Returns:
        ``{"images": n, "cameras": n, "keypoints": n, "extracted": n newly extracted}``.
    """
    import pycolmap

    quiet_glog()
    database.parent.mkdir(parents=True, exist_ok=True)
    db = pycolmap.Database.open(database)
    try:
        restore_image_names(db)  # a run killed while matching left aliases behind
        existing = {im.name for im in db.read_all_images() if db.exists_keypoints(im.image_id)}
    finally:
        db.close()
    todo = [im for im in images if im.name not in existing]
    ext = extraction_options(config, num_threads)
    mode = pycolmap.CameraMode.PER_IMAGE if config.camera_mode == "per_image" else pycolmap.CameraMode.SINGLE
    # One import per group of photos sharing a camera (COLMAP's single mode refuses mixed sizes).
    groups: dict[tuple, list[InputImage]] = {}
    for im in todo:
        key = (im.width, im.height) + ((im.exif_camera,) if config.camera_mode == "auto" else ())
        groups.setdefault(key, []).append(im)
    wrap = progress or (lambda it, **kw: it)
    bar = wrap(range(len(todo)), desc="extracting features", unit="img") if todo else None
    it = iter(bar) if bar is not None else None
    for key, group in groups.items():
        w, h = key[:2]
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        if camera is not None:
            cam = camera_for_size(camera, w, h)
            model, params = cam.colmap_model()
            reader.camera_model = model
            reader.camera_params = ",".join(f"{p:.12g}" for p in params)
        names = [im.name for im in group]
        pycolmap.import_images(database, image_dir, mode, names, reader)
        for chunk in split_chunks(names, max(1, len(names) // 4)):
            pycolmap.extract_features(database, image_dir, chunk, mode, reader, ext, sift_device(device))
            for _ in chunk:
                next(it, None)
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    # every photo, not only this run's: a run killed before this step left sparse photos extracted once
    again = extract_sparse_again(database, image_dir, [im.name for im in images], config, device, num_threads)
    db = pycolmap.Database.open(database)
    try:
        info = {"images": db.num_images(), "cameras": db.num_cameras(), "keypoints": db.num_keypoints(),
                "extracted": len(todo), "extracted_again": again}
    finally:
        db.close()
    return info


AGAIN_TABLE = "recon3d_extracted_again"
"""The database's own record of the photos :func:`extract_sparse_again` re-extracted (name, keypoints
before, keypoints after), and of the photos whose features came with a reused database
(:func:`keep_features`, ``before = -1``: never extracted again). It travels with ``database.db``
(moved aside or deleted with it); COLMAP ignores tables it does not know."""


@contextlib.contextmanager
def _transaction(database: Path):
    """A sqlite3 connection to ``database`` inside one transaction (committed on success), then closed."""
    con = sqlite3.connect(database)
    try:
        with con:
            yield con
    finally:
        con.close()


def _again_record(con, create: bool = False) -> dict[str, list[int]]:
    """``{name: [before, after]}`` from :data:`AGAIN_TABLE`; the table is made only when ``create``."""
    if create:
        con.execute(f"CREATE TABLE IF NOT EXISTS {AGAIN_TABLE} "
                    "(name TEXT PRIMARY KEY NOT NULL, before INTEGER NOT NULL, after INTEGER NOT NULL)")
    elif not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (AGAIN_TABLE,)).fetchone():
        return {}
    return {n: [int(b), int(a)] for n, b, a in con.execute(f"SELECT name, before, after FROM {AGAIN_TABLE}")}


def keep_features(database: Path) -> int:
    """Record every photo that has keypoints in ``database`` as final: :func:`extract_sparse_again` leaves
    them as they are (a database made by COLMAP or hloc, reused with ``--reuse-database``).

    Returns:
        the number of photos recorded.
    """
    with _transaction(database) as con:
        _again_record(con, create=True)
        rows = con.execute("SELECT images.name, keypoints.rows FROM images JOIN keypoints "
                           "ON images.image_id = keypoints.image_id").fetchall()
        con.executemany(f"INSERT OR IGNORE INTO {AGAIN_TABLE} VALUES (?, -1, ?)", rows)
    return len(rows)


def extract_sparse_again(database: Path, image_dir: Path, names: list[str], config: ExtractionConfig,
                         device: str = "auto", num_threads: int = -1) -> dict[str, list[int]]:
    """Extract again, with a third of the peak threshold and four times the features, every photo of
    ``names`` with fewer than ``config.adaptive_min_keypoints`` keypoints.

    Resumable: a photo is recorded in the database (:data:`AGAIN_TABLE`) once its looser features are
    written, so a rerun after a kill re-extracts exactly the photos an undisturbed run would, and never
    one twice (re-extraction of a recorded photo would read its looser features as "first" ones).

    Returns:
        ``{name: [keypoints before, keypoints after]}`` of the photos of ``names`` extracted again, by
        this call or an earlier one on this database.
    """
    import pycolmap

    if config.adaptive_min_keypoints <= 0 or not names:
        return {}
    with _transaction(database) as con:
        done = _again_record(con)
    db = pycolmap.Database.open(database)
    try:
        ids = {im.name: im.image_id for im in db.read_all_images()}
        sparse = {n: ids[n] for n in names if n in ids and n not in done
                  and db.num_keypoints_for_image(ids[n]) < config.adaptive_min_keypoints}
        before = {n: int(db.num_keypoints_for_image(i)) for n, i in sparse.items()}
    finally:
        db.close()
    if sparse:
        with _transaction(database) as con:
            for i in sparse.values():
                con.execute("DELETE FROM keypoints WHERE image_id = ?", (int(i),))
                con.execute("DELETE FROM descriptors WHERE image_id = ?", (int(i),))
        looser = dataclasses.replace(config, peak_threshold=config.peak_threshold / 3,
                                     max_num_features=4 * config.max_num_features)
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        pycolmap.extract_features(database, image_dir, list(sparse), pycolmap.CameraMode.PER_IMAGE, reader,
                                  extraction_options(looser, num_threads), sift_device(device))
        db = pycolmap.Database.open(database)
        try:
            after = {n: int(db.num_keypoints_for_image(i)) for n, i in sparse.items()}
        finally:
            db.close()
        with _transaction(database) as con:  # recorded only now: killed before this, a rerun extracts them again
            _again_record(con, create=True)
            con.executemany(f"INSERT OR REPLACE INTO {AGAIN_TABLE} VALUES (?, ?, ?)",
                            [(n, before[n], after[n]) for n in sparse])
        done.update({n: [before[n], after[n]] for n in sparse})
    return {n: done[n] for n in names if n in done and done[n][0] >= 0}
