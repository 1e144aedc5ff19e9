"""`recon3d run`: scene -> SfM -> evaluation -> training, with skipping on rerun."""

from __future__ import annotations

import json
import shutil

import pytest

from recon3d.cli import main

FAST = ["--max-image-size", "400", "--max-features", "2048"]


@pytest.fixture(scope="module")
def rendered_ws(orbit_scene, tmp_path_factory):
    """A workspace where the default scene is already rendered (a copy of the test cache)."""
    root = tmp_path_factory.mktemp("run") / "ws"
    shutil.copytree(orbit_scene, root)
    return root


@pytest.fixture(scope="module")
def first_run(rendered_ws):
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["run", "-o", str(rendered_ws), "--train", "none", *FAST])
    return rc, buf.getvalue()


def test_run_reconstructs_and_evaluates_the_default_scene(rendered_ws, first_run):
    rc, out = first_run
    assert rc == 0, out
    assert "scene: `orbit` already rendered" in out
    assert "sfm: 24/24 photos registered" in out
    assert "ground truth" in out and "relative-pose AUC" in out  # GT picked up from ws/gt automatically
    assert "train: skipped (--train none)" in out
    assert f"recon3d view {rendered_ws}" in out
    report = json.loads((rendered_ws / "reports" / "eval.json").read_text())
    assert report["gt"]["rotation_deg"]["median"] < 0.2
    assert (rendered_ws / "reports" / "sfm.md").is_file()


def test_rerun_skips_finished_stages(rendered_ws, first_run, capsys):
    # how long a rerun takes is measured by scripts/bench_run.py (benchmarks/results/run.md), not here
    assert main(["run", "-o", str(rendered_ws), "--train", "none", *FAST]) == 0
    out = capsys.readouterr().out
    assert "sfm: already done" in out and "eval: already done" in out


def test_missing_training_backend_is_skipped_with_one_line(rendered_ws, first_run, capsys, monkeypatch):
    from recon3d.core import registry

    ghost = registry.Method("ghost", "splat", "a backend that is not installed",
                            "recon3d.no_such_backend:config", "recon3d.no_such_backend:train")
    monkeypatch.setitem(registry.METHODS, "ghost", ghost)
    assert main(["run", "-o", str(rendered_ws), "--train", "ghost", *FAST]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("train:")]
    assert len(lines) == 1 and "skipped" in lines[0] and "not available" in lines[0]


@pytest.mark.realdata
def test_run_on_photos_without_ground_truth(shared_data, tmp_path, capsys):
    """Six neighbouring temple views: a short arc seen by a long lens, where estimating radial
    distortion degenerates (k < -1) and splits the model; the retry with distortion fixed
    registers all six."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(20, 26):
        shutil.copy(shared_data / "temple_ring" / "images" / f"templeR{i:04d}.png", photos)
    assert main(["run", str(photos), "-o", str(tmp_path / "ws"), "--train", "none"]) == 0
    out = capsys.readouterr().out
    assert "sfm: 6/6 photos registered" in out and "ground truth" not in out
    report = json.loads((tmp_path / "ws" / "reports" / "eval.json").read_text())
    assert "gt" not in report and report["reprojection_px"]["mean"] < 0.5
    sfm = json.loads((tmp_path / "ws" / "reports" / "sfm.json").read_text())
    assert sfm["notes"]["distortion_retry"]["kept"] == "without distortion"


def test_bad_options_fail_before_any_work(tmp_path, capsys):
    assert main(["run", "-o", str(tmp_path / "ws"), "--fixed-intrinsics"]) == 2
    assert "--fixed-intrinsics needs --camera" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


def test_python_api_runs_the_same_pipeline(rendered_ws, first_run):
    import recon3d
    from recon3d.cli import build_parser
    from recon3d.cli.sfm import config_from_args

    config = config_from_args(build_parser().parse_args(["run", "-o", str(rendered_ws), *FAST]))
    shown = []
    result = recon3d.run(None, rendered_ws, sfm=config, train="none", on_summary=shown.append)
    assert [result.stages[k].skipped for k in ("scene", "sfm", "eval")] == [True, True, True]
    assert "train" not in result.stages and result.method is None
    assert result.summary == "\n".join(shown) and "eval: already done" in result.summary
    assert result.stages["eval"].data == json.loads((rendered_ws / "reports" / "eval.json").read_text())


def test_import_recon3d_is_light():
    import subprocess
    import sys

    code = ("import sys, recon3d; recon3d.Workspace; recon3d.run; recon3d.evaluate_workspace; "
            "from recon3d.cli import build_parser; build_parser(); "
            "assert not {'torch', 'pycolmap'} & set(sys.modules), sorted({'torch', 'pycolmap'} & set(sys.modules))")
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
