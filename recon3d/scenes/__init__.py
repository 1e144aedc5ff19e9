"""Synthetic scenes with exact ground truth, rendered by ray casting (no downloads).

Specs live in the top-level ``scenes/*.yaml`` (see :mod:`recon3d.scenes.spec`); shipped names:
``orbit``, ``facade``, ``stereo``, ``checkerboard``. :func:`render_scene` writes a scene into a
folder; each kind's layout is described in its module (:mod:`~recon3d.scenes.multiview`,
:mod:`~recon3d.scenes.stereo`, :mod:`~recon3d.scenes.board`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from recon3d.config import dump_yaml
from recon3d.scenes.spec import SceneSpec, list_scenes, load_spec
from recon3d.workspace import Workspace, atomic_write_text

__all__ = ["SceneSpec", "list_scenes", "load_spec", "render_scene", "write_gt_as_sparse"]


def render_scene(spec: SceneSpec, out: Path | str, progress: Callable | None = None) -> dict:
    """Render ``spec`` into folder ``out`` and save the resolved spec as ``out/scene.yaml``.

    Args:
        spec: the scene.
        out: output folder (created; existing outputs of the same names are replaced atomically).
        progress: optional ``tqdm``-like wrapper for iterables.
    Returns:
        A summary dict (counts, image size) for the CLI.
    """
    out = Workspace(Path(out)).create().root
    if spec.kind == "multiview":
        from recon3d.scenes.multiview import render_multiview as render
    elif spec.kind == "checkerboard":
        from recon3d.scenes.board import render_checkerboard as render
    else:
        from recon3d.scenes.stereo import render_stereo as render
    summary = render(spec, out, progress)
    atomic_write_text(out / "scene.yaml", dump_yaml(spec))
    return summary


def write_gt_as_sparse(ws: Workspace) -> Path:
    """Copy a rendered scene's ground-truth model into ``sparse/0`` (COLMAP binary), to train without SfM."""
    import pycolmap

    from recon3d.workspace import atomic_dir

    rec = pycolmap.Reconstruction(str(ws.gt_model))
    with atomic_dir(ws.model) as tmp:
        rec.write_binary(str(tmp))
    return ws.model
