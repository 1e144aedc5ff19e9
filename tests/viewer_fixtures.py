"""Helpers for the viewer tests: a workspace with a sparse model, splats and reports, built from the orbit scene."""

from __future__ import annotations

import json

import numpy as np

from recon3d.core.workspace import Workspace
from recon3d.io.colmap import read_model
from recon3d.io.gaussians_ply import SH_C0, Splats, write_splat_ply


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
