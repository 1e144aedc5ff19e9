"""The Workspace: the folder every stage reads from and writes to.

Layout (COLMAP and gsplat read it as is)::

    WS/
      images/             input photos (file names kept)
      database.db         COLMAP feature/match database
      sparse/0/           COLMAP binary model (cameras.bin, images.bin, points3D.bin); sparse/N more
      splat/              Gaussian splatting outputs (point_cloud.ply, checkpoints, metrics.json)
      nerf/               NeRF outputs
      stereo/             depth maps, fused point cloud and mesh
      reports/            human-readable reports (JSON, Markdown, PNG)
      reports/stages/     one JSON per finished stage: the marker reruns use to skip it
      gt/                 ground truth, when known (synthetic scenes): gt/sparse/0, gt/depth/

Every file is written through a temporary path and renamed (:func:`atomic_write_bytes`,
:func:`atomic_path`, :func:`atomic_dir`), so an interrupted stage never leaves a
half-written output. A stage counts as finished when its marker exists
(:meth:`Workspace.mark_done`); reruns skip finished stages unless told to overwrite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from recon3d.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""File extensions recon3d treats as photos (case-insensitive)."""


# ------------------------------------------------------------------------------ atomic writes
def _tmp_sibling(path: Path, is_dir: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_writable(path: Path) -> None:
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
    _check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
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
    from recon3d.config import to_dict

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
    _check_writable(path)
    tmp = _tmp_sibling(path, is_dir=True)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def list_images(folder: Path | str) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises :class:`UserError` when the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder; give a folder of photos")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; give a folder of photos")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise UserError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); point recon3d at a folder of photos")
    return images


def config_hash(config: Any) -> str:
    """A short stable hash of a config (dataclass or plain data)."""
    from recon3d.config import to_dict

    text = json.dumps(to_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------- workspace
@dataclass(frozen=True)
class Workspace:
    """A recon3d workspace folder. Paths are properties; nothing is created until asked."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- layout
    @property
    def images(self) -> Path:
        """``images/``: the photos."""
        return self.root / "images"

    @property
    def database(self) -> Path:
        """``database.db``: COLMAP's feature and match database."""
        return self.root / "database.db"

    @property
    def sparse(self) -> Path:
        """``sparse/``: COLMAP models ``sparse/0`` (largest), ``sparse/1``, ..."""
        return self.root / "sparse"

    @property
    def model(self) -> Path:
        """``sparse/0``: the main COLMAP model."""
        return self.sparse / "0"

    @property
    def splat(self) -> Path:
        return self.root / "splat"

    @property
    def nerf(self) -> Path:
        return self.root / "nerf"

    @property
    def stereo(self) -> Path:
        return self.root / "stereo"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def gt(self) -> Path:
        """``gt/``: ground truth of synthetic scenes (``gt/sparse/0`` text model, ``gt/depth``)."""
        return self.root / "gt"

    @property
    def gt_model(self) -> Path:
        return self.gt / "sparse" / "0"

    def create(self) -> "Workspace":
        """Create the root folder (and check it is writable); returns self."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: exists and is not a folder; choose another workspace path")
        _check_writable(self.root / "x")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.root}: cannot create the workspace ({exc.strerror}); choose another path") from None
        return self

    def has_model(self) -> bool:
        """True when ``sparse/0`` holds a COLMAP model (binary or text)."""
        return any((self.model / f"cameras.{ext}").is_file() for ext in ("bin", "txt"))

    def require_model(self) -> Path:
        """Path of ``sparse/0``, or a :class:`UserError` saying how to make one."""
        if not self.root.is_dir():
            raise UserError(f"{self.root}: no such workspace; create one with `recon3d sfm IMAGES -o {self.root}`")
        if not self.has_model():
            raise UserError(
                f"{self.model}: no COLMAP model here; run `recon3d sfm {self.images} -o {self.root}` first"
            )
        return self.model

    # -- stage bookkeeping
    def _marker(self, stage: str) -> Path:
        return self.reports / "stages" / f"{stage}.json"

    def stage_info(self, stage: str) -> dict | None:
        """The marker of a finished stage (config hash, time, outputs), or ``None``."""
        marker = self._marker(stage)
        if not marker.is_file():
            return None
        try:
            return json.loads(marker.read_text())
        except (OSError, ValueError):
            return None

    def is_done(self, stage: str, config: Any = None) -> bool:
        """Whether ``stage`` finished (and, if ``config`` is given, with the same config)."""
        info = self.stage_info(stage)
        if info is None:
            return False
        return config is None or info.get("config_hash") == config_hash(config)

    def mark_done(self, stage: str, config: Any = None, outputs: dict[str, Any] | None = None) -> Path:
        """Record that ``stage`` finished; written last, so its presence means complete outputs."""
        info = {
            "stage": stage,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config_hash": config_hash(config) if config is not None else None,
            "outputs": {k: str(v) for k, v in (outputs or {}).items()},
        }
        return atomic_write_json(self._marker(stage), info)

    def clear_done(self, stage: str) -> None:
        """Forget that ``stage`` finished (before rerunning it with ``--overwrite``)."""
        self._marker(stage).unlink(missing_ok=True)

    def save_config(self, config: Any, folder: Path, name: str = "config.yaml") -> Path:
        """Save a stage's resolved config as YAML beside its output folder."""
        from recon3d.config import save_config

        return save_config(config, Path(folder) / name)
