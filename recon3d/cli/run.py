"""The main job: photos (or the default scene) -> SfM -> evaluation -> training.

  recon3d run -o ws                         # render the default `orbit` scene into ws and reconstruct it
  recon3d run photos/ -o ws                 # your photos
  recon3d run photos/ -o ws --train none    # SfM and evaluation only
  recon3d run -o ws --train splat-fast --steps 2000

Stages, each skipped on a rerun when it has finished (unless --overwrite):
  1. scene (only without PHOTOS): render `orbit` with exact ground truth into ws (images/, gt/)
  2. sfm: features, matching, mapping, bundle adjustment -> ws/sparse/0, ws/reports/sfm.md
  3. eval: reprojection error, and pose error against ws/gt when present -> ws/reports/eval.json
  4. train: --train auto picks `splat` on a CUDA GPU and `splat-cpu` (a 160 px preview) on CPU; any preset of
     `recon3d train` can be named, or `none`. Missing training backends are skipped with a note.
Then open the result in the browser with `recon3d view ws`. The SfM options are those of
`recon3d sfm` (see `recon3d sfm --help`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

DEFAULT_SCENE = "orbit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recon3d.cli.sfm import add_sfm_options
    from recon3d.core.registry import METHODS

    parser.add_argument("images", type=Path, nargs="?",
                        help=f"folder of photos (default: render the `{DEFAULT_SCENE}` scene into the workspace)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="workspace folder (created if missing)")
    parser.add_argument("--train", default="auto", choices=["auto", "none", *METHODS],
                        help="training preset after SfM (default auto: splat on CUDA, splat-cpu on CPU; none: skip)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--train-device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="where training runs (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="redo every stage even if finished")
    add_sfm_options(parser)


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA install: train on CPU
        return False


def render_default_scene(ws, overwrite: bool) -> None:
    """Render the default scene into ``ws`` unless it is already there."""
    from recon3d.core.progress import progress
    from recon3d.scenes import load_spec, render_scene_cached

    spec = load_spec(DEFAULT_SCENE)
    if render_scene_cached(spec, ws.root, progress=progress, overwrite=overwrite or not ws.images.is_dir()) is None:
        print(f"scene: `{spec.name}` already rendered in {ws.root}")
        return
    print(f"scene: rendered `{spec.name}` ({spec.description}) into {ws.root}")


def train_stage(ws, method: str, steps: int | None, device: str, overwrite: bool) -> str:
    """Run the training preset ``method`` ('auto' resolved by the caller); returns a one-line status."""
    from recon3d.core import registry

    if not registry.available(method):
        module = registry.get(method).stage.split(":")[0]
        return f"train: skipped, the `{method}` backend ({module}) is not available in this install"
    config = registry.make_config(method)
    stage = registry.stage_function(method)
    changes = {}
    if steps is not None and hasattr(config, "steps"):
        changes["steps"] = steps
    if hasattr(config, "device"):
        changes["device"] = device
    if changes and dataclasses.is_dataclass(config):
        config = dataclasses.replace(config, **changes)
    out = stage(config, ws, monitor=None, overwrite=overwrite)
    return f"train: `{method}` finished" + (f", outputs in {out}" if out is not None else "")


def run(args: argparse.Namespace) -> int:
    from recon3d.cli.sfm import config_from_args
    from recon3d.core.progress import progress
    from recon3d.core.workspace import Workspace
    from recon3d.evaluate.report import evaluate_workspace, format_report
    from recon3d.sfm.pipeline import run_sfm

    config = config_from_args(args)  # check options before any work
    ws = Workspace(args.output)
    if args.images is None:
        render_default_scene(ws, args.overwrite)
    result = run_sfm(ws, args.images, config, overwrite=args.overwrite, progress=progress)
    if result.skipped:
        print(f"sfm: already done for these photos and options ({ws.model})")
    print(result.summary)
    sys.stdout.flush()

    if args.overwrite or not result.skipped or not ws.is_done("eval") or not (ws.reports / "eval.json").is_file():
        report = evaluate_workspace(ws)
        ws.mark_done("eval", None, {"report": ws.reports / "eval.json"})
    else:
        import json

        report = json.loads((ws.reports / "eval.json").read_text())
        print("eval: already done (reports/eval.json)")
    print(format_report(report))
    sys.stdout.flush()

    method = args.train
    if method == "auto":
        method = "splat" if _cuda() else "splat-cpu"
    if method == "none":
        print("train: skipped (--train none)")
    else:
        print(train_stage(ws, method, args.steps, args.train_device, overwrite=args.overwrite or not result.skipped))
    print(f"reports: {ws.reports / 'sfm.md'}, {ws.reports / 'eval.json'}")
    print(f"view it in the browser: recon3d view {ws.root}")
    return 0
