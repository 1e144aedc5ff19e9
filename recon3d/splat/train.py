"""The splat stage: ``train(config, workspace)`` trains Gaussians from ``sparse/0`` and ``images/``.

Training ends with :mod:`recon3d.splat.cleanup` (Gaussians fewer than 2 training cameras see, or huge
and faint, are removed; the count goes to the summary and ``metrics.json``). Writes
``WS/splat/point_cloud.ply`` (standard 3DGS layout), ``WS/splat/metrics.json`` (held-out
PSNR/SSIM), ``WS/splat/config.yaml`` (the resolved config), ``WS/reports/splat_test_*.png`` and the
stage marker (through :meth:`~recon3d.core.workspace.Workspace.stage`). While it runs, ``WS/splat/ckpt/`` holds checkpoints; a rerun of a killed run resumes from
the newest one and reaches the same result (the view order and every random draw are seeded). The last
checkpoint stays after the run, so that a finished run asked for more ``steps`` trains on from it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from recon3d.core.config import validate
from recon3d.core.errors import UserError
from recon3d.core.signals import interrupts_deferred
from recon3d.core.workspace import StageResult, Workspace, finished_steps
from recon3d.splat.config import SplatConfig
from recon3d.splat.render import resolve_device


def view_order(step: int, n: int, seed: int) -> int:
    """Index of the training view of ``step``: a seeded permutation per epoch (resume-safe, no state)."""
    epoch, i = divmod(step, n)
    return int(np.random.default_rng([seed, epoch]).permutation(n)[i])


def batch_views(step: int, n: int, seed: int, batch: int) -> list[int]:
    """The ``batch`` training views of ``step`` (the views of steps ``step * batch ...`` of :func:`view_order`)."""
    return [view_order(step * batch + j, n, seed) for j in range(batch)]


def downscaled(image: torch.Tensor, K: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``(H, W, 3)`` image averaged over ``factor`` x ``factor`` blocks and its ``(1, 3, 3)`` K.

    Pixel ``i`` of the result covers pixels ``[f i, f i + f)``, so with pixel centres at ``+0.5``
    (COLMAP convention) the intrinsics scale exactly by ``1 / f``.
    """
    if factor == 1:
        return image, K
    h, w = image.shape[0] // factor, image.shape[1] // factor
    small = torch.nn.functional.avg_pool2d(image[: h * factor, : w * factor].permute(2, 0, 1)[None], factor)
    K = K.clone()
    K[:, :2] /= factor
    return small[0].permute(1, 2, 0).contiguous(), K


def _load(ws: Workspace, config: SplatConfig):
    from recon3d.io.colmap import read_model
    from recon3d.io.dataset import load_scene

    model = read_model(ws.require_model())
    side = max((max(width, height) for _, width, height, _ in model.cameras.values()), default=1)
    downscale = max(config.downscale, side / config.max_image_side if config.max_image_side > 0 else 1.0)
    scene = load_scene(ws, downscale=downscale, test_every=config.test_every, model=model)
    if not scene.train:
        raise UserError(f"{ws.model}: no training views left after holding out every {config.test_every}th "
                        "image; add photos or use --set test_every=0")
    return scene


def _event(step: int, config: SplatConfig, params: dict, metrics: dict, sh_degree: int, background, backend: str,
           tile_size: int, done: bool = False):
    """A :class:`~recon3d.monitor.TrainEvent` whose callables read a snapshot of ``params``."""
    from recon3d.core.monitor import TrainEvent
    from recon3d.io.gaussians_ply import SH_C0
    from recon3d.splat.render import render_image, to_uint8

    snap = {k: v.detach() for k, v in params.items()}

    def render_fn(cam_from_world: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
        return to_uint8(render_image(snap, cam_from_world, K, width, height, sh_degree, background, backend, tile_size,
                                     config.rasterize_mode))

    def splats_fn() -> dict:
        q = torch.nn.functional.normalize(snap["quats"], dim=-1)
        return {"means": snap["means"].cpu().numpy(), "quats_wxyz": q.cpu().numpy(),
                "scales": torch.exp(snap["scales"]).cpu().numpy(),
                "opacities": torch.sigmoid(snap["opacities"]).cpu().numpy(),
                "rgbs": (snap["sh0"][:, 0] * SH_C0 + 0.5).clamp(0, 1).cpu().numpy()}

    return TrainEvent("splat", step, config.steps, metrics, render_fn, splats_fn, done)


def _loss(img: torch.Tensor, gt: torch.Tensor, params: dict, config: SplatConfig) -> torch.Tensor:
    """(1 - l) L1 + l (1 - SSIM) of an ``(H, W, 3)`` render, plus the optional regularisers."""
    from recon3d.evaluate.images import ssim

    loss = (1 - config.ssim_lambda) * (img - gt).abs().mean() + config.ssim_lambda * (1 - ssim(img, gt))
    if config.opacity_reg > 0:
        loss = loss + config.opacity_reg * torch.sigmoid(params["opacities"]).mean()
    if config.scale_reg > 0:
        loss = loss + config.scale_reg * torch.exp(params["scales"]).mean()
    return loss


def train(config: SplatConfig, workspace: Workspace, monitor=None, overwrite: bool = False) -> StageResult:
    """Train Gaussian splats on a workspace (the ``splat`` stage).

    A finished run with the same settings is skipped; asked for more ``steps`` it resumes from its
    last checkpoint and trains on; other settings need ``overwrite`` (see
    :func:`recon3d.core.workspace.finished_steps`).

    Args:
        config: the run's settings (:class:`SplatConfig`).
        workspace: workspace with ``sparse/0`` and ``images/``.
        monitor: optional callable receiving :class:`~recon3d.monitor.TrainEvent` every ``log_every`` steps.
        overwrite: discard checkpoints and outputs of an earlier run first.
    Returns:
        :class:`StageResult` with outputs ``ply`` (``splat/point_cloud.ply``), ``metrics`` and ``config``.
    """
    from recon3d.splat import distributed

    validate(config)  # before any work: one line naming a field out of range
    world = max(config.procs, distributed.env_rank()[1])
    if config.batch_size < world:
        raise UserError(f"batch_size {config.batch_size} is smaller than the {world} training processes: each "
                        f"needs a view per step; use --set batch_size={world} (or a multiple)")
    threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    distributed.cuda_device(int(os.environ.get("LOCAL_RANK", distributed.env_rank()[0])))
    comm = distributed.start(config, workspace.root, resolve_device(config)[0], run_worker)
    try:
        if comm.rank > 0:  # a torchrun worker: computes, writes nothing
            run_worker(config, workspace, comm)
            return StageResult({}, skipped=True, summary="")
        return _train(config, workspace, monitor, overwrite, comm)
    except KeyboardInterrupt:
        comm.close(wait=False)
        raise
    except distributed.PeerLost as exc:
        comm.close(wait=False)
        raise UserError(f"splat: another training process stopped ({exc}); rerun the same command") from None
    finally:
        if comm.rank == 0 and comm.active and not comm.sent:
            try:
                comm.broadcast(None)  # nothing to train: the workers stop
            except distributed.PeerLost:
                pass
        comm.close()
        torch.set_num_threads(threads)


def ply_loads(ply: Path) -> bool:
    """Whether a finished run's ``point_cloud.ply`` still reads (a truncated one is trained again)."""
    from recon3d.io.gaussians_ply import read_splat_ply

    try:
        read_splat_ply(ply)
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: not a finished stage
        return False
    return True


def _train(config: SplatConfig, ws: Workspace, monitor, overwrite: bool, comm) -> StageResult:
    from recon3d.splat.checkpoint import stage_key

    ply = ws.splat / "point_cloud.ply"
    key = stage_key(config)
    done_before = None if overwrite else finished_steps(ws, "splat", key, config.steps, ws.splat)
    with ws.stage("splat", key, overwrite, check=lambda _: done_before == config.steps and ply_loads(ply)) as run:
        if run.skipped:
            return StageResult(run.previous_outputs, skipped=True,
                               summary=f"splat: already trained with these settings ({ply}); "
                                       "pass --overwrite to train again")
        if overwrite:
            shutil.rmtree(ws.splat / "ckpt", ignore_errors=True)
        run.outputs, summary = _fit(config, ws, monitor, comm)
        run.info = {"steps": config.steps}
    return StageResult(run.outputs, skipped=False, summary=summary)


def _cleanup(params: dict, scene, scene_scale: float, config: SplatConfig):
    """``(params of the kept Gaussians, Cleanup)``: :func:`recon3d.splat.cleanup.cleanup_mask` over the
    training cameras."""
    from recon3d.splat.cleanup import cleanup_mask, prune_params

    views = scene.train
    with torch.no_grad():
        clean = cleanup_mask(
            params["means"].detach().cpu().numpy(), torch.exp(params["scales"]).detach().cpu().numpy(),
            torch.sigmoid(params["opacities"]).detach().cpu().numpy(),
            np.stack([v.cam_from_world for v in views]), np.stack([v.camera.K for v in views]),
            np.array([(v.camera.width, v.camera.height) for v in views]), scene_scale,
            config.cleanup_min_views, config.cleanup_huge_scale, config.cleanup_faint_opacity)
    return (prune_params(params, clean.keep) if clean.removed else params), clean


def _gpu_settings(config: SplatConfig, device: torch.device, backend: str) -> tuple[bool, bool]:
    """``(packed, sparse_grad)`` as this run uses them. gsplat's CUDA-only settings: ``absgrad`` changes
    the result, so the torch rasterizer refuses it; ``packed`` and ``sparse_grad`` are memory layouts
    (same images), so it ignores them, with a note."""
    from recon3d.splat import model as M

    if config.sparse_grad and not config.packed:
        raise UserError("sparse_grad=true needs packed=true (gsplat's sparse gradients come from the packed "
                        "layout): add --set packed=true")
    if backend == "cuda":
        sparse = M.sparse_grads(config, device)
        if sparse and (config.batch_size > 1 or config.procs > 1):
            raise UserError("sparse_grad=true trains one view per step in one process: drop it, or use "
                            "--set batch_size=1 without --procs")
        return config.packed, sparse
    if config.absgrad:
        raise UserError("absgrad=true needs gsplat's CUDA rasterizer (a CUDA GPU); the torch rasterizer has no "
                        "absolute 2D gradients: drop --set absgrad=true or train with --device cuda")
    ignored = [name for name in ("packed", "sparse_grad") if getattr(config, name)]
    if ignored:
        M.warn(f"{' and '.join(ignored)}: CUDA-only memory settings, ignored by the torch rasterizer "
               "(same images, no effect on the result)")
    return False, False


class _Trainer:
    """The training step every process runs: its share of the step's views, then (over processes)
    summed gradients and densification statistics, the optimiser update and the strategy."""

    def __init__(self, config: SplatConfig, scene, device: torch.device, backend: str, comm, params: dict,
                 optimizers: dict, strategy, state: dict):
        from recon3d.splat import model as M

        self.config, self.device, self.backend, self.comm = config, device, backend, comm
        self.packed, self.sparse = _gpu_settings(config, device, backend)
        self.params, self.optimizers, self.strategy, self.state = params, optimizers, strategy, state
        self.scale = scene.scene_scale()
        self.bg = torch.tensor(config.background, dtype=torch.float32, device=device)
        if self.bg.shape != (3,):
            raise UserError(f"background {config.background}: expected three numbers (R, G, B) in [0, 1]")
        self.views = [(torch.as_tensor(v.image, device=device),
                       torch.as_tensor(M.viewmat(v.cam_from_world), dtype=torch.float32, device=device)[None],
                       torch.as_tensor(v.camera.K, dtype=torch.float32, device=device)[None]) for v in scene.train]
        self.pyramid: dict[tuple[int, int], tuple] = {}
        self.last: tuple = ()
        """(render (H, W, 3), photo (H, W, 3), loss) of this process's last view."""
        self.done = 0

    def _view(self, i: int, step: int) -> tuple:
        gt, vm, K = self.views[i]
        factor = 2 ** max(self.config.num_downscales - step // max(self.config.resolution_schedule, 1), 0)
        if factor > 1:
            if (i, factor) not in self.pyramid:
                self.pyramid[(i, factor)] = downscaled(gt, K, factor)
            gt, K = self.pyramid[(i, factor)]
        return gt, vm, K

    def step(self, step: int) -> int:
        """Train ``step`` (sets ``done`` to ``step + 1`` once the update is complete); returns the SH degree."""
        from recon3d.splat import model as M
        from recon3d.splat.strategy import (
            add_statistics,
            after_backward,
            before_backward,
            view_statistics,
        )

        c, comm, params = self.config, self.comm, self.params
        mine = batch_views(step, len(self.views), c.seed, c.batch_size)[comm.rank::comm.world]
        sh = min(step // max(c.sh_degree_interval, 1), c.sh_degree)
        lr = M.means_lr(c, self.scale, step)
        self.optimizers["means"].param_groups[0]["lr"] = lr
        with interrupts_deferred():  # Ctrl-C / SIGTERM wait for the update: the state stays consistent
            stats = None
            for i in mine:
                gt, vm, K = self._view(i, step)
                img, _, info = M.render(params, vm, K, gt.shape[1], gt.shape[0], sh, self.bg, self.backend,
                                        c.tile_size, c.absgrad, c.rasterize_mode, self.packed, self.sparse)
                before_backward(self.strategy, params, self.optimizers, self.state, step, info)
                loss = _loss(img[0], gt, params, c) / c.batch_size
                if loss.requires_grad:  # False only when no Gaussian is in view
                    loss.backward()
                if step < c.refine_stop:
                    stats = add_statistics(stats, view_statistics(self.strategy, info, len(params["means"]),
                                                                  c.batch_size, self.packed))
                self.last = (img[0].detach(), gt, float(loss.detach()) * c.batch_size)
            has_grad = [p.grad is not None for p in params.values()]
            if comm.active:  # sum gradients and statistics over the processes
                flags = torch.tensor(has_grad, dtype=torch.float32, device=self.device)
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params.values()]
                comm.sum_(grads + ([stats["grad2d"], stats["count"]] if stats else []) + [flags])
                if stats:
                    comm.max_(stats["radii"])
                has_grad = [bool(f > 0) for f in flags]
                for p, g, h in zip(params.values(), grads, has_grad):
                    p.grad = g if h else None
            if any(has_grad):
                if self.sparse:  # one view, one process (checked): its packed ids
                    M.sparsify_grads(params, info)
                for opt in self.optimizers.values():
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                after_backward(self.strategy, params, self.optimizers, self.state, step, {"stats": stats}, lr,
                               self.packed)
            self.done = step + 1
            if step % c.refine_every == 0:
                comm.check_same(params["means"], step)
        return sh


def run_worker(config: SplatConfig, ws: Workspace, comm) -> None:
    """A process of rank > 0: take rank 0's starting state and compute the steps with it; writes nothing."""
    from recon3d.splat import checkpoint as ckpt
    from recon3d.splat.strategy import make_strategy

    data = comm.broadcast(None)
    if data is None:  # rank 0 has nothing to train (finished, or an error it reports)
        return
    device, backend = resolve_device(config)
    scene = _load(ws, config)
    params, optimizers, state, start = ckpt.restore(data, config, scene.scene_scale(), device)
    if device.type == "cuda" and data.get("rng_cuda_current") is not None:
        torch.cuda.set_rng_state(data["rng_cuda_current"])  # rank 0's GPU's stream of random numbers
    strategy, _ = make_strategy(config, scene.scene_scale(), device)
    trainer = _Trainer(config, scene, device, backend, comm, params, optimizers, strategy, state)
    for step in range(start, config.steps):
        trainer.step(step)
    comm.counts(len(params["means"]), device)  # rank 0 reports them


def _fit(config: SplatConfig, ws: Workspace, monitor, comm) -> tuple[dict[str, Path], str]:
    """Train (resuming from the newest checkpoint of this run), write the outputs; (outputs, summary)."""
    from recon3d.core.log import TrainLog
    from recon3d.core.progress import note, progress, summary
    from recon3d.io.gaussians_ply import write_splat_ply
    from recon3d.splat import checkpoint as ckpt
    from recon3d.splat import model as M
    from recon3d.splat.distributed import PeerLost
    from recon3d.splat.evaluate import evaluate
    from recon3d.splat.render import final_sh_degree
    from recon3d.splat.strategy import make_strategy

    ply = ws.splat / "point_cloud.ply"
    ckpt_dir = ws.splat / "ckpt"
    device, backend = resolve_device(config)
    if config.device == "auto" and device.type == "cpu" and config.max_image_side > 400:
        M.warn("no CUDA GPU found: training on the CPU with the torch rasterizer, which is slow and meant for "
               "small images (try --method splat-cpu: 160 px, 500 steps)")
    tile = config.tile_size
    scene = _load(ws, config)
    scale = scene.scene_scale()

    torch.manual_seed(config.seed)
    resumed = ckpt.load_latest(ckpt_dir, config)
    if resumed is not None:
        params, optimizers, state, start = ckpt.restore(resumed, config, scale, device)
        if start > config.steps:
            raise UserError(f"{resumed['path']}: this run is at step {start}, past --steps {config.steps}; "
                            "ask for more steps or rerun with --overwrite")
        strategy, _ = make_strategy(config, scale, device)
        note(f"splat: resuming from {resumed['path'].name} (step {start}/{config.steps})")
    else:
        params = M.params_from_splats(M.init_splats(scene, config), device)
        optimizers = M.make_optimizers(params, config, scale)
        strategy, state = make_strategy(config, scale, device)
        start = 0
    strategy.check_sanity(params, optimizers)
    trainer = _Trainer(config, scene, device, backend, comm, params, optimizers, strategy, state)
    bg = trainer.bg
    if comm.active:  # every process starts from this state (fresh or resumed)
        data = ckpt.snapshot(start, params, optimizers, state, config)
        data["rng_cuda_current"] = torch.cuda.get_rng_state() if device.type == "cuda" else None
        comm.broadcast(data)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, last_t, last_step = time.perf_counter(), time.perf_counter(), start
    metrics: dict = {}
    h, w = trainer.views[0][0].shape[:2]
    procs = f", {comm.world} processes" if comm.active else ""
    note(f"splat: {len(trainer.views)} training views ({w}x{h} px), {len(params['means'])} Gaussians, "
         f"{device.type} ({backend} rasterizer{procs}), steps {start}..{config.steps}")
    bar = progress(range(start, config.steps), desc="splat", unit="step", total=config.steps, initial=start)
    trainer.done = done = start
    curve = TrainLog(ws.splat, start)  # splat/log.jsonl (+ TensorBoard events with --log tensorboard)
    try:
        for step in bar:
            sh = trainer.step(step)
            done = trainer.done
            if done % config.log_every == 0 or done == config.steps:
                now = time.perf_counter()
                img, gt, loss = trainer.last
                mse = float(((img - gt) ** 2).mean())
                metrics = {"loss": loss, "psnr": float(-10 * np.log10(max(mse, 1e-12))),
                           "num_gaussians": len(params["means"]),
                           "steps_per_s": (done - last_step) / max(now - last_t, 1e-9)}
                last_t, last_step = now, done
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", psnr=f"{metrics['psnr']:.2f}",
                                gaussians=metrics["num_gaussians"], refresh=False)
                curve.log(done, {**metrics, "lr_means": optimizers["means"].param_groups[0]["lr"], "sh_degree": sh})
                if monitor is not None:
                    monitor(_event(done, config, params, metrics, sh, bg, backend, tile))
            if done % config.checkpoint_every == 0 and done < config.steps:
                ckpt.save_checkpoint(ckpt_dir, done, params, optimizers, state, config, config.keep_checkpoints)
    except (KeyboardInterrupt, PeerLost) as exc:
        done = trainer.done
        if done > start:  # a consistent state (updates are never cut in half): keep it for the rerun
            ckpt.save_checkpoint(ckpt_dir, done, params, optimizers, state, config, config.keep_checkpoints)
        if isinstance(exc, PeerLost):
            saved = f"step {done} is saved, " if done > start else ""
            raise UserError(f"splat: another training process stopped ({exc}); {saved}rerun the same command "
                            "to resume") from None
        raise
    finally:
        curve.close()
    bar.close()
    counts = comm.counts(len(params["means"]), device)
    if len(set(counts)) > 1:
        raise UserError(f"splat: the training processes ended with different models ({counts} Gaussians); "
                        "train again with --overwrite, or with --procs 1")
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    # the last checkpoint stays: asked for more steps, a finished run trains on from here
    ckpt.save_checkpoint(ckpt_dir, config.steps, params, optimizers, state, config, keep=1)

    params, cleaned = _cleanup(params, scene, scale, config)
    sh = final_sh_degree(config)
    write_splat_ply(ply, M.splats_from_params(params))
    views, split = (scene.test, "test") if scene.test else (scene.train, "train")
    h, w = views[0].image.shape[:2]
    result = evaluate(params, views, split, ws, sh, bg, backend, tile, config.report_views,
                      extra={"steps": config.steps, "train_seconds": round(seconds, 2), "device": device.type,
                             "rasterizer": backend, "resolution": [w, h], "resumed_from": start or None,
                             "batch_size": config.batch_size, "processes": comm.world,
                             "gaussians_per_process": counts,  # at the end of training, before the cleanup
                             "steps_per_s": round((config.steps - start) / max(seconds, 1e-9), 3),
                             "peak_memory_bytes": peak, "cleanup_removed": cleaned.removed,
                             "cleanup": {"unseen": cleaned.unseen, "huge_faint": cleaned.huge_faint,
                                         "min_views": config.cleanup_min_views}},
                      rasterize_mode=config.rasterize_mode)
    cfg_path = ws.save_config(config, ws.splat)
    if monitor is not None:
        final = {**metrics, "num_gaussians": len(params["means"]),  # after the cleanup
                 **({"psnr_test": result["psnr"], "ssim_test": result["ssim"]} if split == "test" else {})}
        monitor(_event(config.steps, config, params, final, sh, bg, backend, tile, done=True))
    rows = [
        ("steps", f"{config.steps} ({seconds:.0f} s this run, {device.type}, {backend} rasterizer)"),
        ("gaussians", f"{len(params['means'])} (cleanup removed {cleaned.removed}: {cleaned.unseen} seen by fewer "
                      f"than {config.cleanup_min_views} training cameras, {cleaned.huge_faint} huge and faint)"),
        (f"{split} PSNR", f"{result['psnr']:.2f} dB over {result['num_views']} views"),
        (f"{split} SSIM", f"{result['ssim']:.4f}"),
        ("model", ply),
        ("metrics", ws.splat / "metrics.json"),
    ]
    if resumed is not None:
        rows.insert(1, ("resumed from", f"{resumed['path'].name} (step {start})"))
    outputs = {"ply": ply, "metrics": ws.splat / "metrics.json", "config": cfg_path}
    return outputs, summary("splat: done", rows)
