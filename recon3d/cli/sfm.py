"""Structure from motion: a folder of photos to cameras and sparse points (a COLMAP model).

  recon3d sfm photos/ -o ws                       # SIFT, exhaustive matching, incremental mapping + BA
  recon3d sfm photos/ -o ws --mapper global       # global SfM (GLOMAP) instead
  recon3d sfm photos/ -o ws --camera camera.json  # known intrinsics (from `recon3d calibrate`) as a prior
  recon3d sfm photos/ -o ws --camera camera.json --fixed-intrinsics
  recon3d sfm frames/ -o ws --matching sequential --overlap 15      # video-like folders
  recon3d sfm clip.mp4 -o ws --num-frames 150     # a video: sharp frames, sequential matching + loop detection
  recon3d sfm many/ -o ws --matching retrieval --retrieval-images 30  # large unordered sets (auto over 150)
  recon3d sfm photos/ -o ws --peak-threshold 0.002 --max-features 32768   # low-texture objects
  recon3d sfm photos/ -o ws --set mapping.pycolmap_options.mapper.init_max_error=6   # any pycolmap option
  recon3d sfm photos/ -o ws2 --config ws/sparse/config.yaml   # repeat the run that made ws
  recon3d sfm photos/ -o ws --reuse-database      # features of a ws/database.db made by COLMAP or hloc

Writes ws/images/ (the photos, names kept), ws/database.db (features and matches),
ws/sparse/0/{cameras,images,points3D}.bin + points.ply (the largest model; further models in
sparse/1, ...), ws/sparse/config.yaml (the resolved config, every setting; --config reads it back)
and ws/reports/sfm.{json,md} with plots (reprojection error per photo, track lengths,
observations per photo, matches graph). Every photo left out is named with the reason.

A rerun reuses the features and matches in database.db and skips mapping when the photos and
options are unchanged (--overwrite maps again). Exit status: 0 done, 2 bad input (no or too few
readable photos, bad options), 3 the photos cannot be reconstructed (e.g. they share no content).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_sfm_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `recon3d sfm` and `recon3d run`: one per field of :class:`recon3d.sfm.config.SfmConfig`,
    plus --config and --set."""
    from recon3d.core.config import add_config_arguments
    from recon3d.sfm.config import SfmConfig

    add_config_arguments(parser, SfmConfig, title="camera and shared settings",
                         example="mapping.min_num_matches=10", saved="the WS/sparse/config.yaml a run wrote")


def add_frames_options(parser: argparse.ArgumentParser) -> None:
    """The options of :class:`recon3d.sfm.frames.FramesConfig` (frame selection from a video)."""
    from recon3d.core.config import add_config_arguments
    from recon3d.sfm.frames import FramesConfig

    add_config_arguments(parser, FramesConfig, title="video input (frame selection; used when the input is a video)",
                         overrides=False)


def _split(args: argparse.Namespace) -> tuple[argparse.Namespace, dict]:
    """(the arguments less the frame-selection flags, those flags as {field: value})."""
    import dataclasses

    from recon3d.core.config import DEST
    from recon3d.sfm.frames import FramesConfig

    names = {DEST + f.name for f in dataclasses.fields(FramesConfig)}
    values = vars(args)
    rest = argparse.Namespace(**{k: v for k, v in values.items() if k not in names})
    return rest, {k[len(DEST):]: v for k, v in values.items() if k in names}


def config_from_args(args: argparse.Namespace):
    """The :class:`recon3d.sfm.config.SfmConfig` of parsed options (defaults < --config < flags < --set)."""
    from recon3d.core.config import config_from_args as build
    from recon3d.sfm.config import SfmConfig

    return build(SfmConfig, _split(args)[0])


def frames_config_from_args(args: argparse.Namespace):
    """The :class:`recon3d.sfm.frames.FramesConfig` of parsed options (its flags, else its defaults)."""
    from recon3d.core.config import build_config
    from recon3d.sfm.frames import FramesConfig

    return build_config(FramesConfig, flags=_split(args)[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="?",
                        help="folder of photos, or a video (default: the workspace's images/ folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="workspace folder (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="map again even if this result exists")
    parser.add_argument("--reuse-database", action="store_true",
                        help="use the features (and matches) of a WS/database.db made by COLMAP, hloc or other "
                             "options, when its images are these photos (names, sizes); else it is moved aside")
    add_sfm_options(parser)
    add_frames_options(parser)


def workspace_written(args: argparse.Namespace) -> Path:
    """The workspace this command writes (the CLI holds its lock)."""
    return args.output


def run(args: argparse.Namespace) -> int:
    from recon3d.cli.output import show, stage_data, stage_note
    from recon3d.core.progress import progress
    from recon3d.core.workspace import Workspace
    from recon3d.io.video import is_video_input
    from recon3d.sfm.pipeline import run_sfm

    config = config_from_args(args)
    frames = frames_config_from_args(args)
    ws = Workspace(args.output)
    images = args.images
    if images is not None and is_video_input(images):
        from recon3d.sfm.frames import frames_stage, video_sfm_config

        extracted = frames_stage(ws, images, frames, overwrite=args.overwrite, progress=progress)
        stage_note(args, extracted.summary)
        images, config = extracted.outputs["frames"], video_sfm_config(config)
    result = run_sfm(ws, images, config, overwrite=args.overwrite, progress=progress,
                     reuse_database=args.reuse_database)

    text = result.summary
    if result.skipped:
        text = (f"{ws.model}: already reconstructed from these photos with these options "
                f"(use --overwrite to map again)\n{text}")
    show(args, text, {"workspace": str(ws.root), **stage_data(result)})
    return 0
