"""Evaluate a workspace: reprojection error, and camera pose error against ground truth.

  recon3d eval ws                                   # reprojection error (+ GT from ws/gt/sparse/0 if present)
  recon3d eval ws --gt other/gt/sparse/0            # a COLMAP model as ground truth
  recon3d eval ws --gt ../shared/data/temple_ring/gt/templeR_par.txt   # Middlebury cameras
  recon3d eval ws --gt ../shared/data/herzjesu_p8/gt                   # Strecha *.camera files
  recon3d eval ws --json                            # print the JSON report instead

Reprojection error (mean, median, 95th percentile, per photo) is recomputed from ws/sparse/0.
With ground truth the cameras are aligned by a similarity (Umeyama on camera centres inside
RANSAC, so one bad camera cannot tilt the rest); then rotation error (under that alignment,
and under the rotation that best fits the orientations) and position error per camera, and the
relative-pose AUC at 1/3/5 degrees over all pairs of ground-truth photos. Metrics other stages
wrote (ws/splat/metrics.json, ws/nerf/metrics.json: held-out PSNR/SSIM) are shown as they are.
Writes ws/reports/eval.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace with sparse/0")
    parser.add_argument("--gt", type=Path,
                        help="ground truth: COLMAP model folder, *_par.txt, folder of *.camera files "
                             "(default: ws/gt/sparse/0 when it exists)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


CREATES_WORKSPACE = False
"""It reads an existing workspace: a missing one is reported, not created for the lock."""


def workspace_written(args: argparse.Namespace) -> Path:
    """The workspace this command writes reports/eval.json into (the CLI holds its lock)."""
    return args.workspace


def run(args: argparse.Namespace) -> int:
    from recon3d.core.workspace import Workspace
    from recon3d.evaluate.report import evaluate_workspace, format_report

    ws = Workspace(args.workspace)
    report = evaluate_workspace(ws, gt=args.gt)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(f"  report written to {ws.reports / 'eval.json'}")
    return 0
