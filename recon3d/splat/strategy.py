"""Densification: gsplat's strategies, configured from :class:`SplatConfig`, on GPU and CPU.

``default`` is ``gsplat.DefaultStrategy`` (clone, split, prune, opacity reset; pure torch, so it runs
on CPU unchanged). ``mcmc`` is ``gsplat.MCMCStrategy``; two of its steps call CUDA kernels
(``compute_relocation``, ``quat_scale_to_covar_preci``), so on CPU :class:`TorchMCMCStrategy` runs
the same steps with torch twins (Eq. 9 of Kheradmand et al. 2024 for the relocation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat import DefaultStrategy, MCMCStrategy
from torch import Tensor

from recon3d.splat.config import SplatConfig


@dataclass
class BatchDefaultStrategy(DefaultStrategy):
    """``gsplat.DefaultStrategy`` whose running state grows by the statistics of the step's whole
    batch (all views, all processes: ``info["stats"]``, see :func:`view_statistics`) instead of
    by one rendered view's: the densification decisions of a batch or of several processes are
    those of gsplat on the same views."""

    def _update_state(self, params, state, info, packed=False):
        # a rasterizer's meta of one view (gsplat's own call) or the step's summed statistics
        stats = info["stats"] if "stats" in info else view_statistics(self, info, len(params["means"]), 1, packed)
        if stats is None:
            return
        for key in ("grad2d", "count"):
            if state[key] is None:
                state[key] = torch.zeros_like(stats[key])
            state[key] += stats[key]
        if self.refine_scale2d_stop_iter > 0:
            state["radii"] = stats["radii"].clone() if state["radii"] is None else \
                torch.maximum(state["radii"], stats["radii"])


def make_strategy(config: SplatConfig, scene_scale: float, device: torch.device) -> tuple[Any, dict]:
    """The strategy object (thresholds only) and its fresh mutable state dict."""
    if config.strategy == "mcmc":
        cls = MCMCStrategy if device.type == "cuda" else TorchMCMCStrategy
        strategy = cls(cap_max=config.cap_max, noise_lr=config.noise_lr, refine_start_iter=config.refine_start,
                       refine_stop_iter=config.refine_stop, refine_every=config.refine_every,
                       min_opacity=config.prune_opacity)
        return strategy, strategy.initialize_state()
    strategy = BatchDefaultStrategy(
        prune_opa=config.prune_opacity, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
        prune_scale3d=config.prune_scale3d, refine_start_iter=config.refine_start,
        refine_stop_iter=config.refine_stop, reset_every=config.reset_every, refine_every=config.refine_every,
        absgrad=config.absgrad,
    )
    return strategy, strategy.initialize_state(scene_scale=scene_scale)


def view_statistics(strategy: Any, info: dict, num_gaussians: int, batch: int,
                    packed: bool = False) -> dict[str, Tensor] | None:
    """Densification statistics of one rendered view, as gsplat's ``DefaultStrategy`` accumulates them.

    Args:
        strategy: the strategy (None is returned for MCMC, which keeps no statistics).
        info: the rasterizer's meta of one view (``means2d`` (1, N, 2) with its gradient, ``radii``
            (1, N, 2), ``width``, ``height``).
        num_gaussians: N.
        batch: views per step (all processes): each view's loss was divided by it.
        packed: ``info`` is gsplat's packed layout (``means2d`` (nnz, 2), ``radii`` (nnz, 2),
            ``gaussian_ids`` (nnz,)).
    Returns:
        ``{"grad2d": (N,) screen-gradient norms, "count": (N,) 1 where visible, "radii": (N,) screen
        radius / image size}`` (sums over views and processes, except ``radii``: maximum).
    """
    if not isinstance(strategy, DefaultStrategy):
        return None
    device = info["means2d"].device
    out = {k: torch.zeros(num_gaussians, device=device) for k in ("grad2d", "count", "radii")}
    means2d = info[strategy.key_for_gradient]
    grads = means2d.absgrad if strategy.absgrad else means2d.grad
    if grads is None:
        return out
    grads = grads.clone()
    grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"] * batch  # the gradient of the view's own loss
    grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"] * batch
    if packed:  # one row per visible (camera, Gaussian)
        ids, grads, radii = info["gaussian_ids"], grads, info["radii"]
    else:
        sel = (info["radii"] > 0.0).all(dim=-1)  # (C, N)
        ids, grads, radii = torch.where(sel)[1], grads[sel], info["radii"][sel]
    out["grad2d"].index_add_(0, ids, grads.norm(dim=-1))
    out["count"].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
    radii = radii.max(dim=-1).values.float() / float(max(info["width"], info["height"]))
    out["radii"].scatter_reduce_(0, ids, radii, reduce="amax")
    return out


def add_statistics(total: dict | None, more: dict | None) -> dict | None:
    """Statistics of several views together (sums, radii by maximum)."""
    if total is None or more is None:
        return more if total is None else total
    return {"grad2d": total["grad2d"] + more["grad2d"], "count": total["count"] + more["count"],
            "radii": torch.maximum(total["radii"], more["radii"])}


def before_backward(strategy: Any, params: dict, optimizers: dict, state: dict, step: int, info: dict) -> None:
    """Call the strategy's pre-backward hook (keeps ``info['means2d'].grad``)."""
    if isinstance(strategy, DefaultStrategy):
        strategy.step_pre_backward(params, optimizers, state, step, info)


def after_backward(strategy: Any, params: dict, optimizers: dict, state: dict, step: int, info: dict,
                   means_lr: float, packed: bool = False) -> None:
    """Call the strategy's post-backward hook (densify, prune, relocate ...); ``packed``: gsplat's packed layout.

    ``info["stats"]``: the step's :func:`view_statistics` of all its views (all processes), which
    the default strategy adds to its running state."""
    if isinstance(strategy, MCMCStrategy):
        strategy.step_post_backward(params, optimizers, state, step, info, lr=means_lr)
        return
    strategy.step_post_backward(params, optimizers, state, step, info, packed=packed)
    # gsplat 1.5.3 tests `step % reset_every == 0 & step > 0`, which Python reads as
    # `step % reset_every == (0 & step) > 0`: always false, so it never resets opacities. Do the
    # 3DGS reset here (clamping opacities is idempotent, so a fixed gsplat resetting too is harmless).
    if 0 < step < strategy.refine_stop_iter and step % strategy.reset_every == 0:
        from gsplat.strategy.ops import reset_opa

        reset_opa(params=params, optimizers=optimizers, state=state, value=strategy.prune_opa * 2.0)


# ------------------------------------------------------------------------- MCMC, torch twin
def _compute_relocation(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor) -> tuple[Tensor, Tensor]:
    """Torch twin of ``gsplat.relocation.compute_relocation`` (Eq. 9 of 3DGS-MCMC).

    Args:
        opacities: ``(M,)``; scales: ``(M, 3)``; ratios: ``(M,)`` copies per Gaussian; binoms: ``(n, n)``.
    Returns:
        new ``opacities (M,)`` and ``scales (M, 3)``.
    """
    n_max = binoms.shape[0]
    ratios = ratios.clamp(1, n_max).long()
    new_opa = 1.0 - torch.pow(1.0 - opacities, 1.0 / ratios)
    i = torch.arange(1, n_max + 1, device=opacities.device)
    k = torch.arange(n_max, device=opacities.device)
    used = (k[None, :] <= i[:, None] - 1)  # [i, k]
    terms = binoms[:n_max, :n_max] * used * ((-1.0) ** k / torch.sqrt(k + 1.0))  # [i, k]
    powers = new_opa[:, None] ** (k + 1.0)  # [M, k]
    per_i = powers @ terms.T  # [M, i]
    denom = (per_i * (i[None, :] <= ratios[:, None])).sum(1)
    return new_opa, (opacities / denom)[:, None] * scales


def _relocated(params: dict, opacities: Tensor, sampled: Tensor, binoms: Tensor, min_opacity: float) -> dict:
    """New raw ``opacities`` (logits) and ``scales`` (logs) of the ``sampled`` Gaussians, which share
    their opacity with the copies made of them (Eq. 9 of 3DGS-MCMC, opacity clamped to
    ``[min_opacity, 1 - eps]``); ``opacities`` are the activated ones of all Gaussians."""
    new_opa, new_scales = _compute_relocation(opacities[sampled], torch.exp(params["scales"])[sampled],
                                              torch.bincount(sampled)[sampled] + 1, binoms)
    new_opa = new_opa.clamp(min=min_opacity, max=1.0 - torch.finfo(torch.float32).eps)
    return {"opacities": torch.logit(new_opa), "scales": torch.log(new_scales)}


@torch.no_grad()
def _relocate(params: dict, optimizers: dict, mask: Tensor, binoms: Tensor, min_opacity: float) -> None:
    """Move dead Gaussians (``mask``) onto live ones sampled by opacity (as ``gsplat.strategy.ops.relocate``)."""
    from gsplat.strategy.ops import _multinomial_sample, _update_param_with_optimizer

    opacities = torch.sigmoid(params["opacities"])
    dead = mask.nonzero(as_tuple=True)[0]
    alive = (~mask).nonzero(as_tuple=True)[0]
    sampled = alive[_multinomial_sample(opacities[alive].flatten(), len(dead), replacement=True)]
    new = _relocated(params, opacities, sampled, binoms, min_opacity)

    def param_fn(name: str, p: Tensor) -> Tensor:
        if name in new:
            p[sampled] = new[name]
        p[dead] = p[sampled]
        return torch.nn.Parameter(p, requires_grad=p.requires_grad)

    def optimizer_fn(key: str, v: Tensor) -> Tensor:
        v[sampled] = 0
        return v

    _update_param_with_optimizer(param_fn, optimizer_fn, params, optimizers)


@torch.no_grad()
def _sample_add(params: dict, optimizers: dict, n: int, binoms: Tensor, min_opacity: float) -> None:
    """Add ``n`` Gaussians copied from live ones sampled by opacity (as ``gsplat.strategy.ops.sample_add``)."""
    from gsplat.strategy.ops import _multinomial_sample, _update_param_with_optimizer

    opacities = torch.sigmoid(params["opacities"])
    sampled = _multinomial_sample(opacities.flatten(), n, replacement=True)
    new = _relocated(params, opacities, sampled, binoms, min_opacity)

    def param_fn(name: str, p: Tensor) -> Tensor:
        if name in new:
            p[sampled] = new[name]
        return torch.nn.Parameter(torch.cat([p, p[sampled]]), requires_grad=p.requires_grad)

    def optimizer_fn(key: str, v: Tensor) -> Tensor:
        return torch.cat([v, torch.zeros((len(sampled), *v.shape[1:]), device=v.device)])

    _update_param_with_optimizer(param_fn, optimizer_fn, params, optimizers)


@torch.no_grad()
def _inject_noise(params: dict, scaler: float) -> None:
    """Perturb the centres of transparent Gaussians (as ``gsplat.strategy.ops.inject_noise_to_position``)."""
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    opacities = torch.sigmoid(params["opacities"].flatten())
    covars, _ = _quat_scale_to_covar_preci(params["quats"], torch.exp(params["scales"]), compute_preci=False)
    gate = 1.0 / (1.0 + torch.exp(-100.0 * ((1.0 - opacities) - 0.995)))
    noise = torch.randn_like(params["means"]) * gate[:, None] * scaler
    params["means"].add_(torch.einsum("bij,bj->bi", covars, noise))


@dataclass
class TorchMCMCStrategy(MCMCStrategy):
    """``gsplat.MCMCStrategy`` with its CUDA-only steps replaced by torch twins (runs on CPU)."""

    def step_post_backward(self, params, optimizers, state, step, info, lr):  # noqa: D102 (as gsplat)
        binoms = state["binoms"] = state["binoms"].to(params["means"].device)
        if self.refine_start_iter < step < self.refine_stop_iter and step % self.refine_every == 0:
            dead = torch.sigmoid(params["opacities"].flatten()) <= self.min_opacity
            if dead.any() and not dead.all():
                _relocate(params, optimizers, dead, binoms, self.min_opacity)
            n_new = max(0, min(self.cap_max, int(1.05 * len(params["means"]))) - len(params["means"]))
            if n_new > 0:
                _sample_add(params, optimizers, n_new, binoms, self.min_opacity)
        _inject_noise(params, lr * self.noise_lr)
