"""Write a workspace's ``database.db`` in the schema of COLMAP 3.8 (Debian/Ubuntu's ``colmap``).

pycolmap 4 (which recon3d uses) writes the newer schema (COLMAP 3.12+: ``rigs``, ``frames``, a
``type`` column on ``descriptors``, ``camera1``/``camera2`` on ``two_view_geometries``, no pose priors
on ``images``); COLMAP 3.8 opens it but fails reading it ("SQL logic error"). The binary model
``sparse/0`` (cameras.bin, images.bin, points3D.bin) is read by both; 3.8 ignores rigs.bin and frames.bin.

The conversion copies, with plain SQLite, the tables 3.8 has: ``cameras`` (models 0..10, which both
versions number alike), ``images`` (pose priors left empty), ``keypoints``, ``descriptors`` (without
``type``), ``matches`` and ``two_view_geometries`` (without the cameras). Pair ids
(``image_id1 * 2147483647 + image_id2``), blob layouts and geometry configuration codes are the same.
Used by ``recon3d export WS --format colmap-3.8-db [-o PATH]`` (default ``WS/database-colmap-3.8.db``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from recon3d.core.errors import UserError

SCHEMA_38 = """
CREATE TABLE cameras (camera_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, model INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, params BLOB, prior_focal_length INTEGER NOT NULL);
CREATE TABLE images (image_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, name TEXT NOT NULL UNIQUE,
    camera_id INTEGER NOT NULL, prior_qw REAL, prior_qx REAL, prior_qy REAL, prior_qz REAL, prior_tx REAL,
    prior_ty REAL, prior_tz REAL, CONSTRAINT image_id_check CHECK(image_id >= 0 and image_id < 2147483647),
    FOREIGN KEY(camera_id) REFERENCES cameras(camera_id));
CREATE UNIQUE INDEX index_name ON images(name);
CREATE TABLE keypoints (image_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
    data BLOB, FOREIGN KEY(image_id) REFERENCES images(image_id) ON DELETE CASCADE);
CREATE TABLE descriptors (image_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
    data BLOB, FOREIGN KEY(image_id) REFERENCES images(image_id) ON DELETE CASCADE);
CREATE TABLE matches (pair_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL, data BLOB);
CREATE TABLE two_view_geometries (pair_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL,
    cols INTEGER NOT NULL, data BLOB, config INTEGER NOT NULL, F BLOB, E BLOB, H BLOB, qvec BLOB, tvec BLOB);
"""
"""The tables of COLMAP 3.8's ``database.db`` (as ``colmap database_creator`` 3.8 makes them)."""

MAX_MODEL_38 = 10
"""Highest camera model id COLMAP 3.8 knows (THIN_PRISM_FISHEYE); later versions added more."""


def convert_database_38(src: Path | str, dst: Path | str) -> dict[str, int]:
    """Copy the COLMAP database ``src`` (any schema pycolmap writes) to ``dst`` in COLMAP 3.8's schema.

    ``dst`` is written through a temporary file and renamed. Returns the row count of each table.
    """
    from recon3d.core.atomic import atomic_path

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise UserError(f"{src}: no feature database; run `recon3d sfm PHOTOS -o {src.parent}` first")
    counts: dict[str, int] = {}
    with atomic_path(dst) as tmp:
        Path(tmp).unlink(missing_ok=True)
        out = sqlite3.connect(str(tmp))
        try:
            out.executescript(SCHEMA_38)
            out.execute("ATTACH DATABASE ? AS src", (str(src),))
            tables = {row[0] for row in out.execute("SELECT name FROM src.sqlite_master WHERE type='table'")}
            missing = {"cameras", "images", "keypoints"} - tables
            if missing:
                raise UserError(f"{src}: not a COLMAP database (no table {', '.join(sorted(missing))})")
            bad = out.execute("SELECT camera_id, model FROM src.cameras WHERE model > ?", (MAX_MODEL_38,)).fetchall()
            if bad:
                raise UserError(f"{src}: camera {bad[0][0]} uses camera model {bad[0][1]}, which COLMAP 3.8 does not "
                                "know; reconstruct with --camera-model OPENCV (or another of 3.8's models)")
            out.execute("INSERT INTO cameras SELECT camera_id, model, width, height, params, prior_focal_length "
                        "FROM src.cameras")
            out.execute("INSERT INTO images (image_id, name, camera_id) SELECT image_id, name, camera_id FROM src.images")
            out.execute("INSERT INTO keypoints SELECT image_id, rows, cols, data FROM src.keypoints")
            for table, cols in (("descriptors", "image_id, rows, cols, data"), ("matches", "pair_id, rows, cols, data"),
                                ("two_view_geometries", "pair_id, rows, cols, data, config, F, E, H, qvec, tvec")):
                if table in tables:
                    have = {row[1] for row in out.execute(f"PRAGMA src.table_info({table})")}
                    pick = ", ".join(c if c in have else "NULL" for c in cols.split(", "))
                    out.execute(f"INSERT INTO {table} SELECT {pick} FROM src.{table}")
            out.commit()
            for table in ("cameras", "images", "keypoints", "descriptors", "matches", "two_view_geometries"):
                counts[table] = int(out.execute(f"SELECT COUNT(*) FROM main.{table}").fetchone()[0])
            out.execute("DETACH DATABASE src")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{src}: cannot read it as a COLMAP database ({exc})") from None
        finally:
            out.close()
    return counts


def export_colmap38_db(workspace, output: Path | None = None) -> Path:
    """``WS/database.db`` converted for COLMAP 3.8 (default ``WS/database-colmap-3.8.db``); ``workspace`` is a
    :class:`recon3d.core.workspace.Workspace`."""
    output = Path(output) if output is not None else workspace.root / "database-colmap-3.8.db"
    if output.is_dir():
        output = output / "database.db"
    if output.resolve() == workspace.database.resolve():
        raise UserError(f"{output}: is the workspace's own database; give another -o path")
    convert_database_38(workspace.database, output)
    return output
