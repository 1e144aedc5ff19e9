"""Logs for runs nobody watches: progress lines, the workspace log file, training curves.

On a terminal a long stage shows a tqdm bar. Redirected to a file (nohup, SLURM, CI, docker logs) a
bar shows nothing, so every stage that reports progress (:func:`recon3d.core.progress.progress`:
extraction, matching, mapping, training, stereo, ...) also prints one line every
:attr:`LogSettings.every` seconds on stderr::

    [22:51:07] splat: step 120/500 (24%)  loss 0.0412  psnr 21.30  gaussians 1200 | 4.1 step/s, ETA 1m32s

The same lines (and :func:`recon3d.core.progress.note` lines and the final summary) are appended
to ``WS/recon3d.log`` while a CLI command holds a workspace, terminal or not. Training stages also
write their curve to ``log.jsonl`` beside their outputs (:class:`TrainLog`), and TensorBoard events
when asked (``--log tensorboard``).

The settings are process-wide (:data:`SETTINGS`, changed with :func:`configure`); the CLI sets them
from ``--log-every``, ``-q``/``-v`` and ``--log``; ``RECON3D_LOG_EVERY`` sets the default interval.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

QUIET, NORMAL, VERBOSE = 0, 1, 2
LOG_FILE_NAME = "recon3d.log"


def _env_every() -> float:
    try:
        value = float(os.environ.get("RECON3D_LOG_EVERY", "30"))
    except ValueError:
        return 30.0
    return value if value > 0 else 30.0


@dataclass
class LogSettings:
    """How the process reports progress (one instance: :data:`SETTINGS`)."""

    every: float = 30.0
    """Seconds between two progress lines of a stage when stderr is not a terminal (and in the log file)."""
    level: int = NORMAL
    """QUIET (errors and the final line only), NORMAL or VERBOSE (debug logging too)."""
    tensorboard: bool = False
    """Training stages also write TensorBoard events (needs the ``tensorboard`` package)."""
    file: Path | None = None
    """The log file progress lines, notes and summaries are appended to, or None."""


SETTINGS = LogSettings(every=_env_every())
_FILE_LOCK = threading.Lock()


def configure(every: float | None = None, level: int | None = None, tensorboard: bool | None = None) -> LogSettings:
    """Change the process-wide settings (``None`` keeps a value); returns :data:`SETTINGS`."""
    if every is not None:
        if not every > 0:
            raise ValueError(f"log interval {every}: must be > 0 seconds")
        SETTINGS.every = float(every)
    if level is not None:
        SETTINGS.level = int(level)
    if tensorboard is not None:
        SETTINGS.tensorboard = bool(tensorboard)
    return SETTINGS


def glog_level(default: int = 2) -> int:
    """The ``minloglevel`` for C++ libraries that log through glog (pycolmap): 0 (everything) with ``-v``."""
    return 0 if SETTINGS.level >= VERBOSE else default


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


_HEADER: list[str] = []  # the header of the log file's next entry, written with its first line


def to_file(text: str) -> None:
    """Append ``text`` (one or more lines) to the log file, each line stamped with the time."""
    path = SETTINGS.file
    if path is None:
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    lines = "".join(f"{stamp} {line}\n" for line in [*_HEADER, *(str(text).splitlines() or [""])])
    with _FILE_LOCK:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(lines)
            _HEADER.clear()
        except FileNotFoundError:
            pass  # the folder is not made yet (a new workspace): lines until it is are on stderr only
        except OSError:
            SETTINGS.file = None  # a log that cannot be written must not stop the work


@contextlib.contextmanager
def log_file(folder: Path | str, command: str) -> Iterator[Path]:
    """Append this command's progress lines, notes and summary to ``folder/recon3d.log`` while the block
    runs, after a header line naming the command. The file is touched only when there is something to
    write, and a command refused for bad input (:class:`~recon3d.core.errors.UserError`) takes its lines
    back out: such a command leaves the folder as it was (its one-line error is on stderr)."""
    from recon3d.core.errors import UserError

    previous, header = SETTINGS.file, list(_HEADER)
    path = Path(folder) / LOG_FILE_NAME
    size = path.stat().st_size if path.is_file() else None
    SETTINGS.file = path
    _HEADER[:] = [f"==== {command} (pid {os.getpid()})"]
    try:
        yield path
    except UserError:
        with contextlib.suppress(OSError):
            if size is None:
                path.unlink(missing_ok=True)
            elif path.stat().st_size > size:
                os.truncate(path, size)
        raise
    finally:
        SETTINGS.file = previous
        _HEADER[:] = header


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    s = int(round(max(seconds, 0)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class LineProgress:
    """A progress report as plain lines: every :attr:`LogSettings.every` seconds, from a timer thread
    (so a stage blocked in one long call still says where it is), to stderr when ``echo`` and to the log
    file. Wraps an optional tqdm ``bar`` (the terminal's) and offers the tqdm calls stages use:
    iteration, ``update``, ``set_postfix``, ``set_description``, ``close``."""

    def __init__(self, iterable: Iterable | None, desc: str = "", unit: str = "it", total: int | None = None,
                 initial: int = 0, bar: Any = None, echo: bool = True):
        self.iterable, self.desc, self.unit, self.bar, self.echo = iterable, desc, unit, bar, echo
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.start = total, int(initial), int(initial)
        self.postfix: dict[str, Any] = {}
        self.t0 = time.monotonic()
        self.lines = 0
        self._stop = threading.Event()
        self._emitting = threading.Lock()
        self._thread: threading.Thread | None = None
        if echo or SETTINGS.file is not None:
            # the thread holds the bar weakly: a bar dropped without close() (an error mid-stage) stops it
            self._thread = threading.Thread(target=LineProgress._tick, args=(weakref.ref(self), self._stop),
                                            name=f"progress {desc}", daemon=True)
            self._thread.start()

    def __len__(self) -> int:
        return self.total or 0

    def __iter__(self):
        source = self.bar if self.bar is not None else self.iterable
        try:
            for item in source:
                yield item
                self.n += 1
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw) -> None:
        self.postfix = {**(ordered_dict or {}), **kw}
        if self.bar is not None:
            self.bar.set_postfix(self.postfix, refresh=refresh)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        if self.bar is not None:
            self.bar.set_description(desc, refresh=refresh)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self.bar is not None:
            self.bar.close()
        with self._emitting:  # a tick still writing has counted its line once this is acquired
            reported = self.lines
        if reported:  # a stage that reported along the way also says when it ended
            self.emit(final=True)

    def line(self, final: bool = False) -> str:
        """The progress line: ``desc: unit n/total (pct)  postfix | rate, ETA``."""
        elapsed = time.monotonic() - self.t0
        done = self.n - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        head = f"{self.desc}: {self.unit} {count}{pct}" if self.unit == "step" else f"{self.desc}: {count} {self.unit}{pct}"
        extra = "".join(f"  {k.replace('_', ' ')} {v}" for k, v in self.postfix.items())
        tail = f"{rate:.3g} {self.unit}/s"
        if final:
            tail += f", done in {duration(elapsed)}"
        elif self.total and rate > 0:
            tail += f", ETA {duration((self.total - self.n) / rate)}"
        else:
            tail += f", {duration(elapsed)} so far"
        return f"{head}{extra} | {tail}"

    def emit(self, final: bool = False) -> None:
        # One line at a time, in order: a timer tick that races close() either ends its line before the
        # final one or is dropped (CI saw a tick and the final line interleaved on one line under load).
        with self._emitting:
            if not final and self._stop.is_set():
                return
            text = self.line(final)
            self.lines += 1
            if self.echo and SETTINGS.level > QUIET:
                sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")  # one write: the line and its end
                sys.stderr.flush()
            to_file(text)

    @staticmethod
    def _tick(ref: "weakref.ref[LineProgress]", stop: threading.Event) -> None:
        while not stop.wait(SETTINGS.every):
            bar = ref()
            if bar is None:
                return
            bar.emit()
            del bar


class TrainLog:
    """A training curve: ``folder/log.jsonl`` (one ``{"step", "time", metrics...}`` object a line, flushed
    as written) and, when :attr:`LogSettings.tensorboard`, TensorBoard events in ``folder/tensorboard/``.

    A run resumed at ``start_step`` keeps the lines up to that step and appends after them, so a curve
    has each step once, in order, across interruptions; a fresh run (``start_step`` 0) starts it anew.
    """

    def __init__(self, folder: Path | str, start_step: int = 0):
        self.path = Path(folder) / "log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._kept(start_step)
        from recon3d.core.atomic import atomic_write_text

        atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.fh = open(self.path, "a", encoding="utf-8")
        self.last_step = start_step
        self.tb = None
        if SETTINGS.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # needs the tensorboard package; purge_step: events of an interrupted run past the checkpoint are dropped by TensorBoard
            self.tb = SummaryWriter(str(Path(folder) / "tensorboard"), purge_step=start_step or None)

    def _kept(self, start_step: int) -> list[str]:
        if start_step <= 0 or not self.path.is_file():
            return []
        kept = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                step = int(json.loads(line)["step"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill
            if step <= start_step and (not kept or step > kept[-1][0]):
                kept.append((step, line))
        return [line for _, line in kept]

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append the scalars of ``step`` (later than any logged; others are ignored)."""
        if step <= self.last_step:
            return
        self.last_step = step
        values = {k: v if isinstance(v, int) else float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.fh.write(json.dumps({"step": int(step), "time": round(time.time(), 3), **values}) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)
            self.tb.flush()

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()

    def __enter__(self) -> "TrainLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
