"""Adopt a feature database another tool made (COLMAP's ``feature_extractor``, hloc, an older recon3d).

``recon3d sfm PHOTOS -o WS --reuse-database`` with a ``WS/database.db`` that recon3d did not make (or made
with other options) uses its features (and any matches in it) instead of moving it aside and extracting
again, once :func:`check_database` finds that its images are these photos: every image in it is one of
the photos by name, with keypoints, and its camera has the photo's size. Photos it lacks are extracted
as usual.

pycolmap 4 upgrades an older database (COLMAP 3.8's schema) in place when it opens it, after which
COLMAP 3.8 no longer reads it; the untouched file is kept as ``database.db.orig`` first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from recon3d.core.errors import UserError
from recon3d.sfm.images import InputImage

ORIGINAL_SUFFIX = ".orig"
"""A reused database is copied to ``database.db.orig`` before pycolmap opens (and may upgrade) it."""


def _schema_tables(database: Path) -> set[str]:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{database}: not a COLMAP database ({exc}); remove it or drop --reuse-database") from None


def check_database(database: Path, images: list[InputImage]) -> dict:
    """Check that the foreign ``database`` holds features of ``images``; one :class:`UserError` (exit 2) if not.

    Args:
        database: a COLMAP ``database.db`` (any schema pycolmap 4 opens; it is copied to
            ``database.db.orig`` before pycolmap opens it when it has no ``frames`` table).
        images: the photos of this run (from :func:`recon3d.sfm.images.scan_images`).
    Returns:
        ``{"reused": images with keypoints in it, "keypoints": their total, "missing": photos it lacks
        (extracted afterwards)}``.
    """
    import pycolmap

    database = Path(database)
    tables = _schema_tables(database)
    if not {"images", "cameras", "keypoints"} <= tables:
        raise UserError(f"{database}: not a COLMAP database (no images, cameras and keypoints tables); "
                        "remove it or drop --reuse-database")
    if "frames" not in tables:  # an older schema: pycolmap upgrades it in place when it opens it
        shutil.copy2(database, database.with_name(database.name + ORIGINAL_SUFFIX))
    photos = {im.name: im for im in images}
    db = pycolmap.Database.open(database)
    try:
        rows = [(im.name, db.read_camera(im.camera_id), im.image_id) for im in db.read_all_images()]
        keypoints = {name: db.num_keypoints_for_image(image_id) if db.exists_keypoints(image_id) else 0
                     for name, _, image_id in rows}
    finally:
        db.close()
    foreign = sorted(name for name, _, _ in rows if name not in photos)
    if foreign:
        raise UserError(f"{database}: holds {len(foreign)} image(s) that are not among the photos "
                        f"({', '.join(foreign[:3])}{'...' if len(foreign) > 3 else ''}); it belongs to other photos; "
                        "remove it or drop --reuse-database")
    for name, cam, _ in rows:
        p = photos[name]
        if (cam.width, cam.height) != (p.width, p.height):
            raise UserError(f"{database}: image {name} is {cam.width}x{cam.height} there but the photo is "
                            f"{p.width}x{p.height}; it was made from other (resized or rotated) photos; remove it or "
                            "drop --reuse-database")
    have = [name for name, n in keypoints.items() if n > 0]
    if not have:
        raise UserError(f"{database}: none of its {len(rows)} images has keypoints; nothing to reuse; "
                        "remove it or drop --reuse-database")
    return {"reused": len(have), "keypoints": int(sum(keypoints.values())),
            "missing": len([n for n in photos if n not in set(have)])}
