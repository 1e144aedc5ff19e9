"""Choose sharp, distinct frames of a video and write them as photos.

  recon3d frames clip.mp4 -o frames/                  # about 150 frames spread over the clip
  recon3d frames clip.mp4 -o frames/ --num-frames 80 --frame-format png

The clip is split into --num-frames equal windows and the sharpest frame of each (variance of the
Laplacian) is kept, unless it is much blurrier than the frames around it (--blur-ratio) or hardly
differs from the last frame kept (--min-frame-difference). Frames come out upright (the rotation a
phone stores in the file is applied) as frames/frame_NNNNNN.jpg, NNNNNN the frame index, with
frames/frames.json: every chosen and skipped frame with its index, time in seconds, sharpness and,
for skipped ones, the reason. `recon3d run clip.mp4` and `recon3d sfm clip.mp4` do this first.

Exit status: 0 done, 2 bad input (not a readable video, truncated or empty, too few usable frames,
an output folder that holds other files).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recon3d.core.config import add_config_arguments
    from recon3d.sfm.frames import FramesConfig

    parser.add_argument("video", type=Path, help="the video file")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="folder for the frames and frames.json (created; an earlier extraction there is replaced)")
    add_config_arguments(parser, FramesConfig, title="frame selection", example="blur_ratio=0.3",
                         saved="a YAML file of FramesConfig fields")


def run(args: argparse.Namespace) -> int:
    from recon3d.cli.output import show
    from recon3d.core.config import config_from_args
    from recon3d.core.progress import progress
    from recon3d.sfm.frames import FramesConfig, extract_frames, format_summary

    config = config_from_args(FramesConfig, args)
    report = extract_frames(args.video, args.output, config, progress=progress)
    show(args, format_summary(report, args.output), {"output": str(args.output), "frames": report})
    return 0
