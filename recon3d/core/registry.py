"""The one registry of named method presets (``recon3d train --method NAME``).

A preset names a backend's training stage and a factory for its config dataclass. Factories
and stages are given as ``"module:attribute"`` strings so that listing presets imports no
backend (and no torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from recon3d.core.errors import UserError


@dataclass(frozen=True)
class Preset:
    name: str
    """Name used on the command line."""
    backend: str
    """'splat' or 'nerf': the workspace folder the stage writes."""
    description: str
    """One line for `recon3d train --help`."""
    config: str
    """'module:function' returning the preset's config dataclass."""
    stage: str
    """'module:function' with signature stage(config, workspace, monitor=None, overwrite=False) -> StageResult."""


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


def load_ref(ref: str) -> Callable[..., Any]:
    module, attr = ref.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"backend {ref} is not available in this install ({exc})") from None


def available(name: str) -> bool:
    """Whether preset ``name``'s backend (its config and stage modules) imports in this install."""
    preset = get(name)
    try:
        for ref in (preset.config, preset.stage):
            importlib.import_module(ref.split(":")[0])
    except ImportError:
        return False
    return True


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown method {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]


def make_config(name: str) -> Any:
    """A fresh config dataclass for preset ``name``."""
    return load_ref(get(name).config)()


def stage_function(name: str) -> Callable[..., Any]:
    """The training stage function of preset ``name``."""
    return load_ref(get(name).stage)


# Gaussian splatting (recon3d.splat)
register(Preset("splat", "splat", "3D Gaussian splatting, gsplat default densification (30k steps)",
                "recon3d.splat.config:preset_splat", "recon3d.splat.train:train"))
register(Preset("splat-mcmc", "splat", "3D Gaussian splatting with gsplat's MCMC strategy",
                "recon3d.splat.config:preset_splat_mcmc", "recon3d.splat.train:train"))
register(Preset("splat-fast", "splat", "short splatting run for previews and tests (few thousand steps)",
                "recon3d.splat.config:preset_splat_fast", "recon3d.splat.train:train"))
register(Preset("splat-cpu", "splat", "CPU preview: images at most 160 px, 500 steps (minutes on 2 cores)",
                "recon3d.splat.config:preset_splat_cpu", "recon3d.splat.train:train"))
# NeRF (recon3d.nerf)
register(Preset("nerf", "nerf", "nerfacto-style NeRF: hash grid, proposal sampling, contraction",
                "recon3d.nerf.config:preset_nerf", "recon3d.nerf.train:train"))
register(Preset("nerf-fast", "nerf", "short NeRF run for previews and tests",
                "recon3d.nerf.config:preset_nerf_fast", "recon3d.nerf.train:train"))
