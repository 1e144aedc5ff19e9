"""Checkpoints (atomic, resumable) and the final model file of a NeRF run.

``nerf/checkpoints/step_NNNNNN.pt`` holds the model, the optimiser, the step and the config;
``nerf/model.pt`` the trained model alone (what ``recon3d render`` and the viewer load).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from recon3d.core.atomic import atomic_path
from recon3d.core.config import to_dict
from recon3d.core.errors import UserError

RESUME_IGNORES = {"steps", "device", "checkpoint_every", "monitor_every", "report_views", "eval_chunk",
                  "compile", "mixed_precision", "lr_final_factor", "cpu_threads", "eval_every"}
"""Config fields that may change between a checkpoint and the run that resumes it."""


def stage_key(config: Any) -> dict[str, Any]:
    """The settings a run (and its stage marker) is identified by: all but :data:`RESUME_IGNORES`."""
    return {k: v for k, v in to_dict(config).items() if k not in RESUME_IGNORES}

_PATTERN = re.compile(r"step_(\d+)\.pt$")


def checkpoint_dir(nerf_dir: Path) -> Path:
    return Path(nerf_dir) / "checkpoints"


def list_checkpoints(nerf_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the saved checkpoints, oldest first."""
    folder = checkpoint_dir(nerf_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PATTERN.search(p.name))]
    return sorted(found)


def save_checkpoint(nerf_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as ``checkpoints/step_{step:06d}.pt`` atomically; keep the newest ``keep``."""
    import torch

    path = checkpoint_dir(nerf_dir) / f"step_{step:06d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for _, old in list_checkpoints(nerf_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_file(path: Path, device) -> dict[str, Any]:
    """Load a checkpoint or model file; unreadable files are a :class:`UserError`."""
    import torch

    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a corrupt file
        raise UserError(f"{path}: cannot read this NeRF file ({type(exc).__name__}); "
                        "delete it or rerun training with --overwrite") from None


def resume_mismatch(saved: dict, config: Any) -> list[str]:
    """Config fields (other than :data:`RESUME_IGNORES`) that differ between a checkpoint and ``config``."""
    now = to_dict(config)
    return sorted(k for k in set(saved) | set(now)
                  if k not in RESUME_IGNORES and saved.get(k) != now.get(k))
