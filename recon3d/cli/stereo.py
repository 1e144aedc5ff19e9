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

Every setting is a field of PairConfig (pairs) or FusionConfig (workspaces), both sharing the
matching settings (sgbm.*); --set sets any of them (e.g. --set sgbm.uniqueness=10) and the
resolved settings are saved as OUT/config.yaml or ws/stereo/config.yaml, which --config reads back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon3d.core.config import DEST


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recon3d.core.config import add_config_arguments
    from recon3d.stereo.config import FusionConfig, PairConfig

    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="LEFT RIGHT (two photos or two folders of photos), or one workspace folder")
    parser.add_argument("-o", "--output", type=Path, help="output folder (pairs; a workspace writes ws/stereo/)")
    parser.add_argument("--calib", type=Path, help="stereo.json of the rig (from `recon3d calibrate`)")
    parser.add_argument("--rectified", action="store_true",
                        help="the photos are already rectified (with --calib, its P1/P2 give depth in metres)")
    parser.add_argument("--no-refine", action="store_true",
                        help="skip the sub-pixel refinement (sets sgbm.refine_iters to 0)")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    add_config_arguments(parser, PairConfig, title="pairs (LEFT RIGHT) mode", overrides=False)
    parser.add_argument("--pairs", choices=["auto"], default="auto",
                        help="workspaces: how pairs are chosen: auto = each image with a right-hand neighbour "
                        "of good baseline")
    add_config_arguments(parser, FusionConfig, title="workspace (SfM) mode", skip=("sgbm",),
                         example="sgbm.uniqueness=10",
                         saved="the OUT/config.yaml or ws/stereo/config.yaml a run wrote")


def _config(cls: type, args: argparse.Namespace, mode: str):
    """The config of ``cls`` from --config, the flags of its fields, --no-refine and --set."""
    import dataclasses

    from recon3d.core.config import build_config
    from recon3d.core.errors import UserError

    names = {f.name for f in dataclasses.fields(cls)}
    flags = {}
    for key, value in vars(args).items():
        if not key.startswith(DEST) or key in (DEST + "file", DEST + "set"):
            continue
        path = key[len(DEST):]
        if path.split(".")[0] not in names:
            raise UserError(f"--{path.replace('_', '-')} applies to {'LEFT RIGHT pairs' if mode == 'workspace' else 'a workspace'}, "
                            f"not to {'a workspace' if mode == 'workspace' else 'pairs'}; leave it out")
        flags[path] = value
    if args.no_refine:
        flags["sgbm.refine_iters"] = 0
    return build_config(cls, getattr(args, DEST + "file"), flags, getattr(args, DEST + "set"))


CREATES_WORKSPACE = False
"""It reads an existing workspace: a missing one is reported, not created for the lock."""


def workspace_written(args: argparse.Namespace) -> Path | None:
    """The workspace of `recon3d stereo WS` (the CLI holds its lock); None for pairs."""
    if len(args.inputs) == 1 and not args.inputs[0].is_file():
        return args.inputs[0]
    return None


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.core.progress import progress

    if len(args.inputs) > 2:
        raise UserError(f"got {len(args.inputs)} inputs; give LEFT RIGHT (photos or folders) or one workspace")
    if len(args.inputs) == 1:
        return _run_workspace(args)
    if args.output is None:
        raise UserError("no output folder; add -o OUT")
    from recon3d.stereo.pair import PairConfig, stereo_pairs

    config = _config(PairConfig, args, "pairs")
    left, right = args.inputs
    from recon3d.cli.output import show, stage_data

    result = stereo_pairs(left, right, args.output, config, args.calib, args.rectified, args.overwrite, progress)
    show(args, result.summary, {"mode": "pairs", **stage_data(result)})
    return 0


def _run_workspace(args: argparse.Namespace) -> int:
    import dataclasses

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
    config = _config(FusionConfig, args, "workspace")
    # a workspace matches at config.scale: --downscale is for pairs
    config = dataclasses.replace(config, sgbm=dataclasses.replace(config.sgbm, downscale=1.0))
    from recon3d.cli.output import show, stage_data

    result = stereo_workspace(config, ws, args.overwrite, progress)
    show(args, result.summary, {"mode": "workspace", "workspace": str(ws.root), **stage_data(result)})
    return 0
