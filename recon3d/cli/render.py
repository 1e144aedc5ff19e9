"""Render a trained model along a camera path into a video (or a PNG sequence).

  recon3d render ws --method nerf                        # orbit -> ws/reports/nerf_orbit.mp4
  recon3d render ws --method splat --path orbit -o orbit.mp4
  recon3d render ws --method nerf --path interp -o fly.mp4 --frames 240 --fps 30
  recon3d render ws --method nerf --downscale 4 -o frames/ # a folder: PNG frames

Methods (any method renders the model its backend trained into the workspace):
{methods}

Paths: `orbit` circles the scene centre at the cameras' mean height and distance, looking at the
centre (forward-facing captures get a circle through the camera cluster instead); `interp` flies
through the registered cameras in name order. Frames use the first camera's (undistorted)
intrinsics, divided by --downscale. An output ending in .mp4 is an MP4 video (OpenCV mp4v); when
no encoder is present the frames go to a folder NAME_frames/ beside it instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon3d.core import registry
from recon3d.render.paths import PATHS

__doc__ = __doc__.format(methods="\n".join(
    f"  {name:12s} {registry.get(name).backend}: {registry.get(name).description}" for name in registry.renderable()))

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace with a trained model")
    parser.add_argument("--method", default="nerf", choices=registry.renderable(),
                        help="which trained model: a method of its backend (default: nerf)")
    parser.add_argument("--path", default="orbit", choices=list(PATHS), help="camera path (default: orbit)")
    parser.add_argument("-o", "--output", type=Path,
                        help="video (.mp4) or folder for PNG frames (default: ws/reports/METHOD_PATH.mp4)")
    parser.add_argument("--frames", type=int, default=120, help="number of frames (default 120)")
    parser.add_argument("--fps", type=float, default=30.0, help="video frame rate (default 30)")
    parser.add_argument("--downscale", type=float, default=1.0, help="divide the image size by this (default 1)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="where to render")


CREATES_WORKSPACE = False
"""It reads an existing workspace: a missing one is reported, not created for the lock."""


def workspace_written(args: argparse.Namespace) -> Path | None:
    """The workspace, when the video goes into its reports/ (no -o); the CLI holds its lock."""
    return args.workspace if args.output is None else None


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.core.workspace import Workspace
    from recon3d.render.paths import scaled_intrinsics, workspace_path
    from recon3d.render.video import render_frames, save_frames

    if args.downscale <= 0:
        raise UserError("--downscale must be > 0")
    if args.fps <= 0:
        raise UserError("--fps must be > 0")
    ws = Workspace(args.workspace)
    poses, K, width, height = workspace_path(ws, args.path, args.frames)
    K, width, height = scaled_intrinsics(K, width, height, args.downscale)
    render = registry.renderer(args.method)(ws, args.device)
    output = args.output or ws.reports / f"{args.method}_{args.path}.mp4"
    frames = render_frames(render, poses, K, width, height)
    path = save_frames(frames, output, args.fps)
    kind = "video" if path.is_file() else "PNG frames"
    from recon3d.cli.output import show

    show(args, f"wrote {path} ({kind}: {len(frames)} frames, {width}x{height})",
         {"path": str(path), "kind": kind, "frames": len(frames), "width": width, "height": height})
    return 0
