"""Progress bars and terminal summaries shared by every stage."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", unit: str = "it", total: int | None = None, **kw) -> Iterable[T]:
    """A tqdm bar on stderr (hidden when stderr is not a terminal, e.g. in CI logs)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=None, dynamic_ncols=True,
                leave=False, file=sys.stderr, **kw)


def summary(title: str, rows: list[tuple[str, object]]) -> str:
    """A short aligned block for the end of a command: ``title`` then ``key: value`` lines."""
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def note(message: str) -> None:
    """One line for the person watching a long stage (on stderr, beside the progress bars)."""
    print(message, file=sys.stderr, flush=True)
