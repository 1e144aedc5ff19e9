"""The main job as one function: photos (or the default scene) -> SfM -> evaluation -> training.

::

    import recon3d

    result = recon3d.run(None, "ws", train="splat-cpu", steps=500)   # render `orbit` into ws, reconstruct, train
    result = recon3d.run("photos/", "ws", train="none")                # SfM and evaluation only
    print(result.summary)

Stages, each skipped on a rerun when it has finished (unless ``overwrite``):

0. frames (only for a video): :func:`recon3d.sfm.frames.frames_stage` -> ``ws/frames``, ``ws/reports/frames.json``;
1. scene (only without photos): render the default scene with exact ground truth into ``ws``;
2. sfm: :func:`recon3d.sfm.pipeline.run_sfm` -> ``ws/sparse/0``, ``ws/reports/sfm.md``;
3. eval: :func:`recon3d.evaluate.report.evaluate_stage` -> ``ws/reports/eval.json``;
4. train: a preset of :mod:`recon3d.core.registry` (``"auto"``: ``splat`` on a CUDA GPU, ``splat-cpu`` on
   CPU; ``"none"``: no training). A backend that is not installed is skipped with a note.

Nothing here prints: each stage's summary goes to ``on_summary`` as soon as the stage ends (the CLI
prints it) and all of them are in :attr:`PipelineResult.summary`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recon3d.core.workspace import StageResult, Workspace

DEFAULT_SCENE = "orbit"
"""The scene rendered when no photos are given."""


@dataclass
class PipelineResult:
    """What :func:`run` did: one entry per stage that ran or was skipped, and the text to show."""

    workspace: Workspace
    stages: dict[str, Any] = field(default_factory=dict)
    """Stage name (``frames``, ``scene``, ``sfm``, ``eval``, ``train``) -> its result (:class:`StageResult`, or
    the SfM result with ``.skipped`` and ``.summary``); ``train`` is absent when nothing was trained."""
    method: str | None = None
    """The training preset that was used (``auto`` resolved), or None."""
    lines: list[str] = field(default_factory=list)
    """The summaries in order, as shown."""

    @property
    def summary(self) -> str:
        return "\n".join(self.lines)


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False without torch, or with a broken CUDA install)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA install: train on CPU
        return False


def resolve_method(train: str, device: str = "auto") -> str:
    """``"auto"`` -> ``splat`` on a CUDA GPU, ``splat-cpu`` otherwise; other names unchanged.

    The one choice of ``recon3d run --train auto`` and ``recon3d train`` without ``--method``.
    ``device`` is the training device asked for: ``"cpu"`` picks ``splat-cpu`` even beside a GPU, ``"cuda"``
    picks ``splat`` (which says so when there is no GPU).
    """
    if train == "auto":
        return "splat" if device == "cuda" or (device != "cpu" and cuda_available()) else "splat-cpu"
    return train


def scene_stage(ws: Workspace, overwrite: bool, progress: Callable | None = None) -> StageResult:
    """Render the default scene into ``ws`` unless it is already there."""
    from recon3d.scenes import load_spec, render_scene_cached

    spec = load_spec(DEFAULT_SCENE)
    result = render_scene_cached(spec, ws.root, progress=progress, overwrite=overwrite or not ws.images.is_dir())
    result.summary = (f"scene: `{spec.name}` already rendered in {ws.root}" if result.skipped
                      else f"scene: rendered `{spec.name}` ({spec.description}) into {ws.root}")
    return result


def train_stage(ws: Workspace, method: str, steps: int | None = None, device: str = "auto",
                overwrite: bool = False) -> StageResult:
    """Train preset ``method`` on ``ws`` (check :func:`recon3d.core.registry.available` first)."""
    from recon3d.core import registry

    config = registry.make_config(method)
    stage = registry.stage_function(method)
    changes: dict[str, Any] = {}
    if steps is not None and hasattr(config, "steps"):
        changes["steps"] = steps
    if hasattr(config, "device"):
        changes["device"] = device
    if changes and dataclasses.is_dataclass(config):
        config = dataclasses.replace(config, **changes)
    return stage(config, ws, monitor=None, overwrite=overwrite)


def run(images: Path | str | None, workspace: Path | str | Workspace, *, sfm: Any = None, frames: Any = None,
        train: str = "auto",
        steps: int | None = None, train_device: str = "auto", overwrite: bool = False,
        progress: Callable | None = None, on_summary: Callable[[str], None] | None = None) -> PipelineResult:
    """Reconstruct ``images`` (None: the default scene, rendered into the workspace) and train on the result.

    Args:
        images: folder of photos, a video (its frames are chosen first, :mod:`recon3d.sfm.frames`, and
            matched sequentially with loop detection unless ``sfm`` names a matching), or None to render
            :data:`DEFAULT_SCENE` into the workspace.
        workspace: the workspace folder (created if missing).
        sfm: an :class:`recon3d.sfm.pipeline.SfmConfig` (default: its defaults).
        frames: a :class:`recon3d.sfm.frames.FramesConfig` for a video (default: its defaults).
        train: a preset name of :mod:`recon3d.core.registry`, ``"auto"`` or ``"none"``.
        steps: training steps (default: the preset's).
        train_device: ``"auto"``, ``"cuda"`` or ``"cpu"``.
        overwrite: redo every stage even if finished. A stage whose input changed (SfM redone) is
            redone too.
        progress: tqdm-like wrapper for progress bars, or None.
        on_summary: called with each stage's summary as soon as the stage ends (e.g. ``print``).
    Returns:
        :class:`PipelineResult`. Errors a user can act on are :class:`~recon3d.core.errors.UserError`,
        among them another process writing the workspace (:meth:`Workspace.lock`).
    """
    from recon3d.core import registry
    from recon3d.evaluate.report import evaluate_stage
    from recon3d.io.video import is_video_input
    from recon3d.sfm.pipeline import run_sfm

    ws = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
    result = PipelineResult(ws)

    def show(text: str) -> None:
        result.lines.append(text)
        if on_summary is not None:
            on_summary(text)

    # one writer at a time; re-entrant, so under `recon3d run` (which holds it already) this is a no-op
    with ws.lock(f"recon3d.run({str(images) if images is not None else None!r}, {str(ws.root)!r})"):
        if images is None:
            result.stages["scene"] = scene_stage(ws, overwrite, progress)
            show(result.stages["scene"].summary)
        elif is_video_input(images):
            from recon3d.sfm.config import SfmConfig
            from recon3d.sfm.frames import frames_stage, video_sfm_config

            extracted = result.stages["frames"] = frames_stage(ws, images, frames, overwrite, progress)
            show(extracted.summary)
            images, sfm = extracted.outputs["frames"], video_sfm_config(sfm or SfmConfig())
        sfm_result = run_sfm(ws, images, sfm, overwrite=overwrite, progress=progress)
        result.stages["sfm"] = sfm_result
        show((f"sfm: already done for these photos and options ({ws.model})\n" if sfm_result.skipped else "")
             + sfm_result.summary)

        redo = overwrite or not sfm_result.skipped  # a new model: evaluate and train it afresh
        evaluation = result.stages["eval"] = evaluate_stage(ws, overwrite=redo)
        show(("eval: already done (reports/eval.json)\n" if evaluation.skipped else "") + evaluation.summary)

        method = resolve_method(train, train_device)
        if method == "none":
            show("train: skipped (--train none)")
        elif not registry.available(method):
            module = registry.get(method).stage.split(":")[0]
            show(f"train: skipped, the `{method}` backend ({module}) is not available in this install")
        else:
            result.method = method
            trained = result.stages["train"] = train_stage(ws, method, steps, train_device, overwrite=redo)
            main = next(iter(trained.outputs.values()), None)
            show(trained.summary + "\n" + f"train: `{method}` finished" + (f", outputs in {main}" if main else ""))
        show(f"reports: {ws.reports / 'sfm.md'}, {ws.reports / 'eval.json'}\n"
             f"view it in the browser: recon3d view {ws.root}")
        return result
