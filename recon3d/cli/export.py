"""Export a workspace's results to other tools' formats.

  recon3d export ws --format splat-ply            # ws/splat/point_cloud.ply (standard 3DGS layout)
  recon3d export ws --format splat -o scene.splat # compact .splat for web viewers
  recon3d export ws --format nerfstudio -o ns/    # transforms.json + images for `ns-train`

Formats:
{formats}
"""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS: dict[str, tuple[str, str]] = {
    "splat-ply": ("recon3d.splat.export:export_ply", "Gaussian splats as a standard 3DGS point_cloud.ply"),
    "splat": ("recon3d.splat.export:export_splat", "Gaussian splats as a compact .splat file (web viewers)"),
    "nerfstudio": ("recon3d.io.nerfstudio:export_nerfstudio", "nerfstudio dataset: transforms.json + images"),
}
"""format -> ('module:function(workspace, output or None) -> Path', description)."""

__doc__ = __doc__.format(formats="\n".join(f"  {k:11s} {d}" for k, (_, d) in FORMATS.items()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace folder")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="what to write")
    parser.add_argument("-o", "--output", type=Path, help="output path (default: inside the workspace)")


def run(args: argparse.Namespace) -> int:
    from recon3d.core.registry import load_ref
    from recon3d.core.workspace import Workspace

    path = load_ref(FORMATS[args.format][0])(Workspace(args.workspace), args.output)
    print(f"wrote {path}")
    return 0
