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

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recon3d.core.atomic import atomic_write_json, check_writable
from recon3d.core.errors import UserError


def config_hash(config: Any) -> str:
    """A short stable hash of a config (dataclass or plain data)."""
    from recon3d.core.config import to_dict

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
        check_writable(self.root / "x")
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
        from recon3d.core.config import save_config

        return save_config(config, Path(folder) / name)
