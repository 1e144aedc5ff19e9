"""The viewer in a real browser: headless Debian chromium driven by Playwright (WebGL via SwiftShader).

Screenshots are kept in ``test-artifacts/`` (git-ignored) at the repository root.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers.viewer import ARTIFACTS, REPO, VIEWPORT, lines, wait_line

from recon3d import geometry

pytestmark = pytest.mark.browser


def _content_stats(png: bytes) -> tuple[float, int]:
    """(share of pixels that differ from the background, distinct colours) of the scene area of a screenshot."""
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    h, w, _ = img.shape
    area = img[int(0.25 * h):, : int(0.6 * w)]  # left of the control panel, below the WebGL notice
    flat = area.reshape(-1, 3)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    background = values[np.argmax(counts)]
    differs = np.abs(flat - background).max(axis=1) > 24
    distinct = len(np.unique(flat[differs] // 16, axis=0))
    return float(differs.mean()), distinct


def test_view_cli_shows_the_workspace_in_a_browser(browser, splat_ws):
    ws = splat_ws
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "recon3d", "view", str(ws.root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lines, args=(proc.stdout, q), daemon=True).start()
    seen: list[str] = []
    try:
        url = wait_line(q, r"at (http://127\.0\.0\.1:\d+) ", 60, seen).group(1)
        wait_line(q, r"recon3d view: showing", 60, seen)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        # The GUI names every layer with its count (server-side scene, as the browser received it).
        for label in ("Cameras (24)", "Sparse points (3,000)", "Splats (3,000)", "Ground-truth cameras (24)"):
            page.get_by_text(label, exact=True).wait_for(timeout=30_000)
        page.get_by_text("Point colours").wait_for(timeout=5_000)
        canvas = page.locator("canvas").first
        canvas.wait_for(timeout=10_000)
        share, distinct = 0.0, 0
        end = time.monotonic() + 30
        while time.monotonic() < end:  # splats and thumbnails arrive over the websocket; wait for them
            share, distinct = _content_stats(page.screenshot())
            if share > 0.15 and distinct > 60:
                break
            time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "viewer_e2e.png"
        page.screenshot(path=str(shot))
        print(f"\nscreenshot: {shot} (non-background share {share:.2f}, {distinct} colour bins)")
        assert share > 0.15, f"the scene area is mostly background ({share:.1%}); see {shot}"
        assert distinct > 60, f"too few colours in the scene ({distinct}); see {shot}"
        page.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    assert rc == 0, "".join(seen)


def test_clicking_a_camera_flies_the_view_to_it(browser, orbit_ws):
    from recon3d.viewer.app import ViewerApp, WorkspaceContent, fly_to
    from recon3d.viewer.server import client_world_from_cam, has_camera, start_server

    rendered = []

    def loader(ws):  # a stand-in NeRF render hook that records what it is asked to render
        def render(cam_from_world, K, w, h):
            rendered.append((cam_from_world, K, w, h))
            return np.full((h, w, 3), 90, np.uint8)
        return render

    server = start_server("127.0.0.1", 0)
    try:
        content = WorkspaceContent.load(orbit_ws)
        app = ViewerApp(server, content, render_loader=loader)
        app.build()
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{server.get_port()}")
        end = time.monotonic() + 30
        while time.monotonic() < end and not any(has_camera(c) for c in server.get_clients().values()):
            time.sleep(0.1)
        client = next(c for c in server.get_clients().values() if has_camera(c))
        reports: list[np.ndarray] = []  # poses the *browser* reported back, (3, 4) world_from_cam

        def on_camera(camera):
            reports.append(client_world_from_cam(camera))

        client.camera.on_update(on_camera)

        def wait_for_pose(target: np.ndarray, timeout: float = 15.0) -> np.ndarray:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if reports and np.allclose(reports[-1], target, atol=1e-5):
                    return reports[-1]
                time.sleep(0.1)
            raise AssertionError(f"browser camera never reached\n{target}\nlast report\n{reports[-1] if reports else None}")

        k = 5
        view = content.views[k]
        # Look at camera k from 2 units behind it along its optical axis: the centre of the canvas
        # then shows its frustum (apex and photo), in front of everything else.
        behind = view.world_from_cam.copy()
        behind[:, 3] -= 2.0 * behind[:, 2]
        # Click the centre of the canvas. CI failed twice here with the browser showing its opening view
        # (the viewer's initial camera) after it had reported this pose: under load the opening view can
        # land after the test's first move. So each try moves the view there again first, as a person
        # whose view jumped would; 3 tries.
        for attempt in range(3):
            fly_to(client, behind, view.fov_y, 3.0)
            wait_for_pose(behind)
            time.sleep(0.5 + attempt)
            page.mouse.click(VIEWPORT["width"] / 2, VIEWPORT["height"] / 2)
            end = time.monotonic() + 5
            while time.monotonic() < end and app._selected != k:
                time.sleep(0.1)
            if app._selected == k:
                break
        if app._selected != k:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "viewer_click_missed.png"))
        at_target = bool(reports) and np.allclose(reports[-1], behind, atol=1e-5)
        assert app._selected == k, ("the click did not reach camera 5's frustum (screenshot: viewer_click_missed.png; "
                                    f"the browser's last reported pose {'is' if at_target else 'is not'} the target)")
        got = wait_for_pose(view.world_from_cam)
        radius = content.frame.radius
        assert np.linalg.norm(got[:, 3] - view.center) < 1e-6 * radius
        assert geometry.rotation_angle_deg(got[:, :3], view.world_from_cam[:, :3]) < 1e-3
        assert client.camera.fov == pytest.approx(view.fov_y, abs=1e-6)
        assert view.name in app.selected_panel.text.content and app.selected_panel.photo.visible
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer_camera_view.png"))

        # A render of this view asks the hook for exactly camera k's pose and focal length.
        img = app.render_panel.render_for(client)
        cam_from_world, K, w, h = rendered[-1]
        assert img is not None and img.shape == (h, w, 3)
        assert np.allclose(cam_from_world, view.cam_from_world, atol=1e-6)
        assert max(w, h) == 640 and w / h == pytest.approx(VIEWPORT["width"] / VIEWPORT["height"], rel=0.01)
        assert K[1, 1] / h == pytest.approx(view.camera.K[1, 1] / view.camera.height, rel=1e-6)
        assert "Rendered" in app.render_panel.note.content
        page.close()
    finally:
        server.stop()


def test_live_viewer_renders_the_browser_view(browser, orbit_ws):
    from recon3d.core.monitor import TrainEvent
    from recon3d.viewer.live import LiveConfig, LiveViewer
    from recon3d.viewer.server import client_cam_from_world, has_camera

    asked = []

    def render(cam_from_world, K, w, h):
        asked.append((cam_from_world, K, w, h))
        return np.full((h, w, 3), 120, np.uint8)

    lv = LiveViewer(orbit_ws, port=0, config=LiveConfig(render_interval=0.2), quiet=True)
    try:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(lv.url)
        page.get_by_text("Training", exact=True).wait_for(timeout=30_000)

        def rendered_current_view() -> bool:
            # The browser may still move its camera after the first renders (its default view, then
            # the scene's initial view arrives): wait for a render of the view it shows now.
            client = next((c for c in lv.server.get_clients().values() if has_camera(c)), None)
            return (client is not None and lv.renders >= 2 and
                    np.allclose(asked[-1][0], client_cam_from_world(client.camera), atol=1e-6))

        end = time.monotonic() + 30
        step = 0
        while time.monotonic() < end and not rendered_current_view():
            step += 1
            lv(TrainEvent("nerf", step, 1000, {"loss": 1.0 / step, "psnr": 12.0 + step / 10}, render=render))
            time.sleep(0.02)
        assert lv.renders >= 2, "no render of the browser's view while it was connected"
        assert rendered_current_view(), "the renders never caught up with the browser's current view"
        cam_from_world, K, w, h = asked[-1]
        assert max(w, h) == lv.config.render_size and K[0, 2] == w / 2
        page.get_by_text("current view").wait_for(timeout=10_000)
        assert "nerf** training: step" in lv.status.content
        page.close()
    finally:
        lv.close()
    assert lv.errors == []


# ------------------------------------------------------------------ the view through a camera
def _screenshot_rgb(page) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))


def _shrink(img: np.ndarray, factor: int) -> np.ndarray:
    """``(H, W, 3)`` averaged over ``factor`` x ``factor`` blocks, float in [0, 1]."""
    h, w = img.shape[0] // factor, img.shape[1] // factor
    x = img[: h * factor, : w * factor].astype(np.float64) / 255.0
    return x.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(max(np.mean((a - b) ** 2), 1e-12)))


def _area(img: np.ndarray, right: float = 0.6) -> np.ndarray:
    """The part of a screenshot that shows only the scene: below the WebGL notice, left of the control
    panel (which starts at ``right`` x the width)."""
    h, w = img.shape[:2]
    return img[int(0.25 * h):, : int(right * w)]


def _wait_for_client(server, timeout: float = 30.0):
    from recon3d.viewer.server import has_camera

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        clients = [c for c in server.get_clients().values() if has_camera(c)]
        if clients:
            return clients[0]
        time.sleep(0.1)
    raise AssertionError("no browser reported its camera")


def _wait_until(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(what)


def _settled_screenshot(page, timeout: float = 30.0) -> np.ndarray:
    """A screenshot once two in a row agree (the splats have arrived and been sorted and drawn)."""
    last = _screenshot_rgb(page)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.5)
        shot = _screenshot_rgb(page)
        if shot.std() > 10 and np.abs(shot.astype(np.int16) - last).mean() < 0.5:
            return shot
        last = shot
    return last


def test_view_through_a_camera_hides_its_frustum_and_matches_a_render(browser, splat_ws):
    """Flying to a camera hides its own frustum and photo (they would cover the view), shows the one
    the view left, and the browser's picture then matches the CPU splat render from that camera."""
    import torch

    from recon3d.io.gaussians_ply import read_splat_ply
    from recon3d.splat.model import params_from_splats
    from recon3d.splat.render import render_image
    from recon3d.viewer.app import ViewerApp, WorkspaceContent
    from recon3d.viewer.data import home_view
    from recon3d.viewer.server import (
        client_cam_from_world,
        client_K,
        client_world_from_cam,
        start_server,
    )

    server = start_server("127.0.0.1", 0)
    try:
        content = WorkspaceContent.load(splat_ws)
        app = ViewerApp(server, content)
        app.build()
        app.layers["points"].visible = False  # compare the splats alone (the points sit on their centres)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{server.get_port()}")
        client = _wait_for_client(server)
        cams = app.layers["cameras"].handles
        # The viewer opens looking through a training camera (the medoid of the ring); its frustum is hidden.
        first = home_view(content.views)
        home = content.views[first].world_from_cam
        _wait_until(lambda: np.linalg.norm(client.camera.position - home[:, 3]) < 1e-4 * content.frame.radius, 15,
                    f"the view did not open at camera {first} ({home[:, 3]}): at {client.camera.position}")
        start = client_world_from_cam(client.camera)
        assert geometry.rotation_angle_deg(start[:, :3], home[:, :3]) < 1.0  # the roll follows the scene's up
        centers = np.array([v.center for v in content.views])

        def around(i: int) -> set[int]:  # the frustums that should hide while the view is at camera i
            return set(np.flatnonzero(np.linalg.norm(centers - centers[i], axis=1) < app.hidden_radius()[1]).tolist())

        _wait_until(lambda: app.hidden_frustums() == around(first), 10, f"hidden at the start: {app.hidden_frustums()}")
        assert first in around(first) and 2 <= len(around(first)) <= 4  # itself and the next ones on the ring
        assert [h.visible for h in cams] == [i not in around(first) for i in range(len(cams))]

        k = (first + 5) % len(cams)
        view = content.views[k]
        app.select_camera(k, client)
        _wait_until(lambda: np.allclose(client_world_from_cam(client.camera), view.world_from_cam, atol=1e-5), 15,
                    f"the browser camera never reached camera {k}")
        assert app.hidden_frustums() == around(k) and not cams[k].visible and cams[first].visible

        # The mouse crossing the view onto the panel once tinted the whole view (the hover highlight of
        # the frustum around the eye): cross it, then take the picture.
        page.mouse.move(VIEWPORT["width"] * 0.3, VIEWPORT["height"] * 0.6)
        page.mouse.move(VIEWPORT["width"] * 0.5, VIEWPORT["height"] * 0.5, steps=5)
        page.mouse.move(VIEWPORT["width"] * 0.8, VIEWPORT["height"] * 0.3, steps=5)
        shot = _settled_screenshot(page)
        ARTIFACTS.mkdir(exist_ok=True)
        from PIL import Image

        Image.fromarray(shot).save(ARTIFACTS / "viewer_through_camera.png")
        h, w = shot.shape[:2]
        f = 4  # compare at a quarter of the canvas size (the renderers anti-alias differently)
        splats = read_splat_ply(splat_ws.splat / "point_cloud.ply")
        params = params_from_splats(splats, torch.device("cpu"))
        background = torch.ones(3)  # viser's clear colour: white
        cam_from_world = client_cam_from_world(client.camera)
        render = render_image(params, cam_from_world, client_K(client.camera, w // f, h // f), w // f, h // f, 0,
                              background, "torch", 16).numpy()
        small = _shrink(shot, f)
        Image.fromarray((np.concatenate([small, render], 1) * 255).astype(np.uint8)).save(
            ARTIFACTS / "viewer_through_camera_vs_render.png")
        score = _psnr(_area(small), _area(render))
        flat = _area(small).std()
        photo = _psnr(_area(small), _area(_shrink(np.asarray(Image.open(view.image_path).convert("RGB").resize(
            (w, h))), f)))
        print(f"\nthrough camera {k}: PSNR {score:.2f} dB against the render ({photo:.2f} dB against the photo), "
              f"pixel std {flat:.3f}")
        assert flat > 0.08, "the view through the camera is nearly one flat colour"
        assert score > 25.0, f"the browser's view through camera {k} differs from the render ({score:.2f} dB)"

        # Moving away shows the frustum again.
        behind = view.world_from_cam.copy()
        behind[:, 3] -= 1.5 * app.hidden_radius()[0] * behind[:, 2]  # behind the frustum: no longer through it
        from recon3d.viewer.app import fly_to

        fly_to(client, behind, view.fov_y, 3.0)
        _wait_until(lambda: app.hidden_frustums() == set(), 10, "the frustum stayed hidden after moving away")
        assert all(h.visible for h in cams)
        page.close()
    finally:
        server.stop()


def halfway_scores(browser, ws, hide: tuple[str, ...] = ("cameras",)) -> tuple[float, float, str]:
    """``(browser PSNR, model PSNR, name)`` at the held-out view halfway between two training views:
    the browser's picture and the CPU render, each against the photo, over the scene area."""
    from PIL import Image

    from recon3d.splat.render import load_renderer
    from recon3d.viewer.app import ViewerApp, WorkspaceContent
    from recon3d.viewer.data import home_view
    from recon3d.viewer.server import client_world_from_cam, start_server

    server = start_server("127.0.0.1", 0)
    try:
        content = WorkspaceContent.load(ws)
        names = [v.name for v in content.views]
        held_out = [r["name"] for r in __import__("json").loads((ws.splat / "metrics.json").read_text())["views"]]
        name = held_out[1]  # view_008.png, between the training views 7 and 9
        k = names.index(name)
        view, before, after = content.views[k], content.views[k - 1], content.views[k + 1]
        assert before.name not in held_out and after.name not in held_out
        gap = np.linalg.norm(after.center - before.center)
        assert np.linalg.norm(view.center - (before.center + after.center) / 2) < 0.25 * gap, "not halfway"
        app = ViewerApp(server, content)
        app.build()
        for key in hide:
            app.layers[key].visible = False
        page = browser.new_page(viewport={"width": 800, "height": 600})  # the photos' 4:3
        page.goto(f"http://127.0.0.1:{server.get_port()}")
        client = _wait_for_client(server)
        home = content.views[home_view(content.views)].center
        _wait_until(lambda: np.linalg.norm(client.camera.position - home) < 1e-4 * content.frame.radius, 15,
                    "the view did not open at the home camera")
        app.select_camera(k, client)
        _wait_until(lambda: np.allclose(client_world_from_cam(client.camera), view.world_from_cam, atol=1e-5), 15,
                    f"the browser camera never reached {name}")
        shot = _settled_screenshot(page)
        page.close()
    finally:
        server.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    Image.fromarray(shot).save(ARTIFACTS / f"viewer_halfway_{ws.root.name}.png")
    # Both pictures at the page's size (the splats were trained at 160 x 120; drawn 5x larger they
    # show gaps either way), compared with the photo at 160 x 120, the training resolution.
    h, w = shot.shape[:2]
    K = view.camera.K.copy()
    K[:2] *= w / view.camera.width
    f = h // 120
    render = _shrink(load_renderer(ws, "cpu")(view.cam_from_world, K, w, h), f)
    photo = np.asarray(Image.open(view.image_path).convert("RGB").resize((w // f, h // f), Image.BOX), np.float64)
    photo = photo / 255.0
    small = _shrink(shot, f)
    Image.fromarray((np.concatenate([small, render, photo], 1) * 255).astype(np.uint8)).save(
        ARTIFACTS / f"viewer_halfway_{ws.root.name}_vs_render_photo.png")
    right = 0.55  # the control panel starts at 57% of an 800 px wide page
    return _psnr(_area(small, right), _area(photo, right)), _psnr(_area(render, right), _area(photo, right)), name


@pytest.mark.slow  # needs the trained splats (shared with test_splat.py's acceptance run)
def test_view_halfway_between_training_cameras_scores_like_the_model(browser, splat_cpu_ws):
    """From the held-out camera halfway between two training cameras, the browser's picture of the
    CPU-trained splats (with every default layer: frustums, sparse points) scores within 3 dB of the
    model's own render of that view, both against the photo: no floaters or frustums in the way."""
    got, model, name = halfway_scores(browser, splat_cpu_ws)
    print(f"\nhalfway ({name}): browser {got:.2f} dB, model render {model:.2f} dB against the photo")
    assert got > model - 3.0, f"the browser's view of {name} scores {got:.2f} dB, the model's render {model:.2f} dB"
