"""Atomic writers: every output goes to a temporary path and is renamed into place.

An interrupted stage therefore never leaves a half-written file or folder. This module
imports nothing else of recon3d but the error type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from recon3d.core.errors import UserError


# ------------------------------------------------------------------------------ atomic writes
def _tmp_sibling(path: Path, is_dir: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # named .NAME.<pid>.<random>.tmp: what a killed run left is removed by the next one (remove_stale_temps)
    remove_stale_temps(path.parent, f".{path.name}.")
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=owned_temp_prefix(f".{path.name}."), suffix=".tmp", dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=owned_temp_prefix(f".{path.name}."), suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: Path) -> None:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write here (no permission on {parent}); choose another output folder")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file keeps ``path``'s suffix so libraries that pick a format by suffix work.
    """
    path = Path(path)
    check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, f".{path.stem}.", suffix=f".tmp{path.suffix}")
    fd, name = tempfile.mkstemp(prefix=owned_temp_prefix(f".{path.stem}."), suffix=f".tmp{path.suffix}",
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give the result the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(to_dict(data), indent=2) + "\n")


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` onto ``dst``; an old ``dst`` is moved aside first and removed only after the rename."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}.{time.monotonic_ns()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``path`` (old contents removed).

    On failure the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    check_writable(path)
    tmp = _tmp_sibling(path, is_dir=True)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def owned_temp_prefix(prefix: str) -> str:
    """``prefix`` plus this process's id: a temporary folder named so can be told stale once its
    creator is dead (:func:`remove_stale_temps`)."""
    return f"{prefix}{os.getpid()}."


def remove_stale_temps(folder: Path | str, prefix: str, suffix: str = "") -> list[Path]:
    """Remove entries of ``folder`` named ``PREFIX<pid>.*SUFFIX`` whose process is dead (killed runs);
    returns them."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if not p.name.startswith(prefix) or not p.name.endswith(suffix):
            continue
        pid = p.name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def to_dict(obj: Any) -> Any:
    """A plain (YAML/JSON-safe) copy of a dataclass, recursing into lists, dicts and paths."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return obj


TEMPORARY_NAME = re.compile(r"^\..+?\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp(?:\.[^.]+)?$"
                            r"|^\..+\.old\.(?P<old_pid>\d+)\.\d+$")
"""Names the writers above give their temporary files and folders (``.NAME.PID.RANDOM.tmp[.SUFFIX]``;
``.NAME.RANDOM.tmp`` before the pid was added) and the folders :func:`replace_dir` moves aside
(``.NAME.old.PID.NS``)."""


def _stale(name: str) -> bool:
    m = TEMPORARY_NAME.match(name)
    if m is None:
        return False
    pid = m.group("pid") or m.group("old_pid")
    return pid is None or (int(pid) != os.getpid() and not pid_alive(int(pid)))


def remove_stale_temporaries(root: Path | str) -> list[Path]:
    """Remove what the atomic writers of interrupted processes (kill -9, power loss) left under ``root``.

    Only names of :data:`TEMPORARY_NAME` whose process is dead are touched (names without a pid are
    removed too: call it while holding the workspace lock, as :func:`recon3d.core.lock.workspace_lock`
    does). Returns the paths removed.
    """
    removed = []
    for folder, dirs, files in os.walk(root):
        for name in [d for d in dirs if _stale(d)]:
            dirs.remove(name)
            shutil.rmtree(Path(folder) / name, ignore_errors=True)
            removed.append(Path(folder) / name)
        for name in files:
            if _stale(name):
                with contextlib.suppress(OSError):
                    (Path(folder) / name).unlink()
                    removed.append(Path(folder) / name)
    return removed
