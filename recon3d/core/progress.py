"""Progress bars, progress lines and terminal summaries shared by every stage (see :mod:`recon3d.core.log`)."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from recon3d.core.log import QUIET, SETTINGS, LineProgress, stderr_is_terminal, to_file

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", unit: str = "it", total: int | None = None,
             initial: int = 0, **kw) -> Iterable[T]:
    """Progress of a long stage: a tqdm bar on a terminal; elsewhere (a file, a pipe, CI logs) one line on
    stderr every ``SETTINGS.every`` seconds (step, rate, ETA and the stage's ``set_postfix`` values). The
    lines also go to the workspace log file; ``-q`` (:data:`~recon3d.core.log.QUIET`) hides both."""
    terminal = stderr_is_terminal()
    bar = None
    if terminal and SETTINGS.level > QUIET:
        from tqdm.auto import tqdm

        bar = tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, disable=None, dynamic_ncols=True,
                   leave=False, file=sys.stderr, **kw)
    return LineProgress(iterable, desc=desc, unit=unit, total=total, initial=initial, bar=bar, echo=not terminal)


def summary(title: str, rows: list[tuple[str, object]]) -> str:
    """A short aligned block for the end of a command: ``title`` then ``key: value`` lines."""
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def note(message: str) -> None:
    """One line for the person watching a long stage (on stderr, beside the progress bars; hidden by
    ``-q``), and in the workspace log file."""
    if SETTINGS.level > QUIET:
        print(message, file=sys.stderr, flush=True)
    to_file(message)
