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

from recon3d.core import registry

__doc__ = __doc__.format(formats="\n".join(f"  {e.name:11s} {e.description}" for e in registry.EXPORTERS.values()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace folder")
    parser.add_argument("--format", required=True, choices=list(registry.EXPORTERS), help="what to write")
    parser.add_argument("-o", "--output", type=Path, help="output path (default: inside the workspace)")


CREATES_WORKSPACE = False
"""It reads an existing workspace: a missing one is reported, not created for the lock."""


def workspace_written(args: argparse.Namespace) -> Path | None:
    """The workspace, when the export goes inside it (no -o); the CLI holds its lock."""
    return args.workspace if args.output is None else None


def run(args: argparse.Namespace) -> int:
    from recon3d.core.workspace import Workspace

    path = registry.exporter(args.format)(Workspace(args.workspace), args.output)
    from recon3d.cli.output import show

    show(args, f"wrote {path}", {"format": args.format, "path": str(path)})
    return 0
