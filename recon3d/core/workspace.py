"""The Workspace: the folder every stage reads from and writes to.

Layout (COLMAP and gsplat read it as is)::

    WS/
      images/             input photos (file names kept)
      frames/             frames chosen from a video input (recon3d.sfm.frames), with frames.json
      database.db         COLMAP feature/match database
      sparse/0/           COLMAP binary model (cameras.bin, images.bin, points3D.bin); sparse/N more
      splat/              Gaussian splatting outputs (point_cloud.ply, checkpoints, metrics.json)
      nerf/               NeRF outputs
      stereo/             depth maps, fused point cloud and mesh
      reports/            human-readable reports (JSON, Markdown, PNG)
      reports/stages/     one JSON per finished stage: the marker reruns use to skip it
      gt/                 ground truth, when known (synthetic scenes): gt/sparse/0, gt/depth/

Every file is written through a temporary path and renamed (:mod:`recon3d.core.atomic`), so an
interrupted stage never leaves a half-written output.

The stage contract: every stage is a plain function ``stage(config, workspace, ...) -> StageResult``,
and :meth:`Workspace.stage` is the only code that decides whether a stage is skipped (finished with
the same key and its outputs check out), cleared (``overwrite``, or another key) and marked done
(written last, so a marker means complete outputs). Stages print nothing; the CLI prints
:attr:`StageResult.summary`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from recon3d.core.atomic import atomic_write_json, check_writable, to_dict
from recon3d.core.errors import UserError


def config_hash(config: Any) -> str:
    """A short stable hash of a config (dataclass or plain data)."""
    text = json.dumps(to_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class StageResult:
    """What a stage did; the CLI prints :attr:`summary`, Python callers read the rest."""

    outputs: dict[str, Path] = field(default_factory=dict)
    """The stage's output files and folders by name, e.g. ``{"model": WS/sparse/0}``."""
    skipped: bool = False
    """True when the stage had finished before with the same key and nothing was redone."""
    summary: str = ""
    """A few lines for a person: what was made and how good it is."""
    data: Any = None
    """Stage-specific results (e.g. the SfM report and ``pycolmap.Reconstruction``), or None."""


@dataclass
class StageRun:
    """The handle :meth:`Workspace.stage` yields: whether to skip, and the outputs to record."""

    name: str
    key: Any
    skipped: bool
    previous: dict | None
    """The marker of an earlier finished run (any key), or None."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """Set by the stage; recorded in the marker when the block ends without an error."""
    info: dict[str, Any] = field(default_factory=dict)
    """Set by the stage: small JSON-able facts recorded in the marker (e.g. ``{"steps": 500}``)."""

    @property
    def previous_outputs(self) -> dict[str, Path]:
        return {k: Path(v) for k, v in ((self.previous or {}).get("outputs") or {}).items()}

    @property
    def previous_info(self) -> dict[str, Any]:
        """The ``info`` an earlier finished run recorded (empty when none)."""
        return dict((self.previous or {}).get("info") or {})


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

    def lock(self, command: str):
        """Context manager: hold this workspace's lock (``.recon3d.lock``) while writing it.

        ``command`` (e.g. ``"recon3d sfm photos -o ws"``) is what a second command is told holds it;
        that command gets a :class:`UserError` (exit 2) and writes nothing. Re-entrant within a
        process. Yields a :class:`recon3d.core.lock.WorkspaceLock` (its ``note`` says when a lock
        left by a dead process was taken over), or None when the folder cannot hold a lock file.
        """
        from recon3d.core.lock import workspace_lock

        return workspace_lock(self.root, command)

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

    def mark_done(self, stage: str, config: Any = None, outputs: dict[str, Any] | None = None,
                  info: dict[str, Any] | None = None) -> Path:
        """Record that ``stage`` finished; written last, so its presence means complete outputs."""
        marker = {
            "stage": stage,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config_hash": config_hash(config) if config is not None else None,
            "outputs": {k: str(v) for k, v in (outputs or {}).items()},
        }
        if info:
            marker["info"] = info
        return atomic_write_json(self._marker(stage), marker)

    def clear_done(self, stage: str) -> None:
        """Forget that ``stage`` finished (before rerunning it with ``--overwrite``)."""
        try:
            self._marker(stage).unlink(missing_ok=True)
        except NotADirectoryError:  # a file where a folder of the path should be: no marker there
            pass

    def save_config(self, config: Any, folder: Path, name: str = "config.yaml") -> Path:
        """Save a stage's resolved config as YAML beside its output folder."""
        from recon3d.core.config import save_config

        return save_config(config, Path(folder) / name)

    @contextlib.contextmanager
    def stage(self, name: str, key: Any = None, overwrite: bool = False,
              check: Callable[[dict[str, Path]], bool] | None = None,
              invalidates: tuple[str, ...] = ()) -> Iterator[StageRun]:
        """The one place that skips, clears and marks a stage.

        ::

            with ws.stage("sfm", key, overwrite) as run:
                if run.skipped:
                    return StageResult(run.previous_outputs, skipped=True, summary=...)
                ...                              # do the work, writing outputs atomically
                run.outputs = {"model": ws.model}

        Args:
            name: the stage's marker name (``reports/stages/NAME.json``).
            key: what the result depends on (a config dataclass or plain data); a finished run
                with another key is not skipped.
            overwrite: never skip (the stage itself discards old outputs).
            check: called with the recorded outputs of a finished run; the run counts as
                finished only when it returns True (e.g. the model still loads).
            invalidates: markers of later stages that depend on this one, cleared when it reruns.

        The marker is written when the block ends without an exception and not skipped; an
        exception (Ctrl-C included) leaves no marker, so the next run resumes or redoes the stage.
        """
        previous = self.stage_info(name)
        skipped = (not overwrite and self.is_done(name, key)
                   and (check is None or bool(check({k: Path(v) for k, v in (previous or {}).get("outputs", {}).items()}))))
        run = StageRun(name, key, skipped, previous)
        if skipped:
            yield run
            return
        self.clear_done(name)
        for later in invalidates:
            self.clear_done(later)
        yield run
        self.mark_done(name, key, run.outputs, run.info)


def trained_output_present(marker: dict, folder: Path) -> bool:
    """Whether the outputs a training stage's ``marker`` records are still in ``folder`` (looked up by
    file name, so a workspace moved or reached by another path still counts)."""
    names = [Path(p).name for p in (marker.get("outputs") or {}).values()]
    folder = Path(folder)
    return folder.is_dir() and (not names or any((folder / n).exists() for n in names))


def finished_steps(ws: Workspace, name: str, key: Any, steps: int, folder: Path) -> int | None:
    """The rule every training stage shares for a finished run (its ``key`` leaves out the step count).

    A marker whose outputs are gone (the folder deleted by hand) is cleared and counts as no run.
    Same settings and as many steps: the stage is skipped. Same settings and more steps: it resumes
    from its last checkpoint and trains on to ``steps``. Other settings, or fewer steps: a
    :class:`UserError` asking for ``--overwrite``.

    Returns:
        The step count of the finished run (recorded as ``info["steps"]`` in its marker), or None
        when the stage has not finished.
    """
    marker = ws.stage_info(name)
    if marker is None:
        return None
    if not trained_output_present(marker, folder):  # the folder was deleted or emptied by hand: a stale marker
        ws.clear_done(name)
        return None
    if marker.get("config_hash") != config_hash(key):
        raise UserError(f"{folder}: holds a model trained with other settings; pass --overwrite to replace it "
                        "(a larger --steps alone resumes it)")
    done = int((marker.get("info") or {}).get("steps", -1))
    if done > steps:
        raise UserError(f"{folder}: holds a model trained for {done} steps, more than the {steps} asked for; "
                        f"ask for {done} or more, or pass --overwrite to train afresh")
    return done
