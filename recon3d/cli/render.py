"""Render a trained model along a camera path into a video (or a PNG sequence).

  recon3d render ws --method nerf                        # orbit -> ws/reports/nerf_orbit.mp4
  recon3d render ws --method nerf --path interp -o fly.mp4 --frames 240 --fps 30
  recon3d render ws --method nerf --downscale 4 -o frames/ # a folder: PNG frames

Paths: `orbit` circles the scene centre at the cameras' mean height and distance, looking at the
centre (forward-facing captures get a circle through the camera cluster instead); `interp` flies
through the registered cameras in name order. Frames use the first camera's (undistorted)
intrinsics, divided by --downscale. An output ending in .mp4 is an MP4 video (OpenCV mp4v); when
no encoder is present the frames go to a folder NAME_frames/ beside it instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

RENDERERS: dict[str, str] = {
    "nerf": "recon3d.nerf.render_path:load_renderer",
}
"""method -> 'module:function(workspace, device) -> render(cam_from_world (3, 4), K (3, 3), W, H) -> (H, W, 3) uint8'."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace with a trained model")
    parser.add_argument("--method", default="nerf", choices=list(RENDERERS), help="which trained model (default: nerf)")
    parser.add_argument("--path", default="orbit", choices=["orbit", "interp"], help="camera path (default: orbit)")
    parser.add_argument("-o", "--output", type=Path,
                        help="video (.mp4) or folder for PNG frames (default: ws/reports/METHOD_PATH.mp4)")
    parser.add_argument("--frames", type=int, default=120, help="number of frames (default 120)")
    parser.add_argument("--fps", type=float, default=30.0, help="video frame rate (default 30)")
    parser.add_argument("--downscale", type=float, default=1.0, help="divide the image size by this (default 1)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="where to render")


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.core.registry import load_ref
    from recon3d.core.workspace import Workspace
    from recon3d.nerf.render_path import render_frames, save_frames, workspace_path

    if args.downscale <= 0:
        raise UserError("--downscale must be > 0")
    if args.fps <= 0:
        raise UserError("--fps must be > 0")
    ws = Workspace(args.workspace)
    poses, K, width, height = workspace_path(ws, args.path, args.frames)
    if args.downscale != 1.0:
        w, h = max(1, round(width / args.downscale)), max(1, round(height / args.downscale))
        K = K.copy()
        K[0] *= w / width
        K[1] *= h / height
        width, height = w, h
    render = load_ref(RENDERERS[args.method])(ws, args.device)
    output = args.output or ws.reports / f"{args.method}_{args.path}.mp4"
    frames = render_frames(render, poses, K, width, height)
    path = save_frames(frames, output, args.fps)
    kind = "video" if path.is_file() else "PNG frames"
    print(f"wrote {path} ({kind}: {len(frames)} frames, {width}x{height})")
    return 0
