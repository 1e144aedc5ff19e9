"""Synthetic scenes with exact ground truth, rendered by ray casting (no downloads).

Specs live in the top-level ``scenes/*.yaml`` (see :mod:`recon3d.scenes.spec`); shipped names:
``orbit``, ``facade``, ``stereo``, ``checkerboard``. :func:`render_scene` writes a scene into a
folder (:func:`render_scene_cached` only when it does not hold that spec yet), and
:func:`scene_workspace` copies a rendered multi-view scene into a workspace that can train without
SfM; each kind's layout is described in its module (:mod:`~recon3d.scenes.multiview`,
:mod:`~recon3d.scenes.stereo`, :mod:`~recon3d.scenes.board`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from recon3d.core.atomic import atomic_write_text
from recon3d.core.config import dump_yaml
from recon3d.core.workspace import StageResult, Workspace
from recon3d.scenes.spec import SceneSpec, list_scenes, load_spec

__all__ = ["SceneSpec", "list_scenes", "load_spec", "render_scene", "render_scene_cached", "scene_workspace",
           "write_gt_as_sparse"]


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


def render_scene_cached(spec: SceneSpec, out: Path | str, progress: Callable | None = None,
                        overwrite: bool = False) -> StageResult:
    """Render ``spec`` into folder ``out`` unless ``out`` already holds it (the ``scene`` stage).

    Renders are deterministic, so a folder keeps one: the workspace's ``scene`` stage marker records
    the spec's hash, and only a missing marker or another spec renders again
    (:meth:`~recon3d.core.workspace.Workspace.stage`).

    Args:
        spec, out, progress: as :func:`render_scene`.
        overwrite: render even if ``out`` holds the scene.
    Returns:
        :class:`StageResult` with output ``scene`` (``out/scene.yaml``); ``skipped`` when ``out`` already
        held the scene, else its ``data`` is :func:`render_scene`'s summary dict.
    """
    import time

    from recon3d.core.progress import summary

    ws = Workspace(Path(out))
    with ws.stage("scene", spec, overwrite) as run:
        if run.skipped:
            return StageResult(run.previous_outputs, skipped=True,
                               summary=f"{ws.root}: scene {spec.name!r} already rendered "
                                       "(use --overwrite to render again)")
        t0 = time.perf_counter()
        ws.create()
        info = render_scene(spec, ws.root, progress)
        run.outputs = {"scene": ws.root / "scene.yaml"}
    rows = [(k, v) for k, v in info.items()] + [("time", f"{time.perf_counter() - t0:.1f} s")]
    return StageResult(run.outputs, skipped=False, data=info,
                       summary=summary(f"rendered scene {spec.name!r} ({spec.kind}) into {ws.root}", rows))


def scene_workspace(scene: Path | str, root: Path | str) -> Workspace:
    """A new workspace at ``root`` holding a copy of a rendered multi-view scene's ``images/`` and ``gt/``,
    with the true model in ``sparse/0``: ready to train without SfM (the scene folder is only read)."""
    scene, ws = Path(scene), Workspace(Path(root))
    shutil.copytree(scene / "images", ws.images)
    shutil.copytree(scene / "gt", ws.gt)
    write_gt_as_sparse(ws)
    return ws


def write_gt_as_sparse(ws: Workspace) -> Path:
    """Copy a rendered scene's ground-truth model into ``sparse/0`` (COLMAP binary), to train without SfM."""
    import pycolmap

    from recon3d.core.atomic import atomic_dir

    rec = pycolmap.Reconstruction(str(ws.gt_model))
    with atomic_dir(ws.model) as tmp:
        rec.write_binary(str(tmp))
    return ws.model
