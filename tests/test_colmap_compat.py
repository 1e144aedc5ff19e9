"""A feature database made by another tool is reused (`recon3d sfm --reuse-database`) when its images are
the photos, refused with one line when not; `recon3d export --format colmap-3.8-db` writes one that
Debian's COLMAP 3.8 reads (checked with /usr/bin/colmap when it is installed)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import cv2
import pytest

from recon3d.cli import main
from recon3d.core.workspace import Workspace
from recon3d.sfm.pipeline import run_sfm

COLMAP = Path("/usr/bin/colmap")
NAMES = [f"view_{i:03d}.png" for i in range(6)]  # neighbouring views of the orbit: a quick reconstruction


def _count(db: Path, table: str, where: str = "") -> int:
    con = sqlite3.connect(str(db))
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {table} {where}").fetchone()[0])
    finally:
        con.close()


@pytest.fixture(scope="module")
def photos(orbit_scene, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos") / "photos"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(orbit_scene / "images" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def foreign(photos, tmp_path_factory):
    """A workspace whose database.db pycolmap made directly (without upsampling: fewer keypoints than
    recon3d's extraction),
    then `run_sfm(..., reuse_database=True)`."""
    import pycolmap

    pycolmap.logging.minloglevel = 2
    ws = Workspace(tmp_path_factory.mktemp("foreign") / "ws")
    ws.root.mkdir()
    options = pycolmap.FeatureExtractionOptions()
    options.sift.first_octave = 0  # recon3d upsamples (-1): its own extraction would find more keypoints
    options.num_threads = 1
    pycolmap.extract_features(ws.database, photos, camera_mode=pycolmap.CameraMode.SINGLE,
                              extraction_options=options, device=pycolmap.Device.cpu)
    keypoints = _count(ws.database, "keypoints"), sum_keypoints(ws.database)
    result = run_sfm(ws, photos, reuse_database=True)
    return ws, result, keypoints


def sum_keypoints(db: Path) -> int:
    con = sqlite3.connect(str(db))
    try:
        return int(con.execute("SELECT SUM(rows) FROM keypoints").fetchone()[0])
    finally:
        con.close()


def test_reuse_database_keeps_the_foreign_features(foreign):
    ws, result, (images, keypoints) = foreign
    assert images == len(NAMES)
    feat = result.report["features"]
    assert feat["extracted"] == 0 and feat["reused_database"] == {"reused": len(NAMES), "keypoints": keypoints,
                                                                  "missing": 0}
    assert sum_keypoints(ws.database) == keypoints  # nothing extracted again
    assert f"reused {len(NAMES)} photos' features" in result.summary
    assert result.report["registered"] == len(NAMES)
    assert not (ws.root / "database.db.old").exists()
    assert not (ws.root / "database.db.orig").exists()  # already pycolmap 4's schema: not upgraded, no copy
    # a rerun without the flag: the database is recon3d's now, the finished stage is skipped
    assert run_sfm(ws, ws.images).skipped


def test_reuse_database_refuses_other_photos(foreign, photos, tmp_path, capsys):
    ws, _, _ = foreign
    other = tmp_path / "other"  # other names
    other.mkdir()
    for k, name in enumerate(NAMES):
        shutil.copy(photos / name, other / f"img{k}.png")
    small = tmp_path / "small"  # the same names, another size
    small.mkdir()
    for name in NAMES:
        cv2.imwrite(str(small / name), cv2.resize(cv2.imread(str(photos / name)), (320, 240)))
    for folder, why in ((other, "not among the photos"), (small, "is 640x480 there but the photo is 320x240")):
        target = tmp_path / f"ws_{folder.name}"
        target.mkdir()
        shutil.copy(ws.database, target / "database.db")
        assert main(["sfm", str(folder), "-o", str(target), "--reuse-database"]) == 2
        err = capsys.readouterr().err
        assert why in err and "--reuse-database" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (target / "sparse").exists()


def test_colmap38_db_export_is_read_by_colmap_38(foreign, photos, tmp_path):
    """The exported database reads in COLMAP 3.8 (database_merger reads every table), pycolmap 4's own does
    not; reused in a new workspace it is upgraded by pycolmap, the untouched file kept as database.db.orig."""
    ws, _, (_, keypoints) = foreign
    out = tmp_path / "db38.db"
    assert main(["export", str(ws.root), "--format", "colmap-3.8-db", "-o", str(out)]) == 0
    con = sqlite3.connect(str(out))
    assert [r[1] for r in con.execute("PRAGMA table_info(descriptors)")] == ["image_id", "rows", "cols", "data"]
    assert "frames" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    tables = ("cameras", "images", "keypoints", "descriptors", "matches", "two_view_geometries")
    assert {t: _count(out, t) for t in tables} == {t: _count(ws.database, t) for t in tables}
    if COLMAP.is_file():
        empty, merged = tmp_path / "empty.db", tmp_path / "merged.db"
        run = lambda *a: subprocess.run([str(COLMAP), *a], capture_output=True, text=True, timeout=120)  # noqa: E731
        assert run("database_creator", "--database_path", str(empty)).returncode == 0
        done = run("database_merger", "--database_path1", str(out), "--database_path2", str(empty),
                   "--merged_database_path", str(merged))
        assert done.returncode == 0, done.stderr[-500:]
        # COLMAP 3.8 reads the pairs with matches (rows > 0) of both tables
        pairs = ("matches", "two_view_geometries")
        assert {t: _count(merged, t) for t in tables} == {t: _count(out, t, "WHERE rows > 0" if t in pairs else "")
                                                          for t in tables}
        assert sum_keypoints(merged) == keypoints
        refused = run("database_merger", "--database_path1", str(ws.database), "--database_path2", str(empty),
                      "--merged_database_path", str(tmp_path / "merged4.db"))
        assert refused.returncode != 0  # pycolmap 4's schema: "SQL logic error"
        # and COLMAP 3.8 reads the binary model of sparse/0
        analyzed = run("model_analyzer", "--path", str(ws.model))
        assert analyzed.returncode == 0 and f"Registered images: {len(NAMES)}" in analyzed.stdout + analyzed.stderr

    # a 3.8-schema database reused in a new workspace
    again = Workspace(tmp_path / "ws38")
    again.root.mkdir()
    shutil.copy(out, again.database)
    result = run_sfm(again, photos, reuse_database=True)
    assert result.report["features"]["extracted"] == 0 and sum_keypoints(again.database) == keypoints
    assert (again.root / "database.db.orig").read_bytes() == out.read_bytes()
