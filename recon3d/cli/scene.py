"""Render or list synthetic scenes with exact ground truth.

  recon3d scene list
  recon3d scene render orbit -o ws/orbit          # photos + true COLMAP model + depth
  recon3d scene render my_scene.yaml -o out       # your own spec (see scenes/*.yaml)
  recon3d scene render orbit -o ws --with-sparse  # also put the true model in sparse/0

A multi-view scene writes images/, gt/sparse/0/ (COLMAP text), gt/depth/*.npy (float32 z-depth,
inf where no surface) and scene.yaml; stereo and checkerboard scenes write their own layouts
(see `recon3d/scenes/stereo.py` and `board.py`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the shipped scenes")
    r = sub.add_parser("render", help="render a scene into a folder")
    r.add_argument("scene", help="a shipped scene name (see `recon3d scene list`) or a path to a .yaml spec")
    r.add_argument("-o", "--output", required=True, type=Path, help="output folder (a workspace)")
    r.add_argument("--with-sparse", action="store_true",
                   help="also write the true model as sparse/0 (binary), to train without running SfM")
    r.add_argument("--overwrite", action="store_true", help="render again even if the folder holds this scene")


def workspace_written(args: argparse.Namespace) -> Path | None:
    """The folder `scene render` writes (the CLI holds its lock); None for `scene list`."""
    return args.output if args.action == "render" else None


def run(args: argparse.Namespace) -> int:
    from recon3d.cli.output import show, stage_data
    from recon3d.core.progress import progress
    from recon3d.core.workspace import Workspace
    from recon3d.scenes import (
        list_scenes,
        load_spec,
        render_scene_cached,
        write_gt_as_sparse,
    )

    if args.action == "list":
        specs = {name: (path, load_spec(path)) for name, path in list_scenes().items()}
        text = "\n".join(f"{name:14s} {spec.description}" for name, (_, spec) in specs.items())
        show(args, text, quiet_text=text, data={"action": "list", "scenes": [{"name": name, "kind": spec.kind, "description": spec.description,
                                            "path": str(path)} for name, (path, spec) in specs.items()]})
        return 0
    spec = load_spec(args.scene)
    ws = Workspace(args.output)
    if args.with_sparse and spec.kind != "multiview":
        from recon3d.core.errors import UserError

        raise UserError(f"--with-sparse needs a multi-view scene; {spec.name!r} is a {spec.kind} scene")
    result = render_scene_cached(spec, args.output, progress=progress, overwrite=args.overwrite)
    text, data = result.summary, {"action": "render", "scene": spec.name, "kind": spec.kind, **stage_data(result)}
    if args.with_sparse:
        data["sparse"] = str(write_gt_as_sparse(ws))
        text += f"\ntrue model written to {data['sparse']}"
    show(args, text, data)
    return 0
