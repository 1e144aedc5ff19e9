"""Training checkpoints: parameters, optimizer and strategy state, step and RNG, written atomically.

A checkpoint is ``WS/splat/ckpt/step_NNNNNNN.pt`` (``torch.save`` of a dict); it is written to a
temporary file and renamed, so a run killed at any moment leaves only complete checkpoints. The
``config_hash`` it stores (of the config without ``steps``, ``device`` and ``threads``) guards against resuming
a different run; ``steps`` may grow, so a finished run asked for more steps trains on from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from recon3d.core.atomic import atomic_path
from recon3d.core.workspace import config_hash
from recon3d.splat.model import make_optimizers, warn


def stage_key(config: Any) -> Any:
    """The settings a run (and its stage marker) is identified by: all but ``steps``, ``device``, ``threads``
    and ``procs``."""
    return dataclasses.replace(config, steps=0, device="any", threads=0,
                               **({"procs": 1} if hasattr(config, "procs") else {}))


def run_hash(config: Any) -> str:
    """Hash of :func:`stage_key`: checkpoints with another hash belong to another run."""
    return config_hash(stage_key(config))


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def snapshot(step: int, params: dict, optimizers: dict, strategy_state: dict, config: Any) -> dict:
    """The training state as a checkpoint holds it (on the CPU): what :func:`restore` takes."""
    return {
        "step": step,
        "config_hash": run_hash(config),
        "params": {k: v.detach().cpu() for k, v in params.items()},
        "optimizers": {k: _to(o.state_dict(), torch.device("cpu")) for k, o in optimizers.items()},
        "strategy_state": _to(strategy_state, torch.device("cpu")),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def save_checkpoint(folder: Path, step: int, params: dict, optimizers: dict, strategy_state: dict,
                    config: Any, keep: int = 2) -> Path:
    """Write ``folder/step_NNNNNNN.pt`` atomically and delete all but the ``keep`` newest; returns its path."""
    data = snapshot(step, params, optimizers, strategy_state, config)
    path = Path(folder) / f"step_{step:07d}.pt"
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    for old in list_checkpoints(folder)[:-max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    return sorted(folder.glob("step_*.pt")) if folder.is_dir() else []


def load_latest(folder: Path, config: Any) -> dict | None:
    """The newest readable checkpoint of this run (same config), or None.

    Raises:
        UserError: the newest checkpoint belongs to a run with a different config.
    """
    from recon3d.core.errors import UserError

    for path in reversed(list_checkpoints(folder)):
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a damaged file: try the one before
            warn(f"{path}: unreadable checkpoint ({exc.__class__.__name__}); trying an older one")
            continue
        if data.get("config_hash") != run_hash(config):
            raise UserError(f"{path}: checkpoint of a run with different settings; rerun with --overwrite "
                            "to start afresh, or with the settings of that run to resume it")
        data["path"] = path
        return data
    return None


def restore(data: dict, config: Any, scene_scale: float, device: torch.device) -> tuple[dict, dict, dict, int]:
    """Parameters, optimizers, strategy state and step from a loaded checkpoint; also restores the RNG.

    Returns:
        ``(params, optimizers, strategy_state, step)``.
    """
    params = {k: torch.nn.Parameter(v.to(device)) for k, v in data["params"].items()}
    optimizers = make_optimizers(params, config, scene_scale)
    for k, opt in optimizers.items():
        opt.load_state_dict(data["optimizers"][k])
    torch.set_rng_state(data["rng_cpu"])
    if data.get("rng_cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(data["rng_cuda"])
    return params, optimizers, _to(data["strategy_state"], device), int(data["step"])
