"""Export a workspace's results to other tools' formats.

  recon3d export ws --format splat-ply -o out.ply # standard 3DGS layout, SH degree 3 (INRIA's loader opens it)
  recon3d export ws --format splat-ply --sh-degree trained   # keep the trained SH degree
  recon3d export ws --format ply-compressed       # ws/splat/point_cloud.compressed.ply (SuperSplat)
  recon3d export ws --format splat -o scene.splat # compact .splat for web viewers
  recon3d export ws --format nerfstudio -o ns/    # transforms.json + images for `ns-train`
  recon3d export ws --format colmap-3.8-db        # ws/database-colmap-3.8.db for Debian's COLMAP 3.8

Formats:
{formats}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon3d.core import registry

__doc__ = __doc__.format(formats="\n".join(f"  {e.name:14s} {e.description}" for e in registry.EXPORTERS.values()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace folder")
    parser.add_argument("--format", required=True, choices=list(registry.EXPORTERS), help="what to write")
    parser.add_argument("-o", "--output", type=Path, help="output path (default: inside the workspace)")
    parser.add_argument("--sh-degree", metavar="D", choices=["0", "1", "2", "3", "trained"],
                        help="splat-ply: SH degree written (default 3: lower degrees zero-padded, as INRIA's 3DGS "
                             "loader expects; 'trained': the model's own)")


CREATES_WORKSPACE = False
"""It reads an existing workspace: a missing one is reported, not created for the lock."""


def workspace_written(args: argparse.Namespace) -> Path | None:
    """The workspace, when the export goes inside it (no -o); the CLI holds its lock."""
    return args.workspace if args.output is None else None


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.core.workspace import Workspace

    options = {}
    if args.sh_degree is not None:
        if args.format != "splat-ply":
            raise UserError(f"--sh-degree applies to --format splat-ply, not {args.format}; drop it")
        options["sh_degree"] = args.sh_degree
    path = registry.exporter(args.format)(Workspace(args.workspace), args.output, **options)
    from recon3d.cli.output import show

    show(args, f"wrote {path}", {"format": args.format, "path": str(path)})
    return 0
