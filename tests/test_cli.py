"""The command line: help, scene rendering, and one-line errors with non-zero exits."""

import subprocess
import sys

import pycolmap
import pytest
import yaml

from recon3d.cli import COMMANDS


def recon3d(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "recon3d", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(res, *fragments):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    for f in fragments:
        assert f in lines[0]


def test_help_lists_every_subcommand():
    res = recon3d("--help")
    assert res.returncode == 0
    for name in ["scene", "calibrate", "sfm", "eval", "train", "export", "view", "stereo", "run"]:
        assert name in res.stdout
    assert len(COMMANDS) >= 9


@pytest.mark.parametrize("command", ["train", "render", "export"])
def test_method_commands_list_the_registry_without_importing_torch(command):
    from recon3d.core import registry

    code = ("import sys\nfrom recon3d.cli import main\ntry:\n    main([%r, '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch loaded' if 'torch' in sys.modules else 'no torch')" % command)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("no torch")
    names = list(registry.EXPORTERS) if command == "export" else list(registry.METHODS)
    for name in names:
        assert f"\n  {name} " in res.stdout, name


@pytest.fixture
def tiny_spec(tmp_path):
    from recon3d.core.config import to_dict
    from recon3d.scenes import load_spec

    spec = to_dict(load_spec("orbit"))
    spec.update(name="tiny", points=100)
    spec["camera"].update(width=96, height=72, fx=80.0, fy=80.0)
    spec["views"]["count"] = 3
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_scene_render_and_rerun_skips(tiny_spec, tmp_path):
    out = tmp_path / "ws"
    res = recon3d("scene", "render", tiny_spec, "-o", out, "--with-sparse")
    assert res.returncode == 0, res.stderr
    assert "rendered scene 'tiny'" in res.stdout
    assert len(list((out / "images").glob("*.png"))) == 3
    rec = pycolmap.Reconstruction(str(out / "gt" / "sparse" / "0"))
    assert rec.num_reg_images() == 3
    assert pycolmap.Reconstruction(str(out / "sparse" / "0")).num_points3D() == rec.num_points3D()
    assert "# seed:" in (out / "scene.yaml").read_text()
    again = recon3d("scene", "render", tiny_spec, "-o", out)
    assert again.returncode == 0 and "already rendered" in again.stdout


def test_scene_list():
    res = recon3d("scene", "list")
    assert res.returncode == 0 and "orbit" in res.stdout and "checkerboard" in res.stdout


def test_unknown_scene(tmp_path):
    assert_one_line_error(recon3d("scene", "render", "nope", "-o", tmp_path / "x"), "unknown scene 'nope'", "orbit")


def test_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera: {width: 640\n")
    assert_one_line_error(recon3d("scene", "render", bad, "-o", tmp_path / "x"), "invalid YAML")
    bad.write_text("camera: {widht: 640}\n")
    assert_one_line_error(recon3d("scene", "render", bad, "-o", tmp_path / "x"), "unknown key(s) widht")


def test_unwritable_output(tmp_path, tiny_spec):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert_one_line_error(recon3d("scene", "render", tiny_spec, "-o", blocker / "ws"), "cannot create the workspace")


def test_sfm_help_is_grouped_by_config_section():
    res = recon3d("sfm", "--help")
    assert res.returncode == 0
    for heading in ("camera and shared settings:", "extraction:", "matching:", "mapping:", "config files and overrides:"):
        assert heading in res.stdout
    assert res.stdout.count("  --abs-pose-min-inliers N") == 1 and "--mapping.init-min-num-inliers N" in res.stdout


def test_sfm_bad_config_is_one_line_exit_2(tmp_path):
    res = recon3d("sfm", tmp_path, "-o", tmp_path / "ws", "--set", "mapping.pycolmap_options.mapper.init_max_eror=6")
    assert res.returncode == 2
    assert_one_line_error(res, "mapping.pycolmap_options: unknown key 'mapper.init_max_eror'",
                          "did you mean 'mapper.init_max_error'", "valid keys:")
    res = recon3d("sfm", tmp_path, "-o", tmp_path / "ws", "--set", "mapping.min_matches=3")
    assert res.returncode == 2
    assert_one_line_error(res, "--set mapping.min_matches: unknown field 'min_matches' in mapping")
    (tmp_path / "other.yaml").write_text("steps: 3\n")
    res = recon3d("sfm", tmp_path, "-o", tmp_path / "ws", "--config", tmp_path / "other.yaml")
    assert res.returncode == 2
    assert_one_line_error(res, "other.yaml: unknown key(s) steps")
    assert not (tmp_path / "ws").exists()


def test_train_set_uses_the_shared_overrides(orbit_ws):
    res = recon3d("train", orbit_ws.root, "--method", "splat-cpu", "--set", "no_such_field=1")
    assert res.returncode == 2
    assert_one_line_error(res, "--set no_such_field: unknown field 'no_such_field'")


def test_undistort_takes_set_and_config(tmp_path):
    res = recon3d("undistort", tmp_path, "--camera", tmp_path / "c.json", "-o", tmp_path / "out", "--set", "alpha=2")
    assert res.returncode == 2
    assert_one_line_error(res, "--alpha 2.0: must lie between 0")
    (tmp_path / "u.yaml").write_text("interpolation: bicubic\n")
    res = recon3d("undistort", tmp_path, "--camera", tmp_path / "c.json", "-o", tmp_path / "out", "--config",
                  tmp_path / "u.yaml")
    assert res.returncode == 2
    assert_one_line_error(res, "--interpolation 'bicubic'")


@pytest.mark.parametrize("command", ["calibrate", "stereo"])
def test_config_driven_help_imports_neither_cv2_nor_torch(command):
    """calibrate and stereo build their flags from their config dataclasses, which import no OpenCV."""
    code = ("import sys\nfrom recon3d.cli import main\ntry:\n    main([%r, '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('cv2', 'torch') if m in sys.modules))" % command)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("[]")
    assert "config files and overrides:" in res.stdout and "--set KEY=VALUE" in res.stdout
    for flag in (["--board COLSxROWS", "--square M", "--charuco DICT", "--marker M", "--legacy-charuco",
                  "--model {pinhole,rational,fisheye}", "--min-views N"] if command == "calibrate" else
                 ["--max-disparity N", "--min-disparity N", "--block-size N", "--downscale X", "--no-refine",
                  "--mode {3way,sgbm,hh,hh4}", "--min-texture X", "--pairs {auto}", "--max-pairs N", "--scale X",
                  "--voxel-size X", "--weight-threshold X", "--sgbm.uniqueness N"]):
        assert res.stdout.count(flag) >= 1, flag


def test_calibrate_and_stereo_bad_values_exit_2(tmp_path):
    res = recon3d("calibrate", tmp_path, "--board", "9x6", "--set", "board.square=-1")
    assert res.returncode == 2
    assert_one_line_error(res, "config.board.square: -1.0 is out of range")
    res = recon3d("calibrate", tmp_path, "--board", "9x6", "--set", "nope")
    assert_one_line_error(res, "--set 'nope': expected KEY=VALUE")
    res = recon3d("calibrate", "--left", tmp_path, "--right", tmp_path, "--board", "9x6")
    assert_one_line_error(res, "needs --square")
    res = recon3d("calibrate", tmp_path, "--min-views", "2")  # argparse errors are one line too
    assert res.returncode == 2
    assert_one_line_error(res, "--min-views: 2 is out of range", "recon3d calibrate --help")
    res = recon3d("stereo", tmp_path, "--set", "scale=3")
    assert_one_line_error(res, "config.scale: 3.0 is out of range")
    res = recon3d("stereo", tmp_path, "--point-stride", "2")
    assert_one_line_error(res, "--point-stride applies to LEFT RIGHT pairs")
    res = recon3d("stereo", tmp_path, "--block-size", "0")
    assert res.returncode == 2
    assert_one_line_error(res, "--block-size: 0 is out of range")
