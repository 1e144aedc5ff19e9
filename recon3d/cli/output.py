"""Options every command shares (-q, -v, --json, --log-every, --log) and how a command shows its result.

A command ends with :func:`show` (its summary and the data behind it). By default the summary goes to
stdout; with ``-q`` only its first line (the rest folded into it); with ``--json`` one JSON object goes
to stdout and nothing else (:func:`session` points stdout, Python's and file descriptor 1, at stderr
while the command runs, so progress, notes and even C++ libraries' prints cannot mix into it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from recon3d.core.errors import UserError
from recon3d.core.log import NORMAL, QUIET, SETTINGS, VERBOSE, configure, to_file

TRAINING_COMMANDS = ("train", "run")
"""Commands that train a model: they take ``--log tensorboard``."""
JSON_COMMANDS = ("run", "frames", "scene", "calibrate", "undistort", "sfm", "train", "render", "export", "import-nerfstudio",
                 "stereo")
"""Commands whose result --json prints (eval, epipolar and eval-stereo have their own --json)."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: must be > 0 seconds")
    return value


def add_common_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add -q/-v, --log-every, --json (to the commands of :data:`JSON_COMMANDS`) and, for training commands,
    --log. A command with actions (``scene list|render``) gets them on each action."""
    for action in parser._actions:
        if isinstance(getattr(action, "choices", None), dict):
            for sub in action.choices.values():
                add_common_arguments(sub, command)
            return
    group = parser.add_argument_group("output and logs")
    loud = group.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=QUIET,
                      help="print only errors and the final line")
    loud.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=VERBOSE,
                      help="also print debug messages (and pycolmap's log)")
    group.add_argument("--log-every", type=_seconds, metavar="SECONDS",
                       help="seconds between progress lines when the output is not a terminal (a file, a pipe, "
                            "CI); default 30, or $RECON3D_LOG_EVERY. They also go to WS/recon3d.log")
    parser.set_defaults(json_by_cli=command in JSON_COMMANDS)
    if command in JSON_COMMANDS:
        group.add_argument("--json", action="store_true",
                           help="print one JSON object (the result) on stdout and nothing else; progress and "
                                "messages go to stderr")
    if command in TRAINING_COMMANDS:
        group.add_argument("--log", choices=["jsonl", "tensorboard"], default="jsonl",
                           help="training curves: jsonl (default) writes WS/splat/log.jsonl or WS/nerf/log.jsonl; "
                                "tensorboard also writes TensorBoard events to WS/<method>/tensorboard/ "
                                "(needs `pip install tensorboard`)")


def json_mode(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False) and getattr(args, "json_by_cli", False))


@contextlib.contextmanager
def session(args: argparse.Namespace) -> Iterator[None]:
    """Apply the shared options while a command runs; restore the settings after."""
    saved = (SETTINGS.every, SETTINGS.level, SETTINGS.tensorboard)
    tensorboard = getattr(args, "log", None) == "tensorboard"
    if tensorboard:
        try:
            import tensorboard as _  # noqa: F401 - only whether it imports
        except ImportError:
            raise UserError("--log tensorboard needs the tensorboard package, which is not installed; "
                            "`pip install tensorboard`, or leave out --log tensorboard (log.jsonl is always written)")
    level = getattr(args, "verbosity", None)
    configure(every=getattr(args, "log_every", None), level=NORMAL if level is None else level, tensorboard=tensorboard)
    root = logging.getLogger()
    old_level = root.level
    handler = None
    if SETTINGS.level >= VERBOSE:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)  # other libraries' debug chatter (PIL, matplotlib) stays out
        logging.getLogger("recon3d").setLevel(logging.DEBUG)
    try:
        if json_mode(args):
            with _stdout_to_stderr():
                yield
        else:
            yield
    finally:
        SETTINGS.every, SETTINGS.level, SETTINGS.tensorboard = saved
        if handler is not None:
            root.removeHandler(handler)
            root.setLevel(old_level)
            logging.getLogger("recon3d").setLevel(logging.NOTSET)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved_fd = None
    try:
        if sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2:
            saved_fd = os.dup(1)
            os.dup2(2, 1)
    except (AttributeError, OSError, ValueError):  # a captured stream (tests): Python-level only
        saved_fd = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return None  # objects JSON cannot carry (a pycolmap.Reconstruction, ...)


def dumps(data: Any) -> str:
    """``data`` as strict JSON (paths as strings, numpy as lists, NaN and infinity as null)."""
    return json.dumps(_finite(json.loads(json.dumps(data, default=_plain))), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def stage_data(result: Any) -> dict[str, Any]:
    """A JSON-able dict of a :class:`~recon3d.core.workspace.StageResult` (or a result with the same fields):
    skipped, outputs (paths), summary, the stage's ``data`` when a dict or list, and the JSON reports it wrote
    (``reports``: each output ``.json`` file's content, e.g. ``metrics.json``)."""
    outputs = getattr(result, "outputs", None) or {}
    out: dict[str, Any] = {"skipped": bool(getattr(result, "skipped", False)),
                           "outputs": {str(k): str(v) for k, v in outputs.items()},
                           "summary": getattr(result, "summary", "") or ""}
    data = getattr(result, "data", None)
    if isinstance(data, (dict, list)):  # a report (not objects such as a calibration result)
        out["data"] = json.loads(json.dumps(data, default=_plain))
    reports = {}
    for name, path in outputs.items():
        path = Path(path)
        if path.suffix == ".json" and path.is_file() and path.stat().st_size < 4 << 20:
            try:
                reports[str(name)] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
    if reports:
        out["reports"] = reports
    return out


def one_line(text: str) -> str:
    """A summary block folded into one line: ``title: key value; key value``."""
    lines = [" ".join(line.split()) for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] + (" | " + "; ".join(lines[1:]) if len(lines) > 1 else "")


def show(args: argparse.Namespace, summary: str, data: dict[str, Any] | None = None,
         quiet_text: str | None = None) -> None:
    """End a command: ``summary`` for a person (stdout; with -q ``quiet_text``, by default the summary in one
    line; stderr with --json) and ``data`` for --json (``{"command": ..., **data}``, printed by
    :func:`finish`). Also appended to the log file."""
    to_file(summary)
    if json_mode(args):
        args.json_result = {"command": args.command, **(data or {})}  # the summary is in it
        return
    if SETTINGS.level <= QUIET:
        print(one_line(summary) if quiet_text is None else quiet_text, flush=True)
    elif summary:
        print(summary, flush=True)


def stage_note(args: argparse.Namespace, text: str) -> None:
    """The summary of one stage of a multi-stage command (``run``): shown as it finishes (stderr with
    --json, nothing with -q), and in the log file."""
    to_file(text)
    if SETTINGS.level > QUIET:
        print(text, flush=True)  # under --json, stdout is stderr until the end


def finish(args: argparse.Namespace, exit_code: int, error: str | None = None) -> None:
    """With --json: print the one JSON object on stdout (the result, or the error and exit code)."""
    if not json_mode(args):
        return
    if error is not None:
        payload = {"command": args.command, "error": error, "exit_code": exit_code}
    else:
        payload = getattr(args, "json_result", None) or {"command": args.command}
        payload = {**payload, "exit_code": exit_code}
    sys.stdout.write(dumps(payload) + "\n")
    sys.stdout.flush()
