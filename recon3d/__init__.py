"""recon3d: from a folder of photos to calibrated cameras, sparse and dense 3D, splats and NeRFs.

The package is a pipeline of stages that pass a :class:`recon3d.core.workspace.Workspace`
folder between them. Conventions (rotation, quaternion order, pixel centres) are
stated once, in :mod:`recon3d.geometry`.

The main entry points are importable from here, lazily (``import recon3d`` loads neither torch
nor pycolmap)::

    import recon3d

    recon3d.run("photos/", "ws", train="splat-cpu")     # recon3d.pipeline.run
    recon3d.run_sfm("ws", "photos/")                     # recon3d.sfm.pipeline.run_sfm
    recon3d.evaluate_workspace(recon3d.Workspace("ws"))  # recon3d.evaluate.report.evaluate_workspace
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "run": "recon3d.pipeline",
    "run_sfm": "recon3d.sfm.pipeline",
    "evaluate_workspace": "recon3d.evaluate.report",
    "Workspace": "recon3d.core.workspace",
    "SfmConfig": "recon3d.sfm.config",
}

__all__ = ["__version__", "run", "run_sfm", "evaluate_workspace", "Workspace", "SfmConfig"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from recon3d.core.workspace import Workspace
    from recon3d.evaluate.report import evaluate_workspace
    from recon3d.pipeline import run
    from recon3d.sfm.config import SfmConfig
    from recon3d.sfm.pipeline import run_sfm


def __getattr__(name: str) -> Any:
    """PEP 562: import an entry point's module the first time it is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'recon3d' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
