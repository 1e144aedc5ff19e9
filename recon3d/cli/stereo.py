"""Stereo depth: rectify, match by semi-global matching, and turn disparity into depth, points and meshes.

  recon3d stereo left.png right.png --calib stereo.json -o out   # raw photos of a calibrated rig
  recon3d stereo left.png right.png --rectified -o out           # a rectified pair (disparity only)
  recon3d stereo left/ right/ --calib stereo.json -o out         # folders of pairs with matching names
  recon3d stereo ws --pairs auto                                  # SfM workspace: depth maps -> fused mesh

A pair writes OUT/ (folders: OUT/<name>/): disparity.pfm (Middlebury PFM, inf = invalid),
disparity.png, and with a calibration depth.npy (metres, NaN = invalid) and points.ply (left
camera frame), plus stereo.json. A workspace writes ws/stereo/: depth/<image>.npy, mesh.ply,
fused.ply, report.md (with accuracy and completeness when ws/gt exists).

Matching is OpenCV SGBM with tuned defaults: left border padding, left-right consistency check,
uniqueness and speckle filtering, sub-pixel refinement. `recon3d eval-stereo` scores the results.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="LEFT RIGHT (two photos or two folders of photos), or one workspace folder")
    parser.add_argument("-o", "--output", type=Path, help="output folder (pairs; a workspace writes ws/stereo/)")
    parser.add_argument("--calib", type=Path, help="stereo.json of the rig (from `recon3d calibrate`)")
    parser.add_argument("--rectified", action="store_true",
                        help="the photos are already rectified (with --calib, its P1/P2 give depth in metres)")
    m = parser.add_argument_group("matching")
    m.add_argument("--max-disparity", type=int, default=0,
                   help="largest disparity searched, px (default: image width / 8; workspaces: from sparse points)")
    m.add_argument("--min-disparity", type=int, default=0, help="smallest disparity searched, px (default 0)")
    m.add_argument("--block-size", type=int, default=3, help="SGBM block size, odd (default 3)")
    m.add_argument("--downscale", type=float, default=1.0,
                   help="match at this fraction of the resolution, e.g. 0.5 (pairs; default 1)")
    m.add_argument("--mode", choices=["3way", "sgbm", "hh", "hh4"], default="3way",
                   help="SGBM variant: 3way (fast, default), sgbm, hh (8 paths, slower)")
    m.add_argument("--no-refine", action="store_true", help="skip the sub-pixel refinement")
    m.add_argument("--min-texture", type=float, default=0.0,
                   help="drop disparities where the 9x9 grey-level std is below this (e.g. 1 for flat sky)")
    w = parser.add_argument_group("workspace (SfM) mode")
    w.add_argument("--pairs", choices=["auto"], default="auto",
                   help="how pairs are chosen: auto = each image with a right-hand neighbour of good baseline")
    w.add_argument("--max-pairs", type=int, default=0, help="use at most this many pairs (default: one per image)")
    w.add_argument("--scale", type=float, default=0.5, help="image scale of the depth maps (default 0.5)")
    w.add_argument("--voxel-size", type=float, default=0.0, help="TSDF voxel in metres (default: automatic)")
    w.add_argument("--weight-threshold", type=float, default=2.0,
                   help="mesh surfaces seen by at least this many depth maps (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")


def _sgbm(args: argparse.Namespace):
    from recon3d.stereo.disparity import SGBMConfig

    return SGBMConfig(max_disparity=args.max_disparity, min_disparity=args.min_disparity, block_size=args.block_size,
                      mode=args.mode, refine_iters=0 if args.no_refine else SGBMConfig.refine_iters,
                      min_texture=args.min_texture, downscale=args.downscale)


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.core.progress import progress, summary

    if len(args.inputs) > 2:
        raise UserError(f"got {len(args.inputs)} inputs; give LEFT RIGHT (photos or folders) or one workspace")
    if len(args.inputs) == 1:
        return _run_workspace(args)
    if args.output is None:
        raise UserError("no output folder; add -o OUT")
    from recon3d.stereo.pair import PairConfig, stereo_pairs

    config = PairConfig(sgbm=_sgbm(args))
    left, right = args.inputs
    infos = stereo_pairs(left, right, args.output, config, args.calib, args.rectified, args.overwrite, progress)
    rows = [("pairs", len(infos)),
            ("valid pixels", f"{100 * sum(i['density'] for i in infos) / len(infos):.1f} % (mean)"),
            ("disparity range", f"{infos[0]['disparity_range'][0]:g} .. {infos[0]['disparity_range'][1]:g} px"),
            ("match time", f"{sum(i['match_seconds'] for i in infos):.2f} s")]
    if infos[0].get("calibrated"):
        rows += [("median depth", f"{infos[0]['depth_median']:.3f} m"),
                 ("baseline / focal", f"{infos[0]['baseline']:.4f} m / {infos[0]['focal']:.1f} px")]
    else:
        rows += [("depth", "not computed (no calibration: add --calib stereo.json)")]
    files = "disparity.pfm, disparity.png" + (", depth.npy, points.ply" if infos[0].get("calibrated") else "")
    rows += [("written", f"{args.output}/{'<name>/' if left.is_dir() else ''}{{{files}, stereo.json}}")]
    print(summary(f"stereo: {left} + {right}", rows))
    return 0


def _run_workspace(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.core.progress import progress
    from recon3d.core.workspace import Workspace
    from recon3d.stereo.mvs import FusionConfig, stereo_workspace

    root = args.inputs[0]
    if root.is_file():
        raise UserError(f"{root}: one photo is not a stereo pair; give LEFT RIGHT, or a workspace folder")
    if args.calib or args.rectified:
        raise UserError("--calib / --rectified apply to LEFT RIGHT pairs; a workspace takes its cameras from sparse/0")
    ws = Workspace(root)
    sg = _sgbm(args)
    sg.downscale = 1.0
    config = FusionConfig(sgbm=sg, scale=args.scale, max_pairs=args.max_pairs, voxel_size=args.voxel_size,
                          weight_threshold=args.weight_threshold)
    print(stereo_workspace(config, ws, args.overwrite, progress).summary)
    return 0
