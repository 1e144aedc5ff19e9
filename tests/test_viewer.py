"""Viewer without a browser: the arrays it draws (against ground truth), the scene it builds on a real
viser server, the live monitor, the CLI's errors and what the HTTP server answers."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from recon3d import geometry
from recon3d.core.errors import UserError
from recon3d.core.monitor import TrainEvent
from recon3d.geometry.camera import Camera
from recon3d.io.colmap import read_model
from recon3d.viewer import colors as C
from recon3d.viewer import data as D


# ------------------------------------------------------------------------------------ arrays
def test_reprojection_error_is_zero_on_truth_and_equals_the_moved_distance(orbit_ws):
    model = read_model(orbit_ws.model)
    rep = D.reprojection_errors(model)
    observed = rep.point_track > 0
    assert observed.sum() > 0.9 * len(model.points)
    assert np.nanmax(rep.point_error) < 1e-6  # the true model reprojects exactly

    # Move one point; its error must be the mean over its observations of the projected shift.
    k = int(np.flatnonzero(observed)[0])
    pid = model.point_ids[k]
    moved = model.points[k] + np.array([0.05, -0.03, 0.02])
    model.points[k] = moved
    rep = D.reprojection_errors(model)
    expected = []
    for im in model.images.values():
        for j in np.flatnonzero(im.point3D_ids == pid):
            cam = Camera.from_colmap(*model.cameras[im.camera_id])
            px = cam.project(geometry.transform_points(im.cam_from_world, moved[None]))[0]
            expected.append(np.linalg.norm(px - im.points2D[j]))
    assert len(expected) == rep.point_track[k] > 1
    assert rep.point_error[k] == pytest.approx(np.mean(expected), rel=1e-9)
    others = np.delete(rep.point_error, k)
    assert np.nanmax(others) < 1e-6
    # Per-image means carry the same observations.
    assert sum(e * n for e, n in rep.image_error.values() if n) == pytest.approx(np.sum(expected), rel=1e-6)


def test_camera_views_and_scene_frame_match_ground_truth(orbit_ws):
    model = read_model(orbit_ws.model)
    views = D.camera_views(model, orbit_ws.images)
    assert len(views) == 24 and all(v.image_path is not None for v in views)
    v = views[3]
    R_wc = v.world_from_cam[:, :3]
    # The quaternion viser gets is the rotation of world_from_cam (viser's own convention).
    import viser.transforms as vtf

    assert np.allclose(vtf.SO3(v.wxyz).as_matrix(), R_wc, atol=1e-9)
    assert np.allclose(v.center, geometry.camera_centers(v.cam_from_world))
    assert v.fov_y == pytest.approx(2 * np.arctan(240 / 520.0))
    frame = D.scene_frame(views, model.points)
    assert frame.up == pytest.approx([0, 0, 1], abs=0.05)  # the orbit ring is level, world z up
    assert 5 < frame.radius < 12
    assert 1.0 < frame.camera_spacing < 2.5  # 24 cameras on a ring


def test_home_view_and_the_frustums_around_an_eye():
    line = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [10, 0, 0]])
    views = [D.CameraView(i, f"{i}.png", np.concatenate([np.eye(3), -c[:, None]], 1),
                          Camera(100, 100, np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]))) for i, c in enumerate(line)]
    assert D.home_view(views) == 2 and D.home_view([]) is None  # the medoid: the middle of the row
    eyes = np.array([[2.0, 0.1, 0], [9.5, 0, 0], [5.0, 0, 0]])  # through camera 2, near 4, between 3 and 4
    assert D.frustums_at(line, eyes, 0.6).tolist() == [2, 4]  # the eye at 5 looks through none
    assert D.frustums_at(line, eyes, 0.6, around=1.5).tolist() == [1, 2, 3, 4]  # with the neighbours
    assert D.frustums_at(line, eyes[:1], 0.05, around=1.5).tolist() == []  # 0.1 from camera 2: not through it
    assert D.frustums_at(line, np.zeros((0, 3)), 1.0).tolist() == []


def test_splat_arrays_follow_3dgs_and_viser_conventions():
    rng = np.random.default_rng(0)
    n = 50
    q = rng.normal(size=(n, 4))
    log_s = rng.uniform(-4, -1, size=(n, 3))
    logit = rng.normal(size=n)
    arr = D.splat_arrays(rng.normal(size=(n, 3)), log_s, q, logit, rng.uniform(size=(n, 3)), max_splats=n)
    import viser.transforms as vtf

    for i in (0, 17):
        R = vtf.SO3(q[i] / np.linalg.norm(q[i])).as_matrix()
        cov = R @ np.diag(np.exp(2 * log_s[i])) @ R.T
        assert np.allclose(arr.covariances[i], cov, rtol=1e-5, atol=1e-9)
    assert np.allclose(arr.opacities[:, 0], 1 / (1 + np.exp(-logit)), atol=1e-6)
    assert arr.opacities.shape == (n, 1) and arr.covariances.shape == (n, 3, 3)
    # Activated inputs (the training event's splats()) pass through.
    act = D.splat_arrays(np.zeros((n, 3)), np.exp(log_s), q, 1 / (1 + np.exp(-logit)), np.zeros((n, 3)), n)
    assert np.allclose(act.covariances, arr.covariances, rtol=1e-5, atol=1e-9)
    assert np.allclose(act.opacities, arr.opacities, atol=1e-6)
    sub = D.splat_arrays(np.zeros((n, 3)), log_s, q, logit, np.zeros((n, 3)), max_splats=20)
    assert len(sub.centers) == 20 and sub.total == n


def test_gt_cameras_are_aligned_by_a_similarity(orbit_ws):
    model = read_model(orbit_ws.model)
    views = D.camera_views(model)
    # A model in another frame: world' = s R world + t.
    s, R, t = 0.5, geometry.rotmat_from_quat_wxyz(np.array([0.9, 0.1, -0.3, 0.2])), np.array([1.0, -2.0, 0.5])
    moved = []
    for v in views:
        wfc = v.world_from_cam
        new_wfc = np.concatenate([R @ wfc[:, :3], (s * R @ wfc[:, 3] + t)[:, None]], axis=1)
        moved.append(D.CameraView(v.image_id, v.name, geometry.invert_rigid(new_wfc), v.camera))
    poses, note = D.align_gt_views(views, moved)
    assert "24 cameras" in note
    for p, m in zip(poses, moved):
        assert np.allclose(p, m.cam_from_world, atol=1e-9)


def test_colors_and_legend():
    err = np.array([0.0, 0.5, 1.0, np.nan, 10.0])
    legend = C.error_legend(err)
    assert legend.vmin == 0 and 1.0 < legend.vmax < 10.0
    rgb = C.colorize(err, legend.vmin, legend.vmax)
    assert rgb.shape == (5, 3) and rgb.dtype == np.uint8
    assert (rgb[3] == C.NO_VALUE_RGB).all()
    assert not (rgb[0] == rgb[2]).all()
    assert "1 points without observations" in legend.markdown()
    bar = C.colorbar_image(64, 8)
    assert bar.shape == (8, 64, 3) and (bar[0, 0] != bar[0, -1]).any()


def test_reports_markdown(tmp_path):
    assert "No reports yet" in D.reports_markdown(tmp_path)
    (tmp_path / "splat").mkdir()
    (tmp_path / "splat" / "metrics.json").write_text('{"psnr": 27.123456, "test": {"ssim": 0.9}, "curve": [1, 2, 3, 4, 5]}')
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "eval.json").write_text("not json")
    md = D.reports_markdown(tmp_path)
    assert "Splat training" in md and "| psnr | 27.12 |" in md and "| test.ssim | 0.9 |" in md
    assert "[5 items]" in md and "Evaluation" not in md


# ----------------------------------------------------------------------------- viser server
@pytest.fixture
def viewer_ws(splat_ws, orbit_ws, tmp_path):
    """orbit_ws plus splats, a report (``splat_ws``) and a small stereo cloud."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(np.random.default_rng(1).uniform(-1, 1, (500, 3)))
    orbit_ws.stereo.mkdir()
    o3d.io.write_point_cloud(str(orbit_ws.stereo / "fused.ply"), pcd)
    return orbit_ws


def test_viewer_app_builds_every_layer(viewer_ws):
    from recon3d.viewer.app import ViewerApp, ViewerConfig, WorkspaceContent
    from recon3d.viewer.server import start_server

    server = start_server("127.0.0.1", 0)
    try:
        content = WorkspaceContent.load(viewer_ws)
        app = ViewerApp(server, content, ViewerConfig(max_points=1000))
        rows = dict(app.build())
        scene = server.scene
        assert rows["cameras"] == "24" and rows["sparse points"] == "1,000 of 3,000" and rows["splats"] == "3,000"
        labels = {k: cb.label for k, cb in app.checkboxes.items()}
        assert labels == {"cameras": "Cameras (24)", "points": "Sparse points (1,000 of 3,000)",
                          "splats": "Splats (3,000)", "stereo:fused.ply": "Stereo fused.ply (500)",
                          "gt_cameras": "Ground-truth cameras (24)"}
        for name in ("/cameras", "/points/cloud", "/splats/gaussians", "/stereo/00_fused/cloud", "/gt_cameras"):
            assert scene.get_handle_by_name(name) is not None, name
        assert not app.layers["gt_cameras"].visible and app.layers["cameras"].visible
        # Frustums sit at the cameras' world_from_cam.
        for h, v in zip(app.layers["cameras"].handles, content.views):
            assert np.allclose(h.position, v.center) and np.allclose(np.abs(np.dot(h.wxyz, v.wxyz)), 1.0)
        # Splat node got activated covariances of the GT splats (sigma 0.06).
        spl = app.layers["splats"]
        assert spl.shown == 3000
        # Toggles and colour modes.
        app.checkboxes["cameras"].value = False
        app._toggle("cameras")
        assert not scene.get_handle_by_name("/cameras").visible
        cloud = app.layers["points"].handles[0]
        rgb = cloud.colors.copy()
        app.set_point_colors("Reprojection error")
        assert app.legend_bar.visible and not np.array_equal(cloud.colors, rgb)
        app.set_point_colors("RGB")
        assert np.array_equal(cloud.colors, rgb) and not app.legend_bar.visible
        # No NeRF in this workspace, but splats: the render button renders them (the registry's splat renderer).
        assert app.render_panel.button.visible and app.render_panel.button.label == "Render this view (splats)"
        assert "SfM" in app.reports_panel.text.content
        # Selecting a camera without clients updates the panel and the highlight.
        app.select_camera(4)
        assert app._selected == 4 and "view_004.png" in app.selected_panel.text.content
        assert tuple(app.layers["cameras"].handles[4].color) == C.SELECTED_RGB
    finally:
        server.stop()


def test_errors_are_one_line_and_nonzero(tmp_path, capsys):
    from recon3d.cli import main

    assert main(["view", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such workspace" in err

    (tmp_path / "empty").mkdir()
    assert main(["view", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no COLMAP model" in err


def test_port_in_use_is_a_user_error(orbit_ws, capsys):
    from recon3d.cli import main
    from recon3d.viewer.server import start_server

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_server("127.0.0.1", port)
        assert main(["view", str(orbit_ws.root), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "already in use" in err
    with pytest.raises(UserError, match="not an address"):
        start_server("no-such-host.invalid", 0)


def test_sigterm_stops_view_with_one_line_and_exit_143(orbit_ws):
    """`recon3d view` stopped by SIGTERM (kill, timeout, docker stop) exits 143 with the CLI's one line,
    no traceback and no native stack trace, like `sfm` (test_lock.py) and `train` (test_splat.py)."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading

    from helpers.viewer import REPO, lines, wait_line

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "recon3d", "view", str(orbit_ws.root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lines, args=(proc.stdout, q), daemon=True).start()
    seen: list[str] = []
    try:
        wait_line(q, r"recon3d view: showing", 60, seen)
        wait_line(q, r"ground-truth cameras", 10, seen)  # the summary's last row: the server is idle now
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while (line := q.get(timeout=5)) is not None:
        seen.append(line)
    text = "".join(seen)
    assert rc == 143, text[-2000:]
    assert "Aborted at" not in text and "*** " not in text and "Traceback" not in text, text[-2000:]
    assert text.strip().splitlines()[-1].startswith("recon3d view: stopped (SIGTERM)"), text[-2000:]


def _http_get(port: int, path: str) -> tuple[int, bytes]:
    """Send a raw GET (no client-side path normalisation) and return (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_http_serves_only_the_viewer_page(orbit_ws):
    from recon3d.viewer.server import start_server

    server = start_server("127.0.0.1", 0)
    try:
        assert server.get_host() == "127.0.0.1"
        port = server.get_port()
        status, body = _http_get(port, "/")
        assert status == 200 and b"<html" in body.lower()
        for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                     "/assets/../../../../etc/passwd", "/etc/passwd", "/assets/", "/some/random/path",
                     f"/{orbit_ws.root}/sparse/0/cameras.bin", "/..\\..\\etc\\passwd"):
            status, body = _http_get(port, path)
            assert status == 404, path
            assert b"root:" not in body and b"<a href" not in body.lower(), path
    finally:
        server.stop()


# --------------------------------------------------------------------------------- live viewer
def test_live_viewer_returns_at_once_and_shows_the_run(orbit_ws, gt_splats):
    from recon3d.viewer.live import LiveConfig, LiveViewer

    calls = []

    def slow_render(cam_from_world, K, w, h):
        calls.append((w, h))
        time.sleep(0.5)
        return np.zeros((h, w, 3), np.uint8)

    splats = gt_splats

    def splat_dict():
        return dict(means=splats.means, quats_wxyz=splats.quats, scales=np.exp(splats.scales),
                    opacities=splats.opacity, rgbs=splats.rgb)

    lv = LiveViewer(orbit_ws, port=0, config=LiveConfig(gui_interval=0.05), quiet=True)
    try:
        n = 2000
        t0 = time.perf_counter()
        for i in range(n):
            lv(TrainEvent("splat", i + 1, n, {"loss": 1.0 / (i + 1), "psnr": 10 + i / 100, "num_gaussians": 3000,
                                              "steps_per_s": 100.0}, render=slow_render, splats=splat_dict,
                          done=i == n - 1))
        per_call = (time.perf_counter() - t0) / n
        assert per_call < 2e-3  # microseconds in practice; never waits for a render
        time.sleep(0.5)
        assert calls == []  # no browser connected: nothing rendered
    finally:
        lv.close()
    assert "finished: step 2,000 / 2,000" in lv.status.content and lv.progress.value == 100.0
    assert lv.loss_plot is not None and lv.psnr_plot is not None
    steps = lv.loss_plot.data[0]
    assert 2 <= len(steps) <= 2 * lv.config.max_history + 1 and steps[-1] >= n - 2
    # The final splats are shown even without a browser (for one that connects later).
    assert lv.splat_uploads == 1 and lv.app.layers["splats"].shown == 3000
    assert lv.app.checkboxes["splats"].label == "Splats (3,000)"
    assert lv.errors == []


def test_unreadable_optional_layers_are_skipped_with_a_note(orbit_ws):
    from recon3d.viewer.app import ViewerApp, WorkspaceContent
    from recon3d.viewer.server import start_server

    orbit_ws.splat.mkdir()
    (orbit_ws.splat / "point_cloud.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n")
    orbit_ws.stereo.mkdir()
    (orbit_ws.stereo / "empty.ply").write_bytes(b"not a ply")
    server = start_server("127.0.0.1", 0)
    try:
        rows = dict(ViewerApp(server, WorkspaceContent.load(orbit_ws)).build())
    finally:
        server.stop()
    assert rows["splats"].startswith("skipped:") and "binary_little_endian" in rows["splats"]
    assert rows["stereo empty.ply"].startswith("skipped:")
    assert rows["cameras"] == "24"


@pytest.mark.parametrize("method", ["splat-cpu", "nerf-fast"])
def test_live_viewer_follows_a_real_training_run(orbit_ws, method):
    """The real backends' events reach the live viewer (no browser: the panel, curves and final splats)."""
    import dataclasses

    from recon3d.core import registry
    from recon3d.viewer.live import LiveViewer

    config = registry.make_config(method)
    if method == "splat-cpu":
        config = dataclasses.replace(config, device="cpu", steps=30, max_image_side=80, log_every=5, report_views=0)
    else:
        config = dataclasses.replace(config, device="cpu", steps=20, downscale=8.0, batch_rays=256, monitor_every=5,
                                     cpu_threads=1, report_views=0)
    events = []
    lv = LiveViewer(orbit_ws, port=0, quiet=True)
    try:
        registry.stage_function(method)(config, orbit_ws, monitor=lambda e: (events.append(e), lv(e)))
    finally:
        lv.close()
    backend = method.split("-")[0]
    metrics = json.loads((orbit_ws.root / backend / "metrics.json").read_text())
    assert [e.step for e in events] == list(range(5, config.steps + 1, 5)) + [config.steps]
    assert events[-1].done and all(e.backend == backend for e in events)
    status = lv.status.content
    assert f"**{backend}** finished: step {config.steps} / {config.steps}" in status
    assert f"| held-out PSNR | {metrics['psnr']:.2f} dB |" in status and "PSNR (train)" in status
    assert "**Training finished.**" in status and lv.progress.value == 100.0
    assert lv.loss_plot is not None and lv.psnr_plot is not None
    assert lv.errors == []
    if backend == "splat":
        assert f"| Gaussians | {metrics['num_gaussians']:,} |" in status
        assert lv.splat_uploads == 1 and lv.app.layers["splats"].shown == metrics["num_gaussians"]
    else:
        assert lv.splat_uploads == 0 and "splats" not in lv.app.layers and not lv.live_splats.visible


def test_live_viewer_says_when_a_run_stops_early(orbit_ws):
    from recon3d.viewer.live import LiveViewer

    lv = LiveViewer(orbit_ws, port=0, quiet=True)
    try:
        lv(TrainEvent("nerf", 40, 100, {"loss": 0.1, "psnr": 15.0, "steps_per_s": 0.0}))
    finally:
        lv.close()  # as on Ctrl-C: no done event
    assert "**nerf** stopped: step 40 / 100" in lv.status.content and "**Training stopped.**" in lv.status.content
    assert "resume" in lv.status.content and "recon3d view" not in lv.status.content
    assert "steps/s" not in lv.status.content and "time left" not in lv.status.content
