"""Where along each ray to sample: spacing functions, stratified bins, PDF (proposal) resampling.

Samples are intervals (bins) along a ray. Bins are placed in a normalised *spacing* coordinate
``s`` in [0, 1] that maps to ray distance ``t`` through a spacing function ``g``::

    s = (g(t) - g(near)) / (g(far) - g(near))

* ``linear``: ``g(t) = t`` (objects in a box).
* ``lindisp``: ``g(t) = t / 2`` for ``t < 1``, ``1 - 1 / (2 t)`` beyond (mip-NeRF 360 / nerfacto's
  piecewise spacing): linear inside the unit ball, linear in disparity outside, so a few samples
  cover the contracted background out to ``far``.

A proposal level evaluates density on its bins, turns it into weights, and
:func:`pdf_bins` draws the next level's bins from those weights (in ``s``).
"""

from __future__ import annotations

import torch


def spacing_fn(t: torch.Tensor, kind: str) -> torch.Tensor:
    """``g(t)`` of a spacing kind, ``(*) -> (*)``."""
    if kind == "linear":
        return t
    if kind == "lindisp":
        return torch.where(t < 1.0, t * 0.5, 1.0 - 0.5 / t.clamp_min(1.0))
    raise ValueError(f"unknown spacing {kind!r}")


def spacing_inv(g: torch.Tensor, kind: str) -> torch.Tensor:
    """Inverse of :func:`spacing_fn`, ``(*) -> (*)``."""
    if kind == "linear":
        return g
    if kind == "lindisp":
        return torch.where(g < 0.5, g * 2.0, 0.5 / (1.0 - g).clamp_min(1e-7))
    raise ValueError(f"unknown spacing {kind!r}")


def t_from_s(s: torch.Tensor, near: torch.Tensor, far: torch.Tensor, kind: str) -> torch.Tensor:
    """Ray distances of spacing coordinates.

    Args:
        s: ``(R, K)`` in [0, 1].
        near, far: ``(R,)`` ray bounds.
    Returns:
        ``(R, K)`` distances.
    """
    g0, g1 = spacing_fn(near, kind)[:, None], spacing_fn(far, kind)[:, None]
    return spacing_inv(g0 + s * (g1 - g0), kind)


def uniform_bins(num_rays: int, num_samples: int, stratified: bool, device=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Evenly spaced bin edges in ``s``, jittered as a whole per ray when ``stratified``.

    Returns:
        ``(R, num_samples + 1)`` increasing edges in [0, 1].
    """
    edges = torch.linspace(0.0, 1.0, num_samples + 1, device=device).expand(num_rays, -1)
    if stratified:
        # shift interior edges by up to half a bin; endpoints stay at 0 and 1
        jitter = (torch.rand(num_rays, num_samples + 1, device=device, generator=generator) - 0.5) / num_samples
        jitter[:, 0] = 0.0
        jitter[:, -1] = 0.0
        edges = edges + jitter
    return edges.contiguous()


def pdf_bins(bins: torch.Tensor, weights: torch.Tensor, num_samples: int, stratified: bool,
             padding: float = 0.01, eps: float = 1e-5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw new bin edges from the piecewise-constant PDF of ``weights`` over ``bins``.

    Args:
        bins: ``(R, K + 1)`` increasing edges (spacing coordinate).
        weights: ``(R, K)`` non-negative weights of the bins (not differentiated).
        num_samples: new bins per ray.
        stratified: jitter the quantiles (training) instead of evenly spaced ones.
        padding: added to every weight, so empty space still gets a few samples.
    Returns:
        ``(R, num_samples + 1)`` increasing edges within ``[bins[:, 0], bins[:, -1]]``.
    """
    weights = weights.detach() + padding
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1).clamp(max=1.0)], dim=-1)
    cdf[:, -1] = 1.0
    R = bins.shape[0]
    if stratified:
        u = torch.linspace(0.0, 1.0 - 1.0 / (num_samples + 1), num_samples + 1, device=bins.device)
        u = u + torch.rand(R, num_samples + 1, device=bins.device, generator=generator) / (num_samples + 1)
    else:
        u = torch.linspace(0.0, 1.0, num_samples + 1, device=bins.device).expand(R, -1)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf0, cdf1 = cdf.gather(-1, below), cdf.gather(-1, above)
    b0, b1 = bins.gather(-1, below), bins.gather(-1, above)
    frac = ((u - cdf0) / (cdf1 - cdf0).clamp_min(eps)).clamp(0.0, 1.0)
    new = b0 + frac * (b1 - b0)
    new, _ = torch.sort(new, dim=-1)
    # pin the ends to the ray's range so every level covers the same interval
    new = torch.cat([bins[:, :1], new[:, 1:-1], bins[:, -1:]], dim=-1)
    return new.detach()
