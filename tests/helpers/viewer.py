"""Helpers for the viewer tests: splats and reports for a workspace built from the orbit scene, and
reading a subprocess's output line by line (the browser tests). The fixtures built on them
(``splat_ws``, ``gt_splats``, ``browser``) are in ``tests/conftest.py``."""

from __future__ import annotations

import json
import queue
import re
import time
from pathlib import Path

import numpy as np

from recon3d.core.workspace import Workspace
from recon3d.io.colmap import read_model
from recon3d.io.gaussians_ply import SH_C0, Splats, write_splat_ply

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
"""Screenshots of the browser tests (git-ignored)."""
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1000, "height": 700}


def gt_splats(ws: Workspace, sigma: float = 0.06) -> Splats:
    """Isotropic Gaussians (std ``sigma``, opacity 0.9) at the ground-truth points, with their colours."""
    model = read_model(ws.gt_model)
    n = len(model.points)
    rgb = model.colors.astype(np.float32) / 255.0
    return Splats(
        means=model.points.astype(np.float32),
        scales=np.full((n, 3), np.log(sigma), np.float32),
        quats=np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], np.float32), (n, 1)),
        opacities=np.full(n, np.log(0.9 / 0.1), np.float32),
        sh0=((rgb - 0.5) / SH_C0).reshape(n, 1, 3),
        shN=np.zeros((n, 0, 3), np.float32),
    )


def add_splats_and_reports(ws: Workspace) -> Workspace:
    """Write ``splat/point_cloud.ply`` (GT points as splats) and a small ``reports/sfm.json`` into ``ws``."""
    write_splat_ply(ws.splat / "point_cloud.ply", gt_splats(ws))
    ws.reports.mkdir(parents=True, exist_ok=True)
    (ws.reports / "sfm.json").write_text(json.dumps({"registered_images": 24, "points": 3000,
                                                     "mean_reprojection_error_px": 0.0, "timing": {"total_s": 1.5}}))
    return ws


def lines(stream, q: queue.Queue) -> None:
    """Put every line of ``stream`` on ``q``, then ``None`` (run it on a daemon thread)."""
    for line in stream:
        q.put(line)
    q.put(None)


def wait_line(q: queue.Queue, pattern: str, timeout: float, seen: list[str]) -> re.Match:
    """The first line from ``q`` matching ``pattern`` within ``timeout`` seconds (lines read go to ``seen``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = q.get(timeout=max(0.05, end - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output so far:\n{''.join(seen)}")
