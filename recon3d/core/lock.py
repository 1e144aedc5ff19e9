"""One writer per workspace: ``WS/.recon3d.lock``, held with ``fcntl.flock`` by the command writing it.

Every command that writes a workspace holds its lock for as long as it runs (:meth:`Workspace.lock
<recon3d.core.workspace.Workspace.lock>`); a second one stops at once with a :class:`UserError`
(exit 2) naming the holder, before writing anything. The lock file holds the holder's pid, command
line and start time (JSON). The operating system drops a ``flock`` when its process dies, so a
process killed with ``kill -9`` leaves no lock in effect; its lock file remains, names a dead pid,
and the next command takes it over with a note (:attr:`WorkspaceLock.taken_over`).

Within one process the lock is re-entrant: ``recon3d.run`` takes it, and the stages it calls may
take it again without waiting for themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from recon3d.core.atomic import remove_stale_temporaries
from recon3d.core.errors import UserError

LOCK_NAME = ".recon3d.lock"
"""The lock file's name inside a workspace."""


@dataclass
class WorkspaceLock:
    """The lock a command holds on a workspace."""

    path: Path
    command: str
    taken_over: dict | None = None
    """The lock file a process that died left behind (its ``pid``, ``command``, ``since``), or None."""

    @property
    def note(self) -> str:
        """One line about a lock taken over from a dead process ('' when none)."""
        old = self.taken_over
        if not old:
            return ""
        return (f"{self.path.parent}: took over the lock left by `{old.get('command', '?')}` "
                f"(pid {old.get('pid', '?')}, no longer running)")


_held: dict[str, list] = {}  # resolved lock path -> [open file, WorkspaceLock, depth]
_guard = threading.Lock()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read(path: Path) -> dict:
    """The holder's record; retried briefly, as a holder writes it just after taking the lock."""
    for _ in range(20):
        try:
            data = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            return data
        time.sleep(0.025)
    return {}


def _make_root(root: Path) -> list[Path]:
    """Create ``root`` (and missing parents); returns the folders made, deepest last."""
    made: list[Path] = []
    for folder in reversed([root, *root.parents]):
        if folder.exists():
            continue
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        made.append(folder)
    return made


def _busy(root: Path, holder: dict) -> UserError:
    since = holder.get("since", "")
    since = since.split("T")[-1] if since else "?"
    who = f"`{holder['command']}`" if holder.get("command") else "another recon3d command"
    return UserError(f"{root} is in use by {who} (pid {holder.get('pid', '?')}, since {since}); "
                     "wait for it to finish or stop it", exit_code=2)


@contextlib.contextmanager
def workspace_lock(root: Path, command: str) -> Iterator[WorkspaceLock | None]:
    """Hold the lock on the workspace ``root`` (created if missing) for the block.

    Yields the :class:`WorkspaceLock`, or None when ``root`` cannot hold a lock file (it is a file,
    or cannot be created): the command then reports that problem itself. Raises a
    :class:`UserError` (exit 2) naming the holder when another process holds the lock. On release
    the lock file, and folders the lock alone made, are removed.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield None
        return
    root = Path(root)
    if root.exists() and not root.is_dir():
        yield None
        return
    try:
        made = _make_root(root)
    except OSError:
        yield None
        return
    path = root / LOCK_NAME
    key = str(path.resolve())
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[2] += 1
    if entry is not None:  # this process holds it already (recon3d.run -> its stages)
        try:
            yield entry[1]
        finally:
            with _guard:
                entry[2] -= 1
        return

    handle = None
    try:
        while True:
            try:
                handle = open(path, "a+")
            except OSError:
                handle = None
                break
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise _busy(root, _read(path)) from None
            except OSError:  # a file system without flock: go on unlocked
                handle.close()
                handle = None
                break
            try:  # the file may have been removed by its last holder between open and flock
                if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()
        if handle is None:
            yield None
            return
        handle.seek(0)
        try:  # a record left behind: its process died without removing it (kill -9, power loss)
            old = json.loads(handle.read() or "null")
        except ValueError:
            old = None
        if not isinstance(old, dict) or _alive(old.get("pid")):
            old = None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "command": command,
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        handle.flush()
        lock = WorkspaceLock(path, command, taken_over=old or None)
        remove_stale_temporaries(root)  # no other writer now: what an interrupted one left can go
        with _guard:
            _held[key] = [handle, lock, 1]
        try:
            yield lock
        finally:
            with _guard:
                _held.pop(key, None)
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        if handle is not None:
            handle.close()  # releases the flock
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: the command wrote nothing there
