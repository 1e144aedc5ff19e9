"""The main job: photos (or the default scene) -> SfM -> evaluation -> training.

  recon3d run -o ws                         # render the default `orbit` scene into ws and reconstruct it
  recon3d run photos/ -o ws                 # your photos
  recon3d run clip.mp4 -o ws                # a video: ~150 sharp frames (--num-frames), then the same
  recon3d run photos/ -o ws --train none    # SfM and evaluation only
  recon3d run -o ws --train splat-fast --steps 2000

Stages, each skipped on a rerun when it has finished (unless --overwrite):
  0. frames (only for a video): sharp, distinct frames -> ws/frames, ws/reports/frames.json
  1. scene (only without PHOTOS): render `orbit` with exact ground truth into ws (images/, gt/)
  2. sfm: features, matching, mapping, bundle adjustment -> ws/sparse/0, ws/reports/sfm.md
  3. eval: reprojection error, and pose error against ws/gt when present -> ws/reports/eval.json
  4. train: --train auto picks `splat` on a CUDA GPU and `splat-cpu` (a 160 px preview) on CPU; any preset of
     `recon3d train` can be named, or `none`. Missing training backends are skipped with a note.
A finished training run asked for more --steps trains on from its last checkpoint.
Then open the result in the browser with `recon3d view ws`. The SfM options are those of
`recon3d sfm` (see `recon3d sfm --help`). In Python: `recon3d.run(images, ws, ...)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon3d.pipeline import DEFAULT_SCENE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recon3d.cli.sfm import add_frames_options, add_sfm_options
    from recon3d.core.registry import METHODS

    parser.add_argument("images", type=Path, nargs="?",
                        help=f"folder of photos, or a video (default: render the `{DEFAULT_SCENE}` scene into the workspace)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="workspace folder (created if missing)")
    parser.add_argument("--train", default="auto", choices=["auto", "none", *METHODS],
                        help="training preset after SfM (default auto: splat on CUDA, splat-cpu on CPU; none: skip)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--train-device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="where training runs (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="redo every stage even if finished")
    add_sfm_options(parser)
    add_frames_options(parser)


def workspace_written(args: argparse.Namespace) -> Path:
    """The workspace this command writes (the CLI holds its lock through every stage)."""
    return args.output


def run(args: argparse.Namespace) -> int:
    from recon3d.cli.output import json_mode, one_line, show, stage_data, stage_note
    from recon3d.cli.sfm import config_from_args, frames_config_from_args
    from recon3d.core.log import QUIET, SETTINGS
    from recon3d.core.progress import progress
    from recon3d.pipeline import run as run_pipeline

    config = config_from_args(args)  # check options before any work
    frames = frames_config_from_args(args)
    result = run_pipeline(args.images, args.output, sfm=config, frames=frames, train=args.train, steps=args.steps,
                          train_device=args.train_device, overwrite=args.overwrite, progress=progress,
                          on_summary=lambda text: stage_note(args, text))
    if json_mode(args) or SETTINGS.level <= QUIET:  # otherwise every stage's summary is shown already
        last = result.stages.get("train") or result.stages.get("sfm")
        final = f"run: {result.workspace.root}: " + one_line(getattr(last, "summary", "") or "done")
        show(args, final, {"workspace": str(result.workspace.root), "method": result.method,
                           "stages": {name: stage_data(stage) for name, stage in result.stages.items()}})
    return 0
