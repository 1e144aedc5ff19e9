"""The ``recon3d`` command line: a thin layer over the stage functions.

Each subcommand lives in ``recon3d/cli/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports happen inside ``run`` so ``--help`` stays fast. Errors a
user can act on (:class:`~recon3d.errors.UserError`) print one line and exit non-zero; set
``RECON3D_DEBUG=1`` to see tracebacks of unexpected errors. Ctrl-C and SIGTERM stop a command the
same way (checkpoints kept, no stage marker), one line, exit 130 and 143.

A module that writes a workspace defines ``workspace_written(args) -> Path | None``: ``main`` holds
that workspace's lock (:meth:`recon3d.core.workspace.Workspace.lock`) while the command runs, so a
second command writing it stops at once (exit 2) naming the first, and appends the command's progress
lines, notes and summary to ``WS/recon3d.log`` (:func:`recon3d.core.log.log_file`).

Every command also takes the options of :mod:`recon3d.cli.output` (-q, -v, --log-every; --json where
a command ends with a result; --log for training) and ends with :func:`recon3d.cli.output.show`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import shlex
import sys
from typing import Iterator

from recon3d import __version__
from recon3d.cli.output import add_common_arguments, finish, session
from recon3d.core.errors import UserError
from recon3d.core.log import log_file
from recon3d.core.signals import EXIT_CODE as TERMINATED_EXIT
from recon3d.core.signals import Terminated, sigterm_as_interrupt

COMMANDS: list[tuple[str, str, str]] = [
    ("run", "run", "the main job: photos (or the default scene) -> SfM -> evaluation -> training"),
    ("scene", "scene", "render or list synthetic scenes with exact ground truth"),
    ("calibrate", "calibrate", "camera intrinsics and distortion from checkerboard photos (mono or stereo)"),
    ("undistort", "undistort", "undistort photos with a camera.json"),
    ("frames", "frames", "choose sharp, distinct frames of a video and write them as photos"),
    ("sfm", "sfm", "structure from motion: features, matching, mapping, bundle adjustment"),
    ("epipolar", "epipolar", "F, E, H, relative pose and a picture of epipolar lines for two photos"),
    ("eval", "evaluate", "reprojection error, and pose error against ground truth, of a workspace"),
    ("train", "train", "train a Gaussian splatting or NeRF model from a workspace's cameras"),
    ("render", "render", "render views or a camera path from a trained model"),
    ("export", "export", "export splats, or a nerfstudio dataset, from a workspace"),
    ("import-nerfstudio", "import_nerfstudio", "make a workspace from a nerfstudio transforms.json"),
    ("view", "view", "open a workspace in the browser viewer (cameras, points, splats, renders)"),
    ("stereo", "stereo", "stereo depth: rectification, disparity, depth, point clouds, fusion"),
    ("eval-stereo", "eval_stereo", "disparity and depth error of a stereo result against ground truth"),
    ("completion", "completion", "print a shell completion script: `recon3d completion bash` (or zsh)"),
]


def _placeholder(name: str):
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        raise UserError(f"`recon3d {name}` is not available in this version yet; see `recon3d --help` for what is")

    return add_arguments, run


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors (a bad flag, a value out of range) are one line, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="recon3d",
        description="recon3d: from a folder of photos to calibrated cameras, bundle-adjusted SfM, "
        "Gaussian splats, NeRFs and stereo depth, with evaluation and a browser viewer. "
        "Every command reads and writes a workspace folder (images/, database.db, sparse/0/, splat/, "
        "nerf/, stereo/, reports/) that COLMAP and gsplat can read too.",
        epilog="Start with `recon3d run -o ws` (renders the default scene and reconstructs it). "
        "`recon3d COMMAND --help` explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"recon3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=_Parser)
    for name, module, help_text in COMMANDS:
        try:
            mod = importlib.import_module(f"recon3d.cli.{module}")
            add_arguments, run = mod.add_arguments, mod.run
            writes = getattr(mod, "workspace_written", None)
            creates = getattr(mod, "CREATES_WORKSPACE", True)
            description = mod.__doc__ or help_text
        except ModuleNotFoundError as exc:
            if exc.name != f"recon3d.cli.{module}":
                raise
            add_arguments, run = _placeholder(name)
            writes, creates = None, True
            description = help_text + " (not available yet)"
        p = sub.add_parser(name, help=help_text, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p)
        add_common_arguments(p, name)
        p.set_defaults(func=run, workspace_written=writes, creates_workspace=creates, root_parser=parser)
    return parser


@contextlib.contextmanager
def _workspace_lock(args: argparse.Namespace, command_line: str) -> Iterator[None]:
    """Hold the lock of the workspace the command writes (``workspace_written(args)`` of its module)."""
    writes = getattr(args, "workspace_written", None)
    root = writes(args) if writes is not None else None
    if root is None or (not getattr(args, "creates_workspace", True) and not os.path.isdir(root)):
        yield  # nothing to lock: a command that needs an existing workspace says it is missing
        return
    from recon3d.core.workspace import Workspace

    with Workspace(root).lock(command_line) as lock:
        if lock is not None and lock.note:
            print(f"recon3d {args.command}: note: {lock.note}", file=sys.stderr)
        with log_file(root, command_line) if lock is not None else contextlib.nullcontext():
            yield  # progress lines, notes and the summary also go to WS/recon3d.log


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    command_line = " ".join(["recon3d", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    code, error = _run(args, command_line)
    finish(args, code, error)
    return code


def _run(args: argparse.Namespace, command_line: str) -> tuple[int, str | None]:
    """Run the command: (exit status, the one-line error or None)."""
    try:
        with sigterm_as_interrupt(), session(args), _workspace_lock(args, command_line):
            return int(args.func(args) or 0), None
    except UserError as exc:
        return _fail(args.command, str(exc), exc.exit_code)
    except Terminated:
        return _fail(args.command, "stopped (SIGTERM); rerun the same command to resume", TERMINATED_EXIT, "")
    except OSError as exc:
        msg = os_error_line(exc)
        if msg is None:
            return _internal_error(args.command, exc)
        return _fail(args.command, msg, 2)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted; rerun the same command to resume", 130, "")
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        return _internal_error(args.command, exc)


def _fail(command: str, message: str, code: int, kind: str = "error: ") -> tuple[int, str]:
    print(f"recon3d {command}: {kind}{message}", file=sys.stderr)
    return code, message


def _internal_error(command: str, exc: BaseException) -> tuple[int, str]:
    if os.environ.get("RECON3D_DEBUG"):
        raise exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return _fail(command, f"{type(exc).__name__}: {first} "
                          "(rerun with RECON3D_DEBUG=1 for the traceback, and please report it)", 1, "internal error: ")


def os_error_line(exc: OSError) -> str | None:
    """One line naming the path and the fix for an OSError a user can act on (no permission, a
    read-only, immutable or full disk); ``None`` for others (internal errors)."""
    fixes = {
        errno.EACCES: "give yourself access (chmod u+rw; chattr -i when immutable) or choose another folder",
        errno.EPERM: "an immutable or append-only file? (`lsattr`, `chattr -i`); make it writable or choose "
                     "another output folder",
        errno.EROFS: "the file system is read-only; choose an output folder on a writable disk",
        errno.ENOSPC: "the disk is full; free some space or choose an output folder on another disk",
        errno.EDQUOT: "the disk quota is used up; free some space or choose another output folder",
    }
    fix = fixes.get(exc.errno)
    if fix is None:
        return None
    paths = [p for p in (exc.filename, exc.filename2) if p]
    where = " -> ".join(str(os.fsdecode(p)) for p in paths) if paths else "an output file"
    return f"{where}: {exc.strerror or type(exc).__name__}; {fix}"
