"""Workspace layout, atomic writes and stage bookkeeping."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from recon3d.core.atomic import atomic_dir, atomic_write_text
from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.io.images import list_images


@dataclass
class Cfg:
    steps: int = 3
    """Steps."""


def test_layout(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert ws.model == tmp_path / "ws" / "sparse" / "0"
    assert ws.database.name == "database.db"
    assert ws.gt_model == tmp_path / "ws" / "gt" / "sparse" / "0"
    assert not ws.root.exists()
    ws.create()
    assert ws.root.is_dir() and not ws.has_model()


def test_require_model_messages(tmp_path):
    with pytest.raises(UserError, match="no such workspace"):
        Workspace(tmp_path / "missing").require_model()
    ws = Workspace(tmp_path / "ws").create()
    with pytest.raises(UserError, match="recon3d sfm"):
        ws.require_model()


def test_atomic_write_leaves_no_temp(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "b.txt", "hello")
    assert p.read_text() == "hello"
    assert sorted(x.name for x in p.parent.iterdir()) == ["b.txt"]


def test_atomic_dir_keeps_old_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "x.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "x.txt").write_text("half")
            raise RuntimeError("killed")
    assert (target / "x.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_dir(target) as tmp:
        (tmp / "y.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["y.txt"]


def test_stage_markers(tmp_path):
    ws = Workspace(tmp_path).create()
    assert not ws.is_done("sfm")
    ws.mark_done("sfm", Cfg(), {"model": ws.model})
    assert ws.is_done("sfm") and ws.is_done("sfm", Cfg())
    assert not ws.is_done("sfm", Cfg(steps=4))
    assert ws.stage_info("sfm")["outputs"]["model"].endswith("sparse/0")
    ws.clear_done("sfm")
    assert not ws.is_done("sfm")


def test_stage_context_skips_clears_and_marks(tmp_path):
    ws = Workspace(tmp_path).create()
    out = ws.root / "out.txt"
    with ws.stage("demo", Cfg()) as run:
        assert not run.skipped and run.previous is None
        out.write_text("x")
        run.outputs, run.info = {"out": out}, {"steps": 3}
    with ws.stage("demo", Cfg(), check=lambda o: o["out"].is_file()) as run:
        assert run.skipped and run.previous_outputs == {"out": out} and run.previous_info == {"steps": 3}
    with pytest.raises(RuntimeError):  # an error inside the block leaves no marker
        with ws.stage("demo", Cfg(steps=4)) as run:
            assert not run.skipped
            raise RuntimeError("killed")
    assert not ws.is_done("demo")


def test_finished_steps_rule(tmp_path):
    """Training stages: same settings and more steps train on; fewer steps or other settings: --overwrite."""
    from recon3d.core.workspace import finished_steps

    ws = Workspace(tmp_path).create()
    key = {"lr": 0.1}
    assert finished_steps(ws, "t", key, 10, ws.root) is None
    ws.mark_done("t", key, info={"steps": 10})
    assert finished_steps(ws, "t", key, 10, ws.root) == 10
    assert finished_steps(ws, "t", key, 20, ws.root) == 10
    with pytest.raises(UserError, match="more than the 5 asked for.*--overwrite"):
        finished_steps(ws, "t", key, 5, ws.root)
    with pytest.raises(UserError, match="other settings; pass --overwrite"):
        finished_steps(ws, "t", {"lr": 0.2}, 20, ws.root)


def test_save_config_writes_docs(tmp_path):
    ws = Workspace(tmp_path).create()
    path = ws.save_config(Cfg(steps=7), ws.splat)
    text = path.read_text()
    assert "# steps: Steps." in text and "steps: 7" in text


def test_list_images_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no images found"):
        list_images(tmp_path)
    (tmp_path / "b.JPG").write_bytes(b"")
    (tmp_path / "a.png").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]


def test_stale_temporaries_of_the_atomic_writers_are_removed_and_nothing_else(tmp_path):
    """What a kill -9 leaves mid-write (temporary files and folders, a folder moved aside) goes; photos,
    other hidden files and the temporaries of a live process stay."""
    import os
    import tempfile

    from recon3d.core.atomic import remove_stale_temporaries

    fd, tmp_file = tempfile.mkstemp(prefix=".sfm_track_length.", suffix=".tmp.png", dir=tmp_path)
    os.close(fd)
    tmp_dir = tempfile.mkdtemp(prefix=".0.", suffix=".tmp", dir=tmp_path)
    (tmp_path / ".sparse.old.123.456").mkdir()
    keep = [tmp_path / "view 001.png", tmp_path / ".hidden.png", tmp_path / "a.tmp",
            tmp_path / f".model.{os.getpid()}.abcd1234.tmp"]  # a live process's: still being written
    for p in keep:
        p.touch()
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([Path(tmp_file), Path(tmp_dir), tmp_path / ".sparse.old.123.456"])
    assert sorted(tmp_path.iterdir()) == sorted(keep)
