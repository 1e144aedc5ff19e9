"""The NeRF stage: ``recon3d train WS --method nerf`` trains on ``sparse/0`` cameras and ``images/``.

Writes ``WS/nerf/``: ``model.pt`` (trained model), ``checkpoints/step_N.pt`` (resumable),
``metrics.json`` (held-out PSNR/SSIM, speed), ``config.yaml`` (the resolved config); and
``WS/reports/nerf_test_views.png`` and ``nerf_depth.png``. A finished run is skipped unless
``overwrite`` (asked for more steps, it trains on); an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from recon3d.core.atomic import atomic_path, atomic_write_json
from recon3d.core.config import validate
from recon3d.core.errors import UserError
from recon3d.core.signals import interrupts_deferred
from recon3d.core.workspace import StageResult, Workspace, finished_steps
from recon3d.nerf.config import NerfConfig

STAGE = "nerf"


def resolve_device(name: str):
    """``'auto' | 'cuda' | 'cpu'`` -> a ``torch.device``; CUDA asked for but absent is a :class:`UserError`."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device cuda: no CUDA GPU is visible to torch {torch.__version__}; "
                            "use --device cpu (slow; small scenes) or --device auto")
        return torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"device {name!r} is unknown; use auto, cuda or cpu")


def check_config(config: NerfConfig) -> None:
    """One-line errors for values that cannot work: each field's range (:func:`validate`), then what
    fields must satisfy together."""
    validate(config)
    checks = [
        (config.steps >= 1, "steps must be >= 1"),
        (config.batch_rays >= 1, "batch_rays must be >= 1"),
        (config.downscale > 0, "downscale must be > 0"),
        (config.lr > 0 and config.lr_final_factor > 0, "lr and lr_final_factor must be > 0"),
        (len(config.proposal_samples) == 2 and min(config.proposal_samples) >= 1,
         "proposal_samples needs two positive counts, e.g. [256, 96]"),
        (len(config.proposal_max_resolution) == 2, "proposal_max_resolution needs two entries"),
        (config.nerf_samples >= 1, "nerf_samples must be >= 1"),
        (1 <= config.sh_degree <= 4, "sh_degree must be 1..4"),
        (config.num_levels >= 1 and config.base_resolution >= 1 and config.max_resolution >= config.base_resolution,
         "num_levels >= 1 and max_resolution >= base_resolution >= 1"),
        (1 <= config.log2_hashmap_size <= 26 and 1 <= config.proposal_log2_hashmap_size <= 26,
         "log2 hash-map sizes must be 1..26"),
        (config.near >= 0 and config.far >= 0 and (not config.far or config.far > config.near),
         "near and far must be >= 0 with far > near"),
        (config.checkpoint_every >= 1 and config.eval_chunk >= 1, "checkpoint_every and eval_chunk must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"nerf config: {message}")


def _clear_outputs(ws: Workspace) -> None:
    for p in (ws.nerf / "checkpoints",):
        shutil.rmtree(p, ignore_errors=True)
    for p in (ws.nerf / "model.pt", ws.nerf / "metrics.json"):
        p.unlink(missing_ok=True)


def model_state(model, config: NerfConfig, num_images: int, step: int) -> dict[str, Any]:
    """What ``nerf/model.pt`` holds: enough to rebuild and render the model."""
    from recon3d.core.config import to_dict

    return {"model": model.state_dict(), "config": to_dict(config), "frame": model.frame.to_dict(),
            "num_images": num_images, "step": step}


def build_model(state: dict[str, Any], device):
    """Rebuild a :class:`~recon3d.nerf.model.NerfModel` from a :func:`model_state` dict."""
    from recon3d.core.config import from_dict
    from recon3d.nerf.model import NerfModel
    from recon3d.nerf.scene import SceneFrame

    config = from_dict(NerfConfig, state["config"], where="nerf model config")
    model = NerfModel(config, SceneFrame.from_dict(state["frame"]), state["num_images"]).to(device)
    model.load_state_dict(state["model"])
    return model


def load_trained(ws: Workspace, device="cpu"):
    """The trained model of a workspace (``nerf/model.pt``), in eval mode."""
    from recon3d.nerf.checkpoint import load_file

    path = ws.nerf / "model.pt"
    if not path.is_file():
        raise UserError(f"{path}: no trained NeRF here; run `recon3d train {ws.root} --method nerf` first")
    model = build_model(load_file(path, device), device)
    model.eval()
    return model


def train(config: NerfConfig, ws: Workspace, monitor=None, overwrite: bool = False) -> StageResult:
    """Train a NeRF on a workspace and evaluate it on the held-out views (the ``nerf`` stage).

    A finished run with the same settings is skipped; asked for more ``steps`` it resumes from its
    last checkpoint and trains on; other settings need ``overwrite`` (see
    :func:`recon3d.core.workspace.finished_steps`).

    Args:
        config: resolved :class:`~recon3d.nerf.config.NerfConfig`.
        ws: workspace with ``sparse/0`` and ``images/``.
        monitor: optional callable receiving :class:`~recon3d.monitor.TrainEvent` every
            ``config.monitor_every`` steps.
        overwrite: discard earlier checkpoints and outputs.
    Returns:
        :class:`StageResult` with outputs ``folder`` (``ws.nerf``), ``model``, ``metrics`` and the pictures.
    """
    import torch

    check_config(config)  # before any work: one line naming a field out of range
    threads = torch.get_num_threads()
    if config.cpu_threads > 0 and resolve_device(config.device).type == "cpu":
        torch.set_num_threads(config.cpu_threads)
    try:
        return _train(config, ws, monitor, overwrite)
    finally:
        torch.set_num_threads(threads)


def model_file_loads(path: Path) -> bool:
    """Whether a finished run's ``model.pt`` still loads (a truncated one is trained again)."""
    from recon3d.nerf.checkpoint import load_file

    if not path.is_file():
        return False
    try:
        load_file(path, "cpu")
    except UserError:
        return False
    return True


def _train(config: NerfConfig, ws: Workspace, monitor=None, overwrite: bool = False) -> StageResult:
    from recon3d.nerf.checkpoint import stage_key

    check_config(config)
    ws.require_model()
    resolve_device(config.device)
    key = stage_key(config)
    done_before = None if overwrite else finished_steps(ws, STAGE, key, config.steps, ws.nerf)
    model_pt = ws.nerf / "model.pt"
    with ws.stage(STAGE, key, overwrite, check=lambda _: done_before == config.steps and model_file_loads(model_pt)) as run:
        if run.skipped:
            return StageResult(run.previous_outputs, skipped=True,
                               summary=f"nerf: already trained with this config ({ws.nerf}); "
                                       "use --overwrite to train again")
        run.outputs, summary = _fit(config, ws, monitor, overwrite)
        run.info = {"steps": config.steps}
    return StageResult(run.outputs, skipped=False, summary=summary)


def _fit(config: NerfConfig, ws: Workspace, monitor, overwrite: bool) -> tuple[dict[str, Path], str]:
    """Train (resuming from the newest checkpoint), write the outputs; returns (outputs, summary)."""
    import torch

    from recon3d.core.log import TrainLog
    from recon3d.core.progress import note, progress
    from recon3d.io.dataset import load_scene
    from recon3d.nerf.checkpoint import (
        list_checkpoints,
        load_file,
        resume_mismatch,
        save_checkpoint,
    )
    from recon3d.nerf.model import NerfModel
    from recon3d.nerf.rays import RayBatches
    from recon3d.nerf.scene import SceneFrame, scene_frame

    device = resolve_device(config.device)
    scene = load_scene(ws, config.downscale, config.test_every)
    if not scene.train:
        raise UserError(f"{ws.model}: no training views left after holding out every {config.test_every}th image; "
                        "set --set test_every=0 or add images")
    if overwrite:
        _clear_outputs(ws)
    torch.manual_seed(config.seed)

    state = None
    ckpts = list_checkpoints(ws.nerf)
    if ckpts:
        state = load_file(ckpts[-1][1], device)
        diff = resume_mismatch(state.get("config", {}), config)
        if diff:
            raise UserError(f"{ckpts[-1][1]}: this checkpoint was trained with other settings ({', '.join(diff)}); "
                            "rerun with --overwrite to start over")
        if state["step"] > config.steps:
            raise UserError(f"{ckpts[-1][1]}: the checkpoint is at step {state['step']}, past --steps {config.steps}; "
                            "ask for more steps or rerun with --overwrite")
        frame = SceneFrame.from_dict(state["frame"])
    else:
        frame = scene_frame(np.stack([v.cam_from_world for v in scene.all_views]), scene.points,
                            config.scene, config.near, config.far)

    model = NerfModel(config, frame, len(scene.train)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=1e-15)
    start, history, elapsed0 = 0, [], 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history, elapsed0 = int(state["step"]), list(state.get("history", [])), float(state.get("elapsed", 0.0))
        note(f"nerf: resuming from step {start} ({ckpts[-1][1].name})")

    cuda = device.type == "cuda"
    amp = cuda and config.mixed_precision
    if cuda and config.compile:
        model.enable_compile()
    batches = RayBatches(scene.train, device)
    gen = torch.Generator(device=device)  # reseeded every step: a resumed run draws what an uninterrupted one does
    lock = threading.Lock()

    def render(cam_from_world, K, width, height):
        from recon3d.nerf.evaluate import render_uint8

        with lock:
            return render_uint8(model, cam_from_world, K, width, height, config.eval_chunk)

    def checkpoint(step: int, elapsed: float) -> Path:
        from recon3d.core.config import to_dict

        return save_checkpoint(ws.nerf, step, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "config": to_dict(config), "frame": frame.to_dict(), "history": history, "elapsed": elapsed,
            "num_images": len(scene.train)})

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model.train()
    t0 = time.perf_counter()
    completed = start
    bar = progress(range(start, config.steps), desc="nerf", unit="step", total=config.steps, initial=start)
    last_report = (time.perf_counter(), start)
    speed: dict[str, float] = {}  # steps/s and rays/s, once measured (every 25 steps)
    curve = TrainLog(ws.nerf, start)  # nerf/log.jsonl (+ TensorBoard events with --log tensorboard)
    try:
        for step in bar:
            frac = step / max(config.steps, 1)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * config.lr_final_factor ** frac
            anneal = min(1.0, (step + 1) / config.proposal_anneal_steps) if config.proposal_anneal_steps > 0 else 1.0
            gen.manual_seed(config.seed * 1_000_003 + step)
            origins, dirs, target, view = batches.sample(config.batch_rays, gen)
            with lock:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    out = model(origins, dirs, view, stratified=True, anneal=anneal, generator=gen)
                losses = model.losses(out, target)
                loss = sum(losses.values())
                with interrupts_deferred():  # Ctrl-C / SIGTERM wait for the update: a checkpoint stays exact
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    done = completed = step + 1
            to_monitor = monitor is not None and (done % config.monitor_every == 0 or done == config.steps)
            if to_monitor or done % 25 == 0 or done == config.steps:  # syncs the GPU: not every step
                loss_value = float(loss.detach())
                mse = float(losses["rgb"].detach())
            if done % 25 == 0 or done == config.steps:
                psnr = -10.0 * math.log10(max(mse, 1e-12))
                now = time.perf_counter()
                dt = now - last_report[0]
                if dt > 0:
                    sps = (done - last_report[1]) / dt
                    speed = {"steps_per_s": sps, "rays_per_s": sps * config.batch_rays}
                last_report = (now, done)
                history.append({"step": done, "seconds": round(elapsed0 + now - t0, 3), "train_psnr": round(psnr, 3)})
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{loss_value:.4f}", psnr=f"{psnr:.2f}",
                                    rays_s=f"{speed.get('rays_per_s', 0.0):.3g}", refresh=False)
                curve.log(done, {"loss": loss_value, "psnr": psnr, **speed, "lr": optimizer.param_groups[0]["lr"]})
            if config.eval_every and done % config.eval_every == 0 and scene.test:
                from recon3d.nerf.evaluate import evaluate_views

                t_eval = time.perf_counter()
                rows, _ = evaluate_views(model, scene.test, config.eval_chunk)
                t0 += time.perf_counter() - t_eval  # evaluation time is not training time
                history.append({"step": done, "seconds": round(elapsed0 + time.perf_counter() - t0, 3),
                                "test_psnr": round(float(np.mean([r["psnr"] for r in rows])), 3)})
            if to_monitor:
                from recon3d.core.monitor import TrainEvent

                monitor(TrainEvent(backend="nerf", step=done, total_steps=config.steps,
                                   metrics={"loss": loss_value, "psnr": -10.0 * math.log10(max(mse, 1e-12)),
                                            **speed, "lr": optimizer.param_groups[0]["lr"]},
                                   render=render))
            if done % config.checkpoint_every == 0 and done < config.steps:
                checkpoint(done, elapsed0 + time.perf_counter() - t0)
    except KeyboardInterrupt:
        if completed > start:
            checkpoint(completed, elapsed0 + time.perf_counter() - t0)
        raise
    finally:
        curve.close()
        if hasattr(bar, "close"):
            bar.close()
    train_seconds = elapsed0 + time.perf_counter() - t0
    if completed > start or not list_checkpoints(ws.nerf):
        checkpoint(config.steps, train_seconds)
    peak_mem = torch.cuda.max_memory_allocated() if cuda else None

    # ------------------------------------------------------------------ outputs
    from recon3d.nerf.evaluate import evaluate_views, write_report_pictures

    model.eval()
    with atomic_path(ws.nerf / "model.pt") as tmp:
        torch.save(model_state(model, config, len(scene.train), config.steps), tmp)
    eval_views = scene.test or scene.train
    rows, renders = evaluate_views(model, eval_views, config.eval_chunk)
    total_steps = config.steps
    metrics = {
        "method": "nerf",
        "split": "test" if scene.test else "train",
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "num_test_views": len(scene.test),
        "num_train_views": len(scene.train),
        "steps": total_steps,
        "image_size": [eval_views[0].camera.width, eval_views[0].camera.height],
        "device": str(device),
        "train_seconds": round(train_seconds, 2),
        "steps_per_s": round(total_steps / max(train_seconds, 1e-9), 3),
        "rays_per_s": round(total_steps * config.batch_rays / max(train_seconds, 1e-9), 1),
        "peak_memory_bytes": peak_mem,
        "per_view": rows,
        "history": history,
    }
    atomic_write_json(ws.nerf / "metrics.json", metrics)
    pictures = write_report_pictures(ws.reports, eval_views, rows, renders, config.report_views)
    ws.save_config(config, ws.nerf)
    if monitor is not None:
        from recon3d.core.monitor import TrainEvent

        monitor(TrainEvent(backend="nerf", step=total_steps, total_steps=total_steps,
                           metrics={"psnr_test": metrics["psnr"], "ssim_test": metrics["ssim"]},
                           render=render, done=True))
    from recon3d.core.progress import summary

    text = summary(f"nerf: trained {total_steps} steps on {len(scene.train)} views ({device})", [
        (f"{metrics['split']} PSNR", f"{metrics['psnr']:.2f} dB over {len(rows)} views"),
        (f"{metrics['split']} SSIM", f"{metrics['ssim']:.4f}"),
        ("speed", f"{metrics['rays_per_s']:.4g} rays/s, {train_seconds:.0f} s"),
        ("outputs", f"{ws.nerf / 'model.pt'}, {ws.nerf / 'metrics.json'}"),
        ("pictures", ", ".join(str(p) for p in pictures)),
    ] + ([("resumed from", f"step {start}")] if start else []))
    outputs = {"folder": ws.nerf, "model": ws.nerf / "model.pt", "metrics": ws.nerf / "metrics.json",
               **{p.stem: p for p in pictures}}
    return outputs, text

