"""The method registry, camera paths, and `recon3d render` with the splat backend (CPU).

One tiny splat-cpu run (module fixture: 80 x 60 images, 30 steps, every view a training view) is
rendered along short paths; a training camera must match the backend's own render of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from recon3d.cli import main
from recon3d.core import registry
from recon3d.core.errors import UserError
from recon3d.render.paths import interp_path, orbit_path, scaled_intrinsics

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- registry
def test_listing_methods_imports_no_backend():
    code = ("import sys; from recon3d.core import registry as r; import recon3d.cli as c; c.build_parser(); "
            "import recon3d.render.paths, recon3d.render.video, recon3d.cli.render, recon3d.cli.export; "
            "names = list(r.METHODS); assert all(r.available(n) for n in names), names; "
            "assert r.renderable() == names; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.count('.') >= 2 "
            "and m.startswith(('recon3d.splat.', 'recon3d.nerf.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_method_names_a_backend_config_stage_renderer_and_exporters():
    assert set(registry.METHODS) >= {"splat", "splat-mcmc", "splat-fast", "splat-cpu", "nerf", "nerf-fast"}
    for name, m in registry.METHODS.items():
        assert m.backend in ("splat", "nerf") and m.output.startswith(m.backend + "/")
        assert registry.make_config(name).device == "auto"
        assert callable(registry.stage_function(name)) and callable(registry.renderer(name))
        assert all(registry.get_exporter(f).backend == m.backend for f in m.exporters)
    assert registry.renderer("splat-mcmc") is registry.renderer("splat")
    assert registry.METHODS["splat"].exporters == ("splat-ply", "ply-compressed", "splat")
    assert set(registry.EXPORTERS) == {"splat-ply", "ply-compressed", "splat", "colmap-3.8-db", "nerfstudio"}
    assert callable(registry.exporter("nerfstudio")) and registry.get_exporter("nerfstudio").backend is None
    assert registry.PRESETS is registry.METHODS and registry.Preset is registry.Method
    assert registry.backends() == ["splat", "nerf"] and registry.backend_renderer("nerf") == "nerf"


def test_unknown_and_missing_methods(monkeypatch):
    with pytest.raises(UserError, match="unknown method 'nope'"):
        registry.available("nope")
    ghost = registry.Method("ghost", "splat", "not installed", "recon3d.no_such_backend:config",
                            "recon3d.no_such_backend:train", renderer="recon3d.no_such_backend:load_renderer")
    monkeypatch.setitem(registry.METHODS, "ghost", ghost)
    assert not registry.available("ghost")
    with pytest.raises(UserError, match="not available"):
        registry.renderer("ghost")
    needs = registry.Method("needs", "splat", "", "recon3d.splat.config:preset_splat", "recon3d.splat.train:train",
                            requires=("no_such_module_anywhere",))
    monkeypatch.setitem(registry.METHODS, "needs", needs)
    assert not registry.available("needs")
    with pytest.raises(UserError, match="has no renderer"):
        registry.renderer("needs")
    with pytest.raises(UserError, match="unknown export format"):
        registry.exporter("obj")


# -------------------------------------------------------------------------------------- paths
def _ring(n=12, radius=3.0, height=1.0):
    from recon3d import geometry

    ang = 2 * np.pi * np.arange(n) / n
    eyes = np.stack([radius * np.cos(ang), radius * np.sin(ang), np.full(n, height)], 1)
    return geometry.cam_from_world_look_at(eyes, np.zeros_like(eyes), np.array([0.0, 0.0, 1.0]))


def test_orbit_and_interp_paths():
    from recon3d import geometry

    poses = _ring()
    path = orbit_path(poses, np.zeros(3), 8)
    C = geometry.camera_centers(path)
    assert path.shape == (8, 3, 4)
    np.testing.assert_allclose(np.linalg.norm(C[:, :2], axis=1), 3.0, atol=1e-9)
    np.testing.assert_allclose(C[:, 2], 1.0, atol=1e-9)
    np.testing.assert_allclose(path[:, 2, :3], -C / np.linalg.norm(C, axis=1, keepdims=True), atol=1e-9)
    inter = interp_path(poses[:3], 5)
    np.testing.assert_allclose(inter[[0, 2, 4]], poses[:3], atol=1e-9)
    K, w, h = scaled_intrinsics(np.array([[100.0, 0, 40], [0, 100, 30], [0, 0, 1]]), 80, 60, 4)
    assert (w, h) == (20, 15) and K[0, 0] == 25 and K[1, 2] == 7.5
    with pytest.raises(UserError):
        scaled_intrinsics(K, w, h, 0)


# ------------------------------------------------------------------------------ splat renders
TINY = ["--method", "splat-cpu", "--device", "cpu", "--steps", "30"] + [x for s in [
    "max_image_side=80", "test_every=0", "sh_degree_interval=10", "refine_start=10", "refine_every=10",
    "refine_stop=25", "sky_points=200", "report_views=1"] for x in ("--set", s)]


@pytest.fixture(scope="module")
def trained(orbit_scene, tmp_path_factory):
    """The orbit scene (80 x 60) after 30 splat-cpu steps on every view."""
    from recon3d.scenes import scene_workspace

    ws = scene_workspace(orbit_scene, tmp_path_factory.mktemp("render") / "orbit")
    assert main(["train", str(ws.root), *TINY]) == 0
    return ws


def _video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def test_render_splat_orbit_video(trained, tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    rc = main(["render", str(trained.root), "--method", "splat", "--path", "orbit", "--frames", "3",
               "--downscale", "8", "--device", "cpu", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "3 frames, 80x60" in capsys.readouterr().out
    if not out.is_file():  # no MP4 encoder here: the frames went to a folder instead
        pytest.skip("OpenCV cannot encode MP4 on this machine")
    frames = _video_frames(out)
    assert len(frames) == 3 and frames[0].shape == (60, 80, 3)
    for f in frames:
        assert f.std() > 10  # the scene, not a flat background
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 1  # the camera moved


def test_render_splat_training_camera_matches_the_backend(trained, tmp_path, capsys):
    import torch

    from recon3d.io.dataset import load_scene
    from recon3d.io.gaussians_ply import read_splat_ply
    from recon3d.splat.evaluate import render_view
    from recon3d.splat.model import params_from_splats

    # interp starts at the first training camera (by name), at the training resolution
    rc = main(["render", str(trained.root), "--method", "splat-cpu", "--path", "interp", "--frames", "2",
               "--downscale", "8", "--device", "cpu", "-o", str(tmp_path / "frames")])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_0000.png", "frame_0001.png"]
    first = cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / "frame_0000.png")), cv2.COLOR_BGR2RGB)
    view = load_scene(trained, downscale=8, test_every=0).train[0]
    assert view.name == "view_000.png" and first.shape == view.image.shape
    assert first.std() > 10
    # the backend's own render: the side-by-side picture the training run wrote (render | photo) ...
    saved = cv2.cvtColor(cv2.imread(str(trained.reports / "splat_train_view_000.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(first.astype(int) - saved[:, :80].astype(int)).max() <= 1
    # ... and its evaluation render of the reloaded PLY with the SH degree the run reached (1)
    render = registry.renderer("splat")(trained, "cpu")
    mine = render(view.cam_from_world, view.camera.K, view.camera.width, view.camera.height)
    params = params_from_splats(read_splat_ply(trained.splat / "point_cloud.ply"), "cpu")
    ref = render_view(params, view, 1, torch.zeros(3), "torch", 16)
    np.testing.assert_array_equal(mine, (ref * 255 + 0.5).byte().numpy())
    assert np.abs(mine.astype(int) - first.astype(int)).max() <= 1  # the path's pose went through a quaternion
    # the photo agrees roughly (30 steps: a blurry but recognisable scene)
    assert np.abs(mine.astype(float) / 255 - view.image).mean() < 0.2


def test_viewer_finds_the_splat_renderer(trained, orbit_ws):
    from recon3d.viewer.panels import find_loader

    load, method, note = find_loader(trained)
    assert method == "splat" and note == "" and callable(load)
    img = load(trained)(np.hstack([np.eye(3), [[0], [0], [6.0]]]), np.array([[30.0, 0, 16], [0, 30, 12], [0, 0, 1]]),
                        32, 24)
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    load, method, note = find_loader(orbit_ws)
    assert load is None and "No NeRF or splats" in note


def test_render_without_splats_is_one_line(orbit_ws, capsys):
    rc = main(["render", str(orbit_ws.root), "--method", "splat", "--frames", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "no trained splats" in err and len(err.strip().splitlines()) == 1
