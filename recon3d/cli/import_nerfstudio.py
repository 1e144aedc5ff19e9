"""Make a workspace from a nerfstudio dataset (transforms.json + images).

  recon3d import-nerfstudio data/transforms.json -o ws
  recon3d import-nerfstudio data/ -o ws --overwrite
  recon3d train ws --method nerf

Copies the images into ws/images/ and writes the cameras (intrinsics, distortion, poses) as a
COLMAP binary model in ws/sparse/0 with no 3D points. nerfstudio's OpenGL camera-to-world poses
become COLMAP's cam_from_world; an `applied_transform` (from ns-process-data) is undone so the
poses return to the original reconstruction's frame. Camera models: OPENCV, PINHOLE,
SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV_FISHEYE.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="transforms.json, or the folder holding it")
    parser.add_argument("-o", "--output", type=Path, required=True, help="workspace folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace images/ and sparse/0 of an existing workspace")


def workspace_written(args: argparse.Namespace) -> Path:
    """The workspace this command writes (the CLI holds its lock)."""
    return args.output


def run(args: argparse.Namespace) -> int:
    from recon3d.core.progress import summary
    from recon3d.io.colmap import read_model
    from recon3d.io.nerfstudio import import_nerfstudio

    ws = import_nerfstudio(args.source, args.output, overwrite=args.overwrite)
    model = read_model(ws.model)
    from recon3d.cli.output import show

    show(args, summary(f"imported {args.source} into {ws.root}", [
        ("images", f"{len(model.images)} in {ws.images}"),
        ("cameras", f"{len(model.cameras)} ({', '.join(sorted({c[0] for c in model.cameras.values()}))})"),
        ("model", f"{ws.model} (COLMAP binary, no 3D points)"),
        ("next", f"recon3d train {ws.root} --method nerf"),
    ]), {"workspace": str(ws.root), "model": str(ws.model), "images": len(model.images),
         "cameras": len(model.cameras)})
    return 0
