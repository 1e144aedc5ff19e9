"""Train a Gaussian splatting or NeRF model from a workspace's cameras (sparse/0) and images.

  recon3d train ws                          # Gaussian splatting (preset `splat`)
  recon3d train ws --method nerf --steps 5000
  recon3d train ws --method splat-fast --device cpu --set ssim_lambda=0.1
  recon3d train ws --view                   # watch it live in the browser

Methods (presets):
{presets}

A rerun resumes from the last checkpoint; a finished run is skipped unless --overwrite, and trains
on from its last checkpoint when asked for more --steps (other changed settings need --overwrite).
Outputs go to ws/splat/ or ws/nerf/ with the resolved config beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from recon3d.core.registry import PRESETS

__doc__ = __doc__.format(presets="\n".join(f"  {p.name:12s} {p.description}" for p in PRESETS.values()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace folder with sparse/0 and images/")
    parser.add_argument("--method", default="splat", choices=list(PRESETS), help="preset to train (default: splat)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto: CUDA when present, else CPU (slow; small scenes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field (repeatable), e.g. --set sh_degree=2")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier checkpoints and outputs")
    parser.add_argument("--view", action="store_true",
                        help="serve the live browser viewer while training (its URL is printed; it stops, "
                             "and the command exits, when training ends)")
    parser.add_argument("--host", default="127.0.0.1", help="viewer address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="viewer port (default 8080; 0: any free port)")


def apply_overrides(config, pairs: list[str]):
    """Config with ``KEY=VALUE`` overrides (values parsed as YAML) applied; unknown keys are errors."""
    from recon3d.core.config import from_dict, to_dict
    from recon3d.core.errors import UserError

    data = to_dict(config)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise UserError(f"--set {key}: {part!r} is not a config section")
            node = node[part]
        if parts[-1] not in node:
            raise UserError(f"--set {key}: unknown field; fields: {', '.join(node)}")
        node[parts[-1]] = yaml.safe_load(value)
    return from_dict(type(config), data, where="config")


def run(args: argparse.Namespace) -> int:
    from recon3d.core import registry as presets
    from recon3d.core.workspace import Workspace

    ws = Workspace(args.workspace)
    ws.require_model()
    config = presets.make_config(args.method)
    config = dataclasses.replace(config, device=args.device)
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    config = apply_overrides(config, args.set)
    monitor = None
    if args.view:
        from recon3d.viewer.live import LiveViewer

        monitor = LiveViewer(ws, host=args.host, port=args.port)
    try:
        result = presets.stage_function(args.method)(config, ws, monitor=monitor, overwrite=args.overwrite)
    finally:
        if monitor is not None and hasattr(monitor, "close"):
            monitor.close()
    print(result.summary)
    return 0
