"""Volume rendering (Max 1995; Mildenhall et al. 2020) and the proposal-network losses.

For samples ``i`` along a ray with density ``sigma_i`` over intervals of length ``delta_i``::

    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = exp(-sum_{j < i} sigma_j * delta_j)          (transmittance reaching sample i)
    w_i     = T_i * alpha_i                                 (compositing weight)
    C       = sum_i w_i c_i + (1 - sum_i w_i) * background

Losses (Barron et al., mip-NeRF 360, 2022): the *interlevel* loss asks each proposal level's
weights, summed over the proposal bins that overlap a final bin, to bound the final weights
from above; the *distortion* loss pulls each ray's weights into a compact interval.
"""

from __future__ import annotations

import torch


def compositing_weights(density: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compositing weights and transmittance.

    Args:
        density: ``(R, S)`` non-negative densities.
        deltas: ``(R, S)`` interval lengths.
    Returns:
        weights ``(R, S)`` and transmittance ``(R, S + 1)``: ``T_0 = 1`` ... ``T_S`` (what passes all samples).
    """
    tau = density * deltas
    cum = torch.cumsum(tau, dim=-1)
    trans = torch.exp(-torch.cat([torch.zeros_like(cum[:, :1]), cum], dim=-1))
    alpha = 1.0 - torch.exp(-tau)
    return trans[:, :-1] * alpha, trans


def composite(weights: torch.Tensor, values: torch.Tensor, background: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i w_i v_i`` plus ``(1 - sum w) * background``.

    Args:
        weights: ``(R, S)``.
        values: ``(R, S, C)``.
        background: ``(R, C)`` or ``(C,)``, or None (black).
    Returns:
        ``(R, C)``.
    """
    out = (weights[..., None] * values).sum(-2)
    if background is not None:
        out = out + (1.0 - weights.sum(-1, keepdim=True)) * background
    return out


def expected_distance(weights: torch.Tensor, t_mid: torch.Tensor, far: torch.Tensor | None = None) -> torch.Tensor:
    """Weight-averaged ray distance ``(R, S), (R, S) -> (R,)`` (the leftover weight counts at ``far`` when given)."""
    acc = weights.sum(-1)
    d = (weights * t_mid).sum(-1)
    if far is not None:
        return d + (1.0 - acc).clamp_min(0.0) * far
    return d / acc.clamp_min(1e-10)


def median_distance(weights: torch.Tensor, t_bins: torch.Tensor) -> torch.Tensor:
    """Distance where the accumulated weight reaches half of the ray's opacity (robust to faint floaters
    and to the far background, unlike the weighted mean).

    Args:
        weights: ``(R, S)``; t_bins: ``(R, S + 1)`` bin edges.
    Returns:
        ``(R,)`` midpoint of the bin where the cumulative weight crosses ``0.5 * sum(weights)``.
    """
    cw = torch.cumsum(weights, dim=-1)
    half = 0.5 * cw[:, -1:]
    k = torch.searchsorted(cw.contiguous(), half.contiguous()).clamp(max=weights.shape[-1] - 1)
    return 0.5 * (t_bins.gather(-1, k) + t_bins.gather(-1, k + 1))[:, 0]


def outer_weights(bins: torch.Tensor, bins_env: torch.Tensor, weights_env: torch.Tensor) -> torch.Tensor:
    """Sum of envelope weights over the envelope bins that overlap each bin.

    Args:
        bins: ``(R, S + 1)`` edges of the bins to bound.
        bins_env: ``(R, K + 1)`` envelope (proposal) edges over the same range.
        weights_env: ``(R, K)`` envelope weights.
    Returns:
        ``(R, S)`` upper-envelope weights.
    """
    cw = torch.cat([torch.zeros_like(weights_env[:, :1]), torch.cumsum(weights_env, dim=-1)], dim=-1)
    lo = (torch.searchsorted(bins_env.contiguous(), bins[:, :-1].contiguous(), right=True) - 1).clamp(0, cw.shape[-1] - 1)
    hi = torch.searchsorted(bins_env.contiguous(), bins[:, 1:].contiguous(), right=False).clamp(0, cw.shape[-1] - 1)
    return cw.gather(-1, hi) - cw.gather(-1, lo)


def interlevel_loss(bins: torch.Tensor, weights: torch.Tensor,
                    proposals: list[tuple[torch.Tensor, torch.Tensor]], eps: float = 1e-7) -> torch.Tensor:
    """Proposal loss: ``mean_rays sum_i max(0, w_i - w_outer_i)^2 / w_i`` per proposal level.

    Args:
        bins: ``(R, S + 1)`` final edges; weights: ``(R, S)`` final weights (treated as constants).
        proposals: ``[(bins (R, K + 1), weights (R, K)), ...]`` of the proposal levels (differentiated).
    Returns:
        scalar.
    """
    w = weights.detach()
    b = bins.detach()
    loss = w.new_zeros(())
    for bins_p, w_p in proposals:
        w_outer = outer_weights(b, bins_p.detach(), w_p)
        loss = loss + ((w - w_outer).clamp_min(0.0) ** 2 / (w + eps)).sum(-1).mean()
    return loss


def distortion_loss(bins: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360 distortion loss in linear time.

    ``L = sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i)`` with ``m`` the bin midpoints.

    Args:
        bins: ``(R, S + 1)`` edges (spacing coordinate, so distant bins do not dominate).
        weights: ``(R, S)``.
    Returns:
        scalar (mean over rays).
    """
    mid = 0.5 * (bins[:, 1:] + bins[:, :-1])
    width = bins[:, 1:] - bins[:, :-1]
    w_cum = torch.cumsum(weights, dim=-1)
    wm_cum = torch.cumsum(weights * mid, dim=-1)
    # sum_{i != j} = 2 sum_i w_i (m_i W_{<i} - WM_{<i}), with W_{<i} = w_cum_i - w_i
    inter = 2.0 * (weights * (mid * (w_cum - weights) - (wm_cum - weights * mid))).sum(-1)
    intra = (weights**2 * width).sum(-1) / 3.0
    return (inter + intra).mean()
