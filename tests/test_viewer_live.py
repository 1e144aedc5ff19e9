"""``recon3d train WS --view`` end to end: a real (tiny) training run in a subprocess, watched by headless chromium.

The page must show the run as it goes (step counter, PSNR, curves, a render of the browser's view), the
last state when it ends (finished, held-out scores, for splats the final Gaussians as a layer), and the
command must exit 0 with its outputs written. The server must listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.viewer import ARTIFACTS, REPO, VIEWPORT, lines, wait_line

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Tiny runs on the 80x60 orbit scene (24 views): a few seconds of training each on 2 busy cores (the whole
# test about 10 s each, after the session's orbit scene render), long enough for the page to see steps go by.
RUNS = {
    "splat-cpu": ["--steps", "150", "--set", "max_image_side=80", "--set", "log_every=5"],
    "nerf-fast": ["--steps", "60", "--set", "downscale=8", "--set", "batch_rays=512", "--set", "monitor_every=5",
                  "--set", "cpu_threads=1", "--set", "report_views=1"],
}
STATUS = re.compile(r"(splat|nerf) (training|finished|stopped): step ([\d,]+) / ([\d,]+)")


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.is_file():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, p = local.rpartition(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.add(addr)
    return found


def _state(text: str) -> dict:
    """What the Training panel says, parsed from the page's text."""
    out: dict = {}
    m = STATUS.search(text)
    if m:
        out.update(backend=m.group(1), state=m.group(2), step=int(m.group(3).replace(",", "")),
                   total=int(m.group(4).replace(",", "")))
    for key, pattern in (("psnr", r"PSNR \(train\)\s+([\d.]+) dB"), ("gaussians", r"Gaussians\s+([\d,]+)"),
                         ("test_psnr", r"held-out PSNR\s+([\d.]+) dB")):
        m = re.search(pattern, text)
        if m:
            out[key] = float(m.group(1).replace(",", ""))
    m = re.search(r"Splats \(([\d,]+)\)", text)
    if m:
        out["splat_layer"] = int(m.group(1).replace(",", ""))
    return out


def _rendered_images(page) -> list[tuple[int, int]]:
    """Natural sizes of the images the server sent to the panel (blob: URLs; viser's own logos are inline SVG):
    here only the Training panel's render of the browser's view."""
    return [tuple(s) for s in page.evaluate(
        "() => Array.from(document.images).filter(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)"
        ".map(i => [i.naturalWidth, i.naturalHeight])")]


@pytest.mark.parametrize("method", list(RUNS))
def test_train_view_shows_the_run_live_in_a_browser(browser, orbit_ws, method):  # noqa: F811 (fixture)
    ws = orbit_ws
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "recon3d", "train", str(ws.root), "--method", method, "--device", "cpu",
           *RUNS[method], "--view", "--port", "0"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lines, args=(proc.stdout, q), daemon=True).start()
    seen: list[str] = []
    states: list[dict] = []
    images_during: list[tuple[int, int]] = []
    try:
        url = wait_line(q, r"live viewer at (http://127\.0\.0\.1:(\d+)) ", 60, seen)
        port = int(url.group(2))
        assert _listening_addresses(port) <= {"0100007F"}, "the viewer must listen on 127.0.0.1 only"
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url.group(1))
        page.get_by_text("Training", exact=True).wait_for(timeout=30_000)
        end = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < end:
            try:
                state = _state(page.inner_text("body", timeout=5_000))
            except Exception:  # noqa: BLE001 - the server went away between two polls
                break
            if state and (not states or state != states[-1]):
                states.append(state)
            if state.get("state") == "training":
                images_during = images_during or _rendered_images(page)
            time.sleep(0.25)
        rc = proc.wait(timeout=60)
        elapsed = time.monotonic() - t0
        while True:  # the rest of the output
            line = q.get(timeout=10)
            if line is None:
                break
            seen.append(line)
        # The page keeps the last state it was sent after the server has stopped.
        final_text = page.inner_text("body", timeout=5_000)
        final = _state(final_text)
        images_after = _rendered_images(page)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"viewer_live_{method}.png"
        page.screenshot(path=str(shot))
        page.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(seen)
    print(f"\n{method}: {elapsed:.1f} s, {len(states)} panel states seen, final {final}; images while training "
          f"{images_during}, after {images_after}; screenshot {shot}")
    assert rc == 0, output

    backend = "splat" if method.startswith("splat") else "nerf"
    total = int(RUNS[method][1])
    during = [s for s in states if s.get("state") == "training"]
    assert during, f"the page never showed the run in progress; states seen: {states}\n{output}"
    steps = [s["step"] for s in states if "step" in s]
    assert steps == sorted(steps) and steps[-1] > during[0]["step"], f"the step counter did not advance: {states}"
    assert all(s["backend"] == backend and s["total"] == total for s in states if "backend" in s)
    assert "psnr" in during[-1] and 5.0 < during[-1]["psnr"] < 60.0, during[-1]
    assert any(s.get("step") == total for s in states), states

    # The end: said on the page, with the held-out score, and the command's own line.
    assert final.get("state") == "finished" and final.get("step") == total, final
    assert "test_psnr" in final, final
    assert "Training finished" in final_text and f"recon3d view {ws.root}" in final_text, final_text
    assert "live viewer stopped" in output and "Traceback" not in output, output
    assert len(images_after) == 1 and min(images_after[0]) >= 32, images_after  # the last render of the view
    metrics = json.loads((ws.root / backend / "metrics.json").read_text())
    assert metrics["psnr"] == pytest.approx(final["test_psnr"], abs=0.006)
    if backend == "splat":
        assert final["gaussians"] == metrics["num_gaussians"]
        assert final.get("splat_layer") == final["gaussians"], f"the final Gaussians never reached the page: {final}"
    else:
        assert "splat_layer" not in final and "Update splats" not in final_text  # nothing to send as splats
