"""Train a Gaussian splatting or NeRF model from a workspace's cameras (sparse/0) and images.

  recon3d train ws                          # Gaussian splatting: `splat` on a CUDA GPU, `splat-cpu` on CPU
  recon3d train ws --method nerf --steps 5000
  recon3d train ws --method splat-fast --device cpu --set ssim_lambda=0.1
  recon3d train ws --view                   # watch it live in the browser
  recon3d train ws --method splat-cpu --procs 2 --set batch_size=2   # 2 processes, one view each per step
  torchrun --nproc-per-node 2 -m recon3d train ws --set batch_size=2  # the same, started by torchrun

Methods:
{methods}

A rerun resumes from the last checkpoint; a finished run is skipped unless --overwrite, and trains
on from its last checkpoint when asked for more --steps (other changed settings need --overwrite).
Outputs go to ws/splat/ or ws/nerf/ with the resolved config beside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recon3d.core import registry
from recon3d.core.config import DEST, add_override_arguments

__doc__ = __doc__.format(methods="\n".join(f"  {m.name:12s} {m.description}" for m in registry.METHODS.values()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace folder with sparse/0 and images/")
    parser.add_argument("--method", default="auto", choices=["auto", *registry.METHODS],
                        help="method to train (default auto: splat on a CUDA GPU, splat-cpu on CPU, as `recon3d run`)")
    parser.add_argument("--steps", type=int, help="training steps (default: the method's)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"],
                        help="auto (default): CUDA when present, else CPU (slow; small scenes)")
    parser.add_argument("--procs", type=int, metavar="N",
                        help="splat: train with N processes, data parallel (each renders its share of the "
                             "batch_size views of a step; gloo on CPU, NCCL on GPUs); default 1")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier checkpoints and outputs")
    parser.add_argument("--view", action="store_true",
                        help="serve the live browser viewer while training (its URL is printed; it stops, "
                             "and the command exits, when training ends)")
    parser.add_argument("--host", default="127.0.0.1", help="viewer address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="viewer port (default 8080; 0: any free port)")
    add_override_arguments(parser, example="sh_degree=2", saved="ws/splat/config.yaml or ws/nerf/config.yaml of an earlier run")


CREATES_WORKSPACE = False
"""It reads an existing workspace: a missing one is reported, not created for the lock."""


def workspace_written(args: argparse.Namespace) -> Path | None:
    """The workspace this command writes (the CLI holds its lock, through --view too); None in the
    processes of rank > 0 of a torchrun launch, which write nothing (rank 0 holds the lock)."""
    from recon3d.splat.distributed import is_worker

    return None if is_worker() else args.workspace


def run(args: argparse.Namespace) -> int:
    from recon3d.core.workspace import Workspace

    ws = Workspace(args.workspace)
    ws.require_model()
    from recon3d.core.config import build_config
    from recon3d.pipeline import resolve_method

    method = resolve_method(args.method, args.device or "auto")
    if method != args.method and args.device is None:  # chosen for this machine: say which
        print(f"train: method {method} ({registry.get(method).description})", file=sys.stderr)
    flags = {k: v for k, v in (("device", args.device), ("steps", args.steps), ("procs", args.procs)) if v is not None}
    if "procs" in flags and registry.get(method).backend != "splat":
        from recon3d.core.errors import UserError

        raise UserError(f"--procs: only splat methods train over several processes, not {method}; leave it out")
    config = build_config(registry.make_config(method), getattr(args, DEST + "file"), flags,
                          getattr(args, DEST + "set"))  # preset < --config < --device/--steps < --set
    monitor = None
    if args.view:
        from recon3d.viewer.live import LiveViewer

        monitor = LiveViewer(ws, host=args.host, port=args.port)
    try:
        result = registry.stage_function(method)(config, ws, monitor=monitor, overwrite=args.overwrite)
    finally:
        if monitor is not None and hasattr(monitor, "close"):
            monitor.close()
    if not result.summary:  # a torchrun worker (rank > 0) has nothing to say
        return 0
    from recon3d.cli.output import show, stage_data

    show(args, result.summary, {"method": method, "workspace": str(ws.root), **stage_data(result)})
    return 0
