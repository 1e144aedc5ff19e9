"""Open a workspace in the browser viewer: cameras, sparse points, splats, stereo clouds, renders.

  recon3d view ws                  # then open http://127.0.0.1:8080 in a browser
  recon3d view ws --port 8081      # another port (--port 0: any free one; the URL is printed)

What you see (each layer toggles in the "Layers" panel; big sets are subsampled, counts shown):
  cameras       frustums with photo thumbnails; click one to fly there and see its photo (the view
                opens at one; while it looks through a camera, the frustums around it are hidden)
  sparse points coloured by RGB or by reprojection error (legend), from sparse/0
  splats        Gaussian splats from splat/point_cloud.ply (after `recon3d train`)
  stereo        point clouds stereo/*.ply (after `recon3d stereo`)
  ground truth  cameras of gt/sparse/0, aligned to the model (synthetic scenes)
  reports       numbers from reports/sfm.json, reports/eval.json, splat/ and nerf/metrics.json
  render        of your current view by the trained NeRF (else splats), on demand

The server binds 127.0.0.1 (this machine only) unless --host says otherwise and serves only the
viewer page. Ctrl+C stops it. To watch training live use `recon3d train ws --view`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", type=Path, help="workspace folder with sparse/0 (and optionally splat/, stereo/, gt/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--max-points", type=_positive, default=300_000, metavar="N",
                        help="most points drawn per point layer; more are subsampled (default 300000)")
    parser.add_argument("--max-splats", type=_positive, default=1_000_000, metavar="N",
                        help="most Gaussians sent to the browser; more are subsampled (default 1000000)")


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.core.progress import progress, summary
    from recon3d.core.signals import Terminated
    from recon3d.core.workspace import Workspace
    from recon3d.viewer.app import ViewerApp, ViewerConfig, WorkspaceContent
    from recon3d.viewer.server import server_url, start_server, stop_server

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a port number; use 1024-65535 (or 0 for any free port)")
    ws = Workspace(args.workspace)
    content = WorkspaceContent.load(ws)
    config = ViewerConfig(max_points=args.max_points, max_splats=args.max_splats)
    server = start_server(args.host, args.port)
    try:
        url = server_url(args.host, server.get_port())
        print(f"recon3d view: serving {ws.root} at {url} (open it in a browser; Ctrl+C to stop)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"recon3d view: note: bound to {args.host}, so other machines on the network can see this workspace",
                  file=sys.stderr, flush=True)
        rows = ViewerApp(server, content, config).build(progress=progress)
        print(summary(f"recon3d view: showing {ws.root}", rows), flush=True)
        while True:
            time.sleep(3600)
    except Terminated:
        raise  # the CLI's SIGTERM line and exit 143, as for every command
    except KeyboardInterrupt:
        print("recon3d view: stopped", flush=True)
        return 0
    finally:
        stop_server(server)
