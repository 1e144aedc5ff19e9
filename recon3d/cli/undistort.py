"""Undistort photos with a camera.json from `recon3d calibrate`.

  recon3d undistort photos/ --camera camera.json -o undist        # a folder (or files)
  recon3d undistort ws --camera camera.json -o ws_undist           # a workspace: undistorts ws/images
  recon3d undistort photos/ --camera camera.json -o out --alpha 1  # keep every source pixel

Writes OUT/images/<same names> and OUT/camera.json: the ideal pinhole camera (no distortion,
K in COLMAP pixel centres) the new images are taken with. So OUT is a workspace, ready for
`recon3d sfm OUT/images --camera OUT/camera.json -o OUT`. --alpha 0 (default) crops to pixels that
are valid everywhere, so the outputs have no black border. A rerun with the same inputs and
settings is skipped unless --overwrite. Photos of another size than the calibration are handled
when they are a uniform resize of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon3d.core.config import DEST, add_override_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="WS|IMAGES",
                        help="a workspace (its images/ are undistorted), or photo files and/or folders")
    parser.add_argument("--camera", required=True, type=Path, help="camera.json from `recon3d calibrate`")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (gets images/ and camera.json)")
    parser.add_argument("--alpha", type=float,
                        help="0 = crop to valid pixels (default), 1 = keep all source pixels (black corners)")
    parser.add_argument("--interpolation", choices=["nearest", "linear", "cubic", "lanczos"],
                        help="resampling filter (default cubic)")
    parser.add_argument("--overwrite", action="store_true", help="undistort again even if OUT is up to date")
    add_override_arguments(parser, example="jpeg_quality=90", saved="a YAML of UndistortConfig fields")


def workspace_written(args: argparse.Namespace) -> Path:
    """The folder this command writes (the CLI holds its lock)."""
    return args.output


def run(args: argparse.Namespace) -> int:
    from recon3d.calibrate.undistort import UndistortConfig, undistort_images
    from recon3d.core.config import build_config

    flags = {k: v for k, v in (("alpha", args.alpha), ("interpolation", args.interpolation)) if v is not None}
    config = build_config(UndistortConfig, getattr(args, DEST + "file"), flags, getattr(args, DEST + "set"))
    from recon3d.cli.output import show, stage_data

    result = undistort_images(args.inputs, args.camera, args.output, config, overwrite=args.overwrite)
    show(args, result.summary, stage_data(result))
    return 0
