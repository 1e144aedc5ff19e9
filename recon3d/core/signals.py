"""SIGTERM (``kill``, ``timeout``, ``docker stop``) handled like Ctrl-C.

:func:`sigterm_as_interrupt` makes SIGTERM raise :class:`Terminated`, a :class:`KeyboardInterrupt`,
so the paths that clean up after Ctrl-C run for it too: training saves its checkpoint, a stage leaves
no marker, temporary files are removed. pycolmap installs glog's failure-signal handler when it is
imported (it prints a native stack trace on SIGTERM and there is no switch to turn it off), so the
handler is installed again right after pycolmap's first import.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import signal
import sys
import threading
from typing import Iterator

EXIT_CODE = 128 + signal.SIGTERM
"""The exit status of a command stopped by SIGTERM (143)."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM while :func:`sigterm_as_interrupt` is in effect."""


class _State:
    received = False


def _handler(signum, frame):  # noqa: ARG001 - the signal module's signature
    if _State.received:  # a second SIGTERM during cleanup: let the cleanup finish
        return
    _State.received = True
    raise Terminated()


def _install() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Re-installs the handler once the named modules (glog users) have been imported."""

    def __init__(self, names: tuple[str, ...]):
        self.names = set(names)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        self.names.discard(fullname)
        if not self.names and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the other finders (this one skips the name now)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_install(module):
            try:
                exec_module(module)
            finally:
                if _State.active:
                    _install()

        loader.exec_module = exec_then_install  # on this loader instance only
        return spec


_State.active = False


@contextlib.contextmanager
def sigterm_as_interrupt(after_import: tuple[str, ...] = ("pycolmap",)) -> Iterator[None]:
    """For the block, SIGTERM raises :class:`Terminated` in the main thread (once; a second one is
    ignored while cleanup runs). The previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _State.received, _State.active = False, True
    hook = None
    pending = tuple(n for n in after_import if n not in sys.modules)
    if pending:
        hook = _AfterImport(pending)
        sys.meta_path.insert(0, hook)
    _install()
    try:
        yield
    finally:
        _State.active = False
        if hook is not None and hook in sys.meta_path:
            sys.meta_path.remove(hook)
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """For the block, Ctrl-C and SIGTERM wait until it ends and then act as they would have.

    Training wraps each optimiser update in it, so an interrupt never leaves the parameters half
    updated and the state it leaves can be saved as a checkpoint (exact resume). Main thread only
    (elsewhere it does nothing).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def record(signum, frame):  # noqa: ARG001 - the signal module's signature
        received.append(signum)

    for s in previous:
        signal.signal(s, record)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if received:
            signum, handler = received[0], previous[received[0]]
            if callable(handler):
                handler(signum, None)  # e.g. KeyboardInterrupt, or Terminated
            elif handler == signal.SIG_DFL:
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                signal.raise_signal(signum)
