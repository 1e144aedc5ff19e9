"""Nothing wrong reported as success: odd photo names, linked photos, corrupted or unwritable outputs,
runs killed mid-way, ground truth without one valid pixel.

Small sets: eight orbit views at 320x240 with few features, so each run takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from recon3d.core.workspace import Workspace
from recon3d.sfm.config import ExtractionConfig, SfmConfig
from recon3d.sfm.pipeline import run_sfm

ODD_NAMES = ["view 000.png", "vue_été_001.png", "it's \"2\".png", "-dash 003.png"]


def _config() -> SfmConfig:
    return SfmConfig(extraction=ExtractionConfig(max_image_size=320, max_num_features=1024))


@pytest.fixture(scope="module")
def small_orbit(orbit_scene, tmp_path_factory) -> Path:
    """Eight orbit views downscaled to 320x240, plain names."""
    out = tmp_path_factory.mktemp("small") / "photos"
    out.mkdir()
    for i in range(8):
        Image.open(orbit_scene / "images" / f"view_{i:03d}.png").resize((320, 240), Image.LANCZOS) \
            .save(out / f"view_{i:03d}.png")
    return out


def _renamed(src: Path, dest: Path, names: list[str]) -> Path:
    dest.mkdir()
    for k, p in enumerate(sorted(src.iterdir())):
        shutil.copy(p, dest / (names[k] if k < len(names) else p.name))
    return dest


@pytest.fixture(scope="module")
def plain_run(small_orbit, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("plain") / "ws")
    return ws, run_sfm(ws, small_orbit, _config())


def test_any_file_name_registers(plain_run, small_orbit, tmp_path):
    """Spaces, unicode, quotes and a leading dash: the same result as the plain names."""
    import pycolmap

    _, plain = plain_run
    assert plain.report["registered"] == 8
    photos = _renamed(small_orbit, tmp_path / "photos", ODD_NAMES)
    ws = Workspace(tmp_path / "ws")
    result = run_sfm(ws, photos, _config())
    assert result.report["registered"] == 8 and result.report["unregistered"] == []
    assert result.report["matching"]["verified_pairs"] == plain.report["matching"]["verified_pairs"]
    names = {im.name for im in pycolmap.Reconstruction(str(ws.model)).images.values()}
    assert names == {p.name for p in photos.iterdir()}
    db = pycolmap.Database.open(ws.database)  # no alias is left in the database
    try:
        assert {im.name for im in db.read_all_images()} == names
    finally:
        db.close()


def test_aliases_left_by_a_kill_are_undone(tmp_path):
    """The aliases used while matching carry the name, so a run killed mid-matching loses nothing."""
    import pycolmap

    from recon3d.sfm.extract import (
        alias_image_names,
        restore_image_names,
        text_safe_name,
    )

    db = pycolmap.Database.open(tmp_path / "x.db")
    try:
        cid = db.write_camera(pycolmap.Camera(model="PINHOLE", width=10, height=10, params=[1, 1, 5, 5]))
        for name in ODD_NAMES + ["plain.png", "#hash.png", " lead.png"]:
            db.write_image(pycolmap.Image(name=name, camera_id=cid))
        alias = alias_image_names(db)
        assert all(text_safe_name(a) for a in alias.values())
        assert alias["plain.png"] == "plain.png" and alias["view 000.png"] != "view 000.png"
        assert restore_image_names(db) == 5  # unicode alone needs no alias
        assert sorted(im.name for im in db.read_all_images()) == sorted(alias)
    finally:
        db.close()


def test_import_nerfstudio_keeps_spaced_names(orbit_ws, tmp_path):
    """The text model the import goes through never sees the photos' names."""
    from recon3d.io.colmap import read_model
    from recon3d.io.nerfstudio import export_nerfstudio, import_nerfstudio

    out = export_nerfstudio(orbit_ws, tmp_path / "ns")
    meta_path = out / "transforms.json" if out.is_dir() else out
    meta = json.loads(meta_path.read_text())
    frame = meta["frames"][0]
    old = meta_path.parent / frame["file_path"]
    new = old.with_name("a photo é.png")
    os.replace(old, new)
    frame["file_path"] = str(Path(frame["file_path"]).with_name(new.name))
    meta_path.write_text(json.dumps(meta))
    ws = import_nerfstudio(meta_path, tmp_path / "ws2")
    names = set(read_model(ws.model).by_name())
    assert "a photo é.png" in names and len(names) == 24


def test_symlinked_photos_are_read_through(small_orbit, tmp_path):
    """Relative links (git-annex, DVC) and absolute ones register; a dangling one is named, not dropped."""
    store = tmp_path / "store"
    shutil.copytree(small_orbit, store)
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, p in enumerate(sorted(store.iterdir())):
        target = os.path.relpath(p, photos) if k % 2 == 0 else str(p)
        (photos / p.name).symlink_to(target)
    (photos / "gone.png").symlink_to("../store/missing.png")
    ws = Workspace(tmp_path / "ws")
    logged: list[str] = []
    result = run_sfm(ws, photos, _config(), log=logged.append)
    assert result.report["registered"] == 8 and result.report["unregistered"] == []
    assert [line for line in logged if "gone.png" in line and "missing file" in line]
    for p in ws.images.iterdir():  # the photos themselves, not links that dangle from ws/images
        assert not p.is_symlink() and p.is_file()


def test_dangling_link_among_calibration_photos_is_named(tmp_path):
    from recon3d.core.errors import UserError
    from recon3d.io.images import list_images

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    (tmp_path / "b.png").symlink_to("nowhere/b.png")
    with pytest.raises(UserError, match="b.png: a link to a missing file"):
        list_images(tmp_path)
    found: list[Path] = []
    assert list_images(tmp_path, found) == [tmp_path / "a.png"] and found == [tmp_path / "b.png"]


# ------------------------------------------------------------------- broken outputs are not "finished"
@pytest.mark.parametrize("broken", ["images.bin", "points3D.bin"])
def test_rerun_on_a_corrupted_model_maps_again(plain_run, tmp_path, capsys, broken):
    """A truncated model file: eval refuses it naming the fix, and the sfm rerun maps again."""
    from recon3d.cli import main

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(plain_run[0].root, ws.root)
    f = ws.model / broken
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    capsys.readouterr()
    assert main(["eval", str(ws.root)]) == 2
    err = capsys.readouterr().err
    assert "could not read this model" in err and f"recon3d sfm {ws.images} -o {ws.root} --overwrite" in err
    assert main(["sfm", str(ws.images), "-o", str(ws.root), "--set", "extraction.max_image_size=320",
                 "--set", "extraction.max_num_features=1024"]) == 0
    out = capsys.readouterr().out
    assert "already reconstructed" not in out and "8/8" in out
    assert main(["eval", str(ws.root)]) == 0


def test_truncated_splat_or_nerf_output_is_not_finished(tmp_path):
    import numpy as np

    from recon3d.io.gaussians_ply import Splats, write_splat_ply
    from recon3d.nerf.train import model_file_loads
    from recon3d.splat.train import ply_loads

    ply = tmp_path / "splat" / "point_cloud.ply"
    ply.parent.mkdir()
    n = 5
    write_splat_ply(ply, Splats(means=np.zeros((n, 3), np.float32), scales=np.zeros((n, 3), np.float32),
                                quats=np.tile([1, 0, 0, 0], (n, 1)).astype(np.float32),
                                opacities=np.zeros(n, np.float32), sh0=np.zeros((n, 1, 3), np.float32),
                                shN=np.zeros((n, 0, 3), np.float32)))
    assert ply_loads(ply)
    ply.write_bytes(ply.read_bytes()[:-20])
    assert not ply_loads(ply)
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"PK\x03\x04 truncated")
    assert not model_file_loads(pt) and not model_file_loads(tmp_path / "missing.pt")


# ------------------------------------------------------------------- killed runs, unwritable outputs
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rerun_removes_scratch_of_killed_mapper(plain_run, tmp_path):
    """A kill -9 while mapping leaves .mapper.<pid>.*; the next run removes it (a live owner's stays)."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(plain_run[0].root, ws.root)
    stale = ws.root / f".mapper.{_dead_pid()}.abc123"
    stale.mkdir()
    live = ws.root / ".mapper.1.def456"  # pid 1 always runs
    live.mkdir()
    result = run_sfm(ws, ws.images, _config(), overwrite=True)
    assert result.report["registered"] == 8
    assert not stale.exists() and live.exists()
    assert not [p for p in ws.root.iterdir() if p.name.startswith(f".mapper.{os.getpid()}.")]


def test_unwritable_sparse_is_one_line(plain_run, tmp_path, capsys, monkeypatch):
    """An immutable sparse/ with --overwrite: exit 2, one line naming the folder and the fix.

    Tests run as root, where permission bits do not stop a rename, so the refusal is simulated."""
    import errno

    from recon3d.cli import main

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(plain_run[0].root, ws.root)
    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if Path(src) == ws.sparse:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(src), str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    capsys.readouterr()
    rc = main(["sfm", str(ws.images), "-o", str(ws.root), "--overwrite", "--set", "extraction.max_image_size=320",
               "--set", "extraction.max_num_features=1024"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "internal error" not in err and str(ws.sparse) in err and "chattr -i" in err
    assert (ws.model / "cameras.bin").is_file()  # the old model is still there


def test_os_errors_users_can_fix_are_one_line():
    import errno

    from recon3d.cli import os_error_line

    line = os_error_line(PermissionError(errno.EACCES, "Permission denied", "/x/ws/sparse"))
    assert line.startswith("/x/ws/sparse: Permission denied; ") and "chmod" in line
    assert "disk is full" in os_error_line(OSError(errno.ENOSPC, "No space left on device", "/x/f"))
    assert os_error_line(OSError(errno.EBADF, "Bad file descriptor")) is None


def test_eval_stereo_refuses_ground_truth_without_a_valid_pixel(tmp_path, capsys):
    import numpy as np

    from recon3d.cli import main

    np.save(tmp_path / "est.npy", np.full((20, 30), 5.0, np.float32))
    gt = np.zeros((20, 30), np.float32)
    gt[:, :10] = np.inf
    gt[0, 0] = np.nan
    np.save(tmp_path / "gt.npy", gt)
    assert main(["eval-stereo", str(tmp_path / "est.npy"), str(tmp_path / "gt.npy")]) == 2
    captured = capsys.readouterr()
    assert "not one pixel" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "nan" not in captured.out.lower()


def test_atomic_writers_remove_temps_of_killed_runs(tmp_path):
    from recon3d.core.atomic import atomic_dir, atomic_write_text

    dead = _dead_pid()
    stale_dir = tmp_path / f".sparse.{dead}.k3j4.tmp"
    stale_dir.mkdir()
    stale_file = tmp_path / f".report.{dead}.x1y2.tmp.json"
    stale_file.write_text("{")
    foreign = tmp_path / ".sparse.notapid.tmp"  # not ours to judge: kept
    foreign.mkdir()
    with atomic_dir(tmp_path / "sparse") as tmp:
        assert tmp.name.startswith(f".sparse.{os.getpid()}.")
        (tmp / "x").write_text("1")
    atomic_write_text(tmp_path / "report.json", "{}")
    assert not stale_dir.exists() and not stale_file.exists() and foreign.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sparse.notapid.tmp", "report.json", "sparse"]


def test_eval_stereo_refuses_mesh_ground_truth_without_a_valid_pixel(orbit_ws, tmp_path, capsys):
    import numpy as np

    from recon3d.cli import main
    from recon3d.stereo.fusion import mesh_ply_bytes

    gt = tmp_path / "gt"
    shutil.copytree(orbit_ws.gt, gt)
    for f in (gt / "depth").glob("*.npy"):
        np.save(f, np.full_like(np.load(f), np.inf))
    (tmp_path / "mesh.ply").write_bytes(mesh_ply_bytes(np.eye(3), np.array([[0, 1, 2]])))
    assert main(["eval-stereo", str(tmp_path / "mesh.ply"), str(gt)]) == 2
    captured = capsys.readouterr()
    assert "not one pixel" in captured.err and "nan" not in captured.out.lower()
