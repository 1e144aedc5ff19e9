"""Render 3D Gaussians: gsplat's CUDA rasterizer, and a pure-torch twin for CPUs.

:func:`rasterize` is the one render function. On CUDA tensors it calls ``gsplat.rasterization``
(unpacked layout); elsewhere, or with ``backend="torch"``, it calls :func:`_rasterize_torch`,
which follows the CUDA kernels step by step with torch ops so that autograd gives the same
gradients:

1. projection: the EWA arithmetic of ``gsplat.cuda._torch_impl._world_to_cam`` / ``_persp_proj``
   (rotations from ``_quat_to_rotmat``; tests check it against ``_fully_fused_projection``) with the
   CUDA kernel's culling: near/far plane, opacity below 1/255, opacity-aware 2D extent
   (``min(3.33, sqrt(2 ln(opacity * 255)))`` sigmas), off-image;
2. view-dependent colour from SH (``_spherical_harmonics``), ``max(sh + 0.5, 0)`` as gsplat does;
3. pair finding (no grad): the pixels whose centre (COLMAP/gsplat convention, ``(j + 0.5, i + 0.5)``)
   lies inside each Gaussian's ellipse ``sigma <= ln(255 opacity)`` -- exactly the pixels where
   ``alpha >= 1/255`` -- enumerated row by row, sorted per pixel front to back by depth, and cut
   where the pixel's transmittance would reach 1e-4 (the kernel's early stop);
4. alpha compositing of those pairs with autograd: ``sigma = 0.5 d^T conic d`` with
   ``d = mean2d - p``, ``alpha = min(0.999, opacity exp(-sigma))``, ``T_k = prod_{j<k} (1 - alpha_j)``
   (a segmented cumulative sum of ``log(1 - alpha)`` in float64), colour ``sum_k alpha_k T_k c_k``.

This is the CUDA rasterizer's arithmetic without its tiles: a tile only decides which Gaussians a
pixel looks at, and outside the ellipse above a Gaussian adds nothing. Cost scales with the pairs
that contribute (about pixels x depth complexity), not with pixels x Gaussians; memory is bounded
by processing ``chunk_elems`` pairs at a time (activation checkpointing in the backward pass).
:func:`_rasterize_dense_reference` is the naive all-pixels-by-all-Gaussians version tests check against.

Both paths return ``(colors (C, H, W, D), alphas (C, H, W, 1), meta)`` where ``meta`` holds what
gsplat's strategies read: ``means2d`` (C, N, 2) (its ``.grad`` after backward), ``radii`` (C, N, 2),
``width``, ``height``, ``n_cameras``, ``gaussian_ids`` (None: unpacked), ``depths``, ``conics``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
"""Compositing skips contributions below this alpha (as gsplat's kernels)."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops before the Gaussian that would bring its transmittance to this or below."""
MAX_EXTENT = 3.33
"""2D extent of a Gaussian's box in standard deviations (before the opacity-aware bound)."""


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, K, 3] SH coefficients (sh_degree given) or [N, D] / [C, N, D] colours
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = 16,
    backend: str = "auto",
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    packed: bool = False,
    sparse_grad: bool = False,
) -> tuple[Tensor, Tensor, dict]:
    """Render Gaussians into ``C`` pinhole cameras (gsplat's CUDA kernels or the torch twin).

    Args:
        means: ``(N, 3)`` centres, world coordinates.
        quats: ``(N, 4)`` rotations, wxyz (need not be unit).
        scales: ``(N, 3)`` standard deviations (activated, not log).
        opacities: ``(N,)`` opacities in [0, 1] (activated).
        colors: ``(N, K, 3)`` SH coefficients when ``sh_degree`` is given, else ``(N, D)`` or
            ``(C, N, D)`` colours.
        viewmats: ``(C, 4, 4)`` cam_from_world.
        Ks: ``(C, 3, 3)`` intrinsics, COLMAP pixel-centre convention (as gsplat's).
        width, height: image size in pixels.
        sh_degree: SH degree to evaluate (None: ``colors`` are final colours).
        backgrounds: ``(C, D)`` colour behind the Gaussians (default black).
        near_plane, far_plane: depth range kept.
        eps2d: low-pass blur added to every 2D covariance (pixels^2).
        tile_size: tile side in pixels (CUDA rasterizer; the torch twin needs no tiles).
        backend: ``"auto"`` (CUDA for CUDA tensors, else torch), ``"cuda"`` or ``"torch"``.
        absgrad: CUDA only: also accumulate ``meta["means2d"].absgrad``.
        rasterize_mode: ``"classic"`` or ``"antialiased"`` (Mip-Splatting's compensation: each opacity times
            ``sqrt(det(cov2d) / det(cov2d + eps2d I))``); both rasterizers.
        packed, sparse_grad: gsplat's memory layouts (CUDA only; the torch twin's is already sparse, and
            it ignores them): ``meta`` is then packed (``gaussian_ids`` set), and with ``sparse_grad`` the
            parameters' gradients are meant to be made sparse by the caller (see gsplat).
    Returns:
        ``colors (C, H, W, D)``, ``alphas (C, H, W, 1)`` and ``meta`` (see the module docstring).
    """
    if backend == "auto":
        backend = "cuda" if means.is_cuda else "torch"
    if backend == "cuda":
        from gsplat import rasterization

        return rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
            packed=packed, tile_size=tile_size, backgrounds=backgrounds, absgrad=absgrad,
            rasterize_mode=rasterize_mode, sparse_grad=sparse_grad and packed,
        )
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'cuda' or 'torch', not {backend!r}")
    if absgrad:
        raise ValueError("absgrad is only available with the CUDA rasterizer")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', not {rasterize_mode!r}")
    return _rasterize_torch(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        sh_degree=sh_degree, backgrounds=backgrounds, near_plane=near_plane, far_plane=far_plane,
        eps2d=eps2d, tile_size=tile_size, antialiased=rasterize_mode == "antialiased",
    )


# ----------------------------------------------------------------------------- torch twin
def _project(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    eps2d: float,
    near_plane: float,
    far_plane: float,
    antialiased: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Project Gaussians into one camera with the culling of gsplat's CUDA projection kernel.

    With ``antialiased``, each opacity is multiplied by ``sqrt(det(cov2d) / det(cov2d + eps2d I))``
    before the culling and the opacity-aware extent, as the kernel does.

    Returns:
        ``ids (M,)`` indices of the visible Gaussians, their ``means2d (M, 2)``, ``conics (M, 3)``
        (upper triangle of the inverse 2D covariance: a, b, c), ``depths (M,)``, integer
        ``radii (M, 2)`` (all > 0) and the ``opacities (M,)`` to composite with.
    """
    from gsplat.cuda._torch_impl import _quat_to_rotmat

    with torch.no_grad():
        z = means @ viewmat[2, :3] + viewmat[2, 3]
        ids = torch.nonzero((z >= near_plane) & (z <= far_plane) & (opacities >= ALPHA_THRESHOLD))[:, 0]
    # The arithmetic of _torch_impl._world_to_cam and _persp_proj, written per element: their einsums
    # over (N, 3, 3) batches run as N tiny matrix products on CPU, several times slower.
    W, t = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means[ids] @ W.T + t  # [M, 3]
    rs = _quat_to_rotmat(quats[ids]) * scales[ids][:, None, :]  # R S, [M, 3, 3]; covariance = (R S)(R S)^T
    rs_c = torch.einsum("ij,mjk->mik", W, rs)  # W R S
    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    txc = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    # rows of J W R S with the projection Jacobian J = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]]
    j0 = (fx / tz)[:, None] * rs_c[:, 0] - (fx * txc / tz**2)[:, None] * rs_c[:, 2]
    j1 = (fy / tz)[:, None] * rs_c[:, 1] - (fy * tyc / tz**2)[:, None] * rs_c[:, 2]
    c00, c01, c11 = (j0 * j0).sum(-1), (j0 * j1).sum(-1), (j1 * j1).sum(-1)
    cov2d = torch.stack([torch.stack([c00, c01], -1), torch.stack([c01, c11], -1)], -2)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], -1)
    depths = tz
    det_orig = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    opa = opacities[ids]
    if antialiased:
        opa = opa * torch.sqrt((det_orig / det.clamp(min=1e-10)).clamp(min=0))
    det_safe = det.clamp(min=1e-10)
    conics = torch.stack(
        [cov2d[:, 1, 1] / det_safe, -0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]) / det_safe, cov2d[:, 0, 0] / det_safe], -1
    )
    with torch.no_grad():
        extend = torch.sqrt(2.0 * torch.log(opa.detach() / ALPHA_THRESHOLD).clamp(min=0)).clamp(max=MAX_EXTENT)
        radii = torch.stack([torch.ceil(extend * torch.sqrt(cov2d[:, 0, 0].clamp(min=0))),
                             torch.ceil(extend * torch.sqrt(cov2d[:, 1, 1].clamp(min=0)))], -1)
        m = means2d.detach()
        keep = ((det > 0) & (radii > 0).any(-1) & (opa.detach() >= ALPHA_THRESHOLD)
                & (m[:, 0] + radii[:, 0] > 0) & (m[:, 0] - radii[:, 0] < width)
                & (m[:, 1] + radii[:, 1] > 0) & (m[:, 1] - radii[:, 1] < height))
        sel = torch.nonzero(keep)[:, 0]
    return ids[sel], means2d[sel], conics[sel], depths[sel], radii[sel].int(), opa[sel]


def _pixel_pairs(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    depths: Tensor,  # [M]
    width: int,
    height: int,
    chunk_elems: int,
) -> tuple[Tensor, Tensor]:
    """The (Gaussian, pixel) pairs that contribute to the image, per pixel front to back (no grad).

    A pair contributes when ``sigma >= 0`` and ``alpha = min(0.999, opacity exp(-sigma)) >= 1/255``,
    i.e. the pixel centre lies inside the ellipse ``sigma <= ln(255 opacity)``: candidates are
    enumerated row by row inside that ellipse, then checked exactly; pairs after the one that would
    bring the pixel's transmittance to 1e-4 or below are dropped (as gsplat's kernel stops there).

    Returns:
        ``gauss (P,)``, ``pixel (P,)`` (row-major pixel index), sorted by pixel then depth, and each
        pair's ``alpha (P,)`` and transmittance ``trans (P,)`` in front of it.
    """
    with torch.no_grad():
        order = torch.argsort(depths, stable=True)
        m, con, opa = means2d.detach()[order], conics.detach()[order], opacities.detach()[order]
        a, b, c = con.unbind(-1)
        smax = torch.log(opa / ALPHA_THRESHOLD).clamp(min=0)
        # rows: |dy| <= sqrt(2 smax a / (a c - b^2)) (extent of the ellipse along y)
        det = (a * c - b * b).clamp(min=1e-12)
        ry = torch.sqrt(2 * smax * a / det)
        y0 = torch.ceil(m[:, 1] - ry - 0.5).clamp(0, height).long()
        y1 = (torch.floor(m[:, 1] + ry - 0.5) + 1).clamp(0, height).long()
        rows = (y1 - y0).clamp(min=0)
        dev = m.device
        g = torch.repeat_interleave(torch.arange(len(m), device=dev), rows)
        mx, my, ag, bg, cg, sg = torch.stack([m[:, 0], m[:, 1], a, b, c, smax], -1).index_select(0, g).unbind(-1)
        y = (y0 - (torch.cumsum(rows, 0) - rows)).index_select(0, g) + torch.arange(len(g), device=dev)  # row of each pair
        # columns of each row: 0.5 a dx^2 + b dy dx + 0.5 c dy^2 - smax <= 0, dx = mx - (x + 0.5)
        dy = my - (y.to(m.dtype) + 0.5)
        disc = (bg * dy) ** 2 - ag * (cg * dy * dy - 2 * sg)
        root = torch.sqrt(disc.clamp(min=0))
        dx_lo, dx_hi = (-bg * dy - root) / ag, (-bg * dy + root) / ag
        x0 = torch.ceil(mx - 0.5 - dx_hi - 1e-3).clamp(0, width).long()
        x1 = (torch.floor(mx - 0.5 - dx_lo + 1e-3) + 1).clamp(0, width).long()
        n = torch.where(disc >= 0, x1 - x0, torch.zeros_like(x0)).clamp(min=0)
        ends = torch.cumsum(n, 0)
        pixels, gauss_ranks = [], []
        lo = 0
        while lo < len(n):  # chunks of rows with at most chunk_elems candidate pixels
            base = int(ends[lo - 1]) if lo else 0
            hi = max(int(torch.searchsorted(ends, base + chunk_elems, right=True)), lo + 1)
            cnt = n[lo:hi]
            row = torch.repeat_interleave(torch.arange(hi - lo, device=dev), cnt)
            per_row = torch.stack([y[lo:hi] * width + x0[lo:hi] - (torch.cumsum(cnt, 0) - cnt), g[lo:hi]], -1)
            pix_base, gi = per_row.index_select(0, row).unbind(-1)
            pixels.append((pix_base + torch.arange(len(row), device=dev)).int())
            gauss_ranks.append(gi)
            lo = hi
        # candidates come Gaussian by Gaussian, front to back: a stable sort by pixel keeps that order
        if pixels:
            pix, perm = torch.sort(torch.cat(pixels), stable=True)
            pix, gi = pix.long(), torch.cat(gauss_ranks).index_select(0, perm)
        else:
            pix = gi = torch.zeros(0, dtype=torch.long, device=dev)
        mx, my, ca, cb, cc, op = torch.stack([m[:, 0], m[:, 1], a, b, c, opa], -1).index_select(0, gi).unbind(-1)
        ddx = mx - ((pix % width).to(m.dtype) + 0.5)
        ddy = my - (torch.div(pix, width, rounding_mode="floor").to(m.dtype) + 0.5)
        sigma = 0.5 * (ca * ddx * ddx + cc * ddy * ddy) + cb * ddx * ddy
        alpha = (op * torch.exp(-sigma)).clamp(max=0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        # transmittance in front of each pair: segmented cumulative sum of log(1 - alpha), per pixel
        log_t = torch.log1p(-alpha.double())
        excl = torch.cumsum(log_t, 0) - log_t
        excl = excl - excl.index_select(0, _segments(pix)[0])
        keep = torch.nonzero((alpha > 0) & (excl + log_t > math.log(TRANSMITTANCE_MIN)))[:, 0]
        trans = torch.exp(excl.index_select(0, keep)).to(alpha.dtype)
        gauss = order.index_select(0, gi.index_select(0, keep))
        return gauss, pix.index_select(0, keep), alpha.index_select(0, keep), trans


def _segments(keys: Tensor) -> tuple[Tensor, Tensor]:
    """(P,) indices of the first and of the last element of each element's run of equal ``keys``."""
    start = torch.ones(len(keys), dtype=torch.bool, device=keys.device)
    start[1:] = keys[1:] != keys[:-1]
    first = torch.nonzero(start)[:, 0]
    counts = torch.diff(first, append=first.new_tensor([len(keys)]))
    return torch.repeat_interleave(first, counts), torch.repeat_interleave(first + counts - 1, counts)


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of (Gaussian, pixel) pairs with a hand-written backward.

    Forward: ``C_p = sum_k w_k c_k`` and ``A_p = sum_k w_k`` with ``w_k = alpha_k T_k`` over the pairs of
    pixel ``p`` (from :func:`_pixel_pairs`). Backward, with ``v_k = dL/dC_p . c_k + dL/dA_p``::

        dL/dc_k     = w_k dL/dC_p
        dL/dalpha_k = T_k v_k - (sum_{j > k} w_j v_j) / (1 - alpha_k)

    then through ``alpha = min(0.999, o exp(-sigma))`` and ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``
    to the 2D means, conics ``(a, b, c)`` and opacities. Only four numbers per pair are kept for
    backward (Gaussian, pixel, alpha, T), instead of autograd's dozens of intermediates.
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, width: int, height: int, chunk_elems: int):
        gauss, pixel, alpha, trans = _pixel_pairs(means2d, conics, opacities, depths, width, height, chunk_elems)
        weight = alpha * trans
        D = colors.shape[-1]
        packed = torch.cat([means2d, conics, opacities[:, None], colors], 1).index_select(0, gauss)  # [P, 6 + D]
        out = colors.new_zeros(height * width, D).index_add_(0, pixel, weight[:, None] * packed[:, 6:])
        acc = colors.new_zeros(height * width).index_add_(0, pixel, weight)
        ctx.save_for_backward(gauss, pixel, alpha, trans, packed)
        ctx.width, ctx.num = width, len(means2d)
        return out, acc

    @staticmethod
    def backward(ctx, g_out, g_acc):
        gauss, pixel, alpha, trans, packed = ctx.saved_tensors
        D = packed.shape[1] - 6
        grads = packed.new_zeros(ctx.num, 6 + D)
        if len(gauss):
            mx, my, a, b, c, opa = packed[:, :6].unbind(-1)
            g_c = g_out.index_select(0, pixel)  # [P, D]
            weight = alpha * trans
            v = (g_c * packed[:, 6:]).sum(1) + g_acc.index_select(0, pixel)
            cs = torch.cumsum((weight * v).double(), 0)
            after = (cs.index_select(0, _segments(pixel)[1]) - cs).to(alpha.dtype)  # over the pixel's later pairs
            g_alpha = torch.where(alpha < 0.999, trans * v - after / (1.0 - alpha), torch.zeros_like(alpha))
            g_sigma = -g_alpha * alpha
            dx = mx - ((pixel % ctx.width).to(mx.dtype) + 0.5)
            dy = my - (torch.div(pixel, ctx.width, rounding_mode="floor").to(mx.dtype) + 0.5)
            half = 0.5 * g_sigma
            per_pair = torch.stack([
                g_sigma * (a * dx + b * dy), g_sigma * (b * dx + c * dy), half * dx * dx,
                g_sigma * dx * dy, half * dy * dy, g_alpha * alpha / opa, *(weight[:, None] * g_c).unbind(1)], 1)
            grads.index_add_(0, gauss, per_pair)
        return grads[:, :2], grads[:, 2:5], grads[:, 5], grads[:, 6:], None, None, None, None


def _composite(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    colors: Tensor,  # [M, D]
    depths: Tensor,  # [M]
    width: int,
    height: int,
    chunk_elems: int = 1 << 22,
) -> tuple[Tensor, Tensor]:
    """Alpha-composite projected Gaussians pixel by pixel, front to back, over the pairs that contribute.

    Memory is bounded: candidate pairs are examined ``chunk_elems`` at a time, and backward keeps
    four numbers per contributing pair.

    Returns:
        ``colors (H, W, D)`` (no background) and ``alphas (H, W, 1)``.
    """
    out, acc = _Composite.apply(means2d, conics, opacities, colors, depths.detach(), width, height, chunk_elems)
    return out.reshape(height, width, -1), acc.reshape(height, width, 1)


def _rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = 16,
    chunk_elems: int = 1 << 22,
    antialiased: bool = False,
) -> tuple[Tensor, Tensor, dict]:
    """Pure-torch twin of :func:`rasterize` (same arguments, outputs and ``meta`` keys); any device."""
    from gsplat.cuda._torch_impl import _spherical_harmonics

    C, N = viewmats.shape[0], means.shape[0]
    projected, screen = [], []
    for c in range(C):
        ids, m2d, con, depths, radii, opa = _project(
            means, quats, scales, opacities, viewmats[c], Ks[c], width, height, eps2d, near_plane, far_plane,
            antialiased)
        projected.append((ids, con, depths, radii, opa))
        screen.append(means.new_zeros(N, 2).index_put((ids,), m2d))
    # means2d as one (C, N, 2) tensor in the graph so that the strategies can read its .grad
    means2d = torch.stack(screen)
    images, alphas = [], []
    radii_all = torch.zeros(C, N, 2, dtype=torch.int32, device=means.device)
    depths_all = means.new_zeros(C, N)
    conics_all = means.new_zeros(C, N, 3)
    for c, (ids, con, depths, radii, opa) in enumerate(projected):
        if sh_degree is not None:
            campos = -viewmats[c, :3, :3].T @ viewmats[c, :3, 3]
            col = _spherical_harmonics(sh_degree, means[ids] - campos, colors[ids])
            col = torch.clamp_min(col + 0.5, 0.0)
        else:
            col = (colors[c] if colors.dim() == 3 else colors)[ids]
        img, acc = _composite(means2d[c, ids], con, opa, col, depths, width, height, chunk_elems)
        if backgrounds is not None:
            img = img + backgrounds[c] * (1.0 - acc)
        images.append(img)
        alphas.append(acc)
        radii_all[c, ids] = radii
        depths_all[c, ids] = depths.detach()
        conics_all[c, ids] = con.detach()
    meta = {
        "means2d": means2d, "radii": radii_all, "depths": depths_all, "conics": conics_all,
        "gaussian_ids": None, "camera_ids": None, "width": width, "height": height,
        "n_cameras": C, "tile_size": tile_size,
    }
    return torch.stack(images), torch.stack(alphas), meta


def _rasterize_dense_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,  # [N, D] colours
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """Naive reference: every pixel against every visible Gaussian, no tiles (tests, benchmarks).

    Returns:
        ``colors (H, W, D)`` and ``alphas (H, W, 1)`` on a black background.
    """
    ids, m2d, con, depths, _, _ = _project(
        means, quats, scales, opacities, viewmat, K, width, height, eps2d, near_plane, 1e10)
    order = torch.argsort(depths.detach(), stable=True)
    m2d, con, opa, col = m2d[order], con[order], opacities[ids][order], colors[ids][order]
    yy, xx = torch.meshgrid(torch.arange(height, device=means.device), torch.arange(width, device=means.device),
                            indexing="ij")
    pix = torch.stack([xx, yy], -1).reshape(-1, 2).to(means.dtype) + 0.5  # [HW, 2]
    d = m2d[None] - pix[:, None]  # [HW, M, 2]
    sigma = 0.5 * (con[:, 0] * d[..., 0] ** 2 + con[:, 2] * d[..., 1] ** 2) + con[:, 1] * d[..., 0] * d[..., 1]
    alpha = (opa * torch.exp(-sigma)).clamp(max=0.999)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    t_next = torch.cumprod(1 - alpha, 1)
    t = torch.cat([torch.ones_like(t_next[:, :1]), t_next[:, :-1]], 1)
    w = alpha * t * (t_next.detach() > TRANSMITTANCE_MIN)
    return (w @ col).reshape(height, width, -1), w.sum(1).reshape(height, width, 1)
