"""Input encodings: the multiresolution hash grid (positions) and spherical harmonics (directions).

Hash grid (Müller et al., "Instant Neural Graphics Primitives", 2022): ``L`` levels with
resolutions growing geometrically from ``base_resolution`` to ``max_resolution``. Level ``l``
puts a grid of ``N_l`` cells (``N_l + 1`` vertices) per axis over ``[0, 1]^3``; each vertex owns
a feature vector of size ``F``; a point's level feature is the trilinear interpolation of its
cell's 8 vertices. Coarse levels with ``(N_l + 1)^3 <= T`` vertices are stored densely (one entry
per vertex, interpolated by ``grid_sample``); finer levels share a table of ``T`` entries indexed
by the spatial hash ``(i * 1) xor (j * 2654435761) xor (k * 805459861) mod T``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HASH_PRIMES = (1, 2654435761, 805459861)
"""Per-axis primes of the spatial hash (Teschner et al. 2003, as in Instant-NGP)."""

# 8 cell corners as (dx, dy, dz) offsets, corner c = 4 * dx + 2 * dy + dz.
_CORNERS = [(c >> 2 & 1, c >> 1 & 1, c & 1) for c in range(8)]


def level_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """Cells per axis of each level: ``floor(base * b^l)`` with ``b`` reaching ``max`` at the last level."""
    if num_levels == 1:
        return [int(base_resolution)]
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
    return [int(math.floor(base_resolution * growth**level + 1e-6)) for level in range(num_levels)]


class HashGrid(nn.Module):
    """Multiresolution hash encoding of points in the unit cube.

    Args:
        num_levels: ``L``.
        features_per_level: ``F``.
        log2_hashmap_size: ``log2 T``, entries of each hashed level.
        base_resolution, max_resolution: cells per axis of the coarsest and finest level.
        init_scale: features start uniform in ``[-init_scale, init_scale]``.

    ``forward(u)``: ``u`` ``(N, 3)`` in ``[0, 1]`` (clamped) -> ``(N, L * F)`` features, level-major.
    """

    def __init__(self, num_levels: int = 16, features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, init_scale: float = 1e-4):
        super().__init__()
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.table_size = 2**log2_hashmap_size
        self.resolutions = level_resolutions(num_levels, base_resolution, max_resolution)
        self.num_dense = sum((r + 1) ** 3 <= self.table_size for r in self.resolutions)
        Fd = features_per_level
        self.dense = nn.ParameterList([
            nn.Parameter(torch.empty(1, Fd, r + 1, r + 1, r + 1).uniform_(-init_scale, init_scale))
            for r in self.resolutions[: self.num_dense]
        ])
        """Dense levels, each ``(1, F, N+1 (z), N+1 (y), N+1 (x))``: vertex (i, j, k) is ``[0, :, k, j, i]``."""
        n_hash = num_levels - self.num_dense
        self.hashed = nn.Parameter(torch.empty(n_hash * self.table_size, Fd).uniform_(-init_scale, init_scale))
        """Hashed levels stacked, ``(H * T, F)``: hashed level h uses rows ``[h * T, (h + 1) * T)``."""
        self.register_buffer("_hash_res", torch.tensor(self.resolutions[self.num_dense:], dtype=torch.float32),
                             persistent=False)
        self.register_buffer("_primes", torch.tensor(HASH_PRIMES, dtype=torch.int64), persistent=False)
        self.register_buffer("_corners", torch.tensor(_CORNERS, dtype=torch.int64), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def _dense_features(self, u: torch.Tensor) -> list[torch.Tensor]:
        grid = (u * 2.0 - 1.0).view(1, -1, 1, 1, 3)
        out = []
        for vol in self.dense:
            f = F.grid_sample(vol, grid.to(vol.dtype), mode="bilinear", padding_mode="border", align_corners=True)
            out.append(f.view(self.features_per_level, -1).t())
        return out

    def _hashed_features(self, u: torch.Tensor) -> torch.Tensor:
        res = self._hash_res  # (H,)
        pos = u[:, None, :] * res[None, :, None]  # (N, H, 3)
        p0 = torch.minimum(pos.floor(), (res - 1)[None, :, None]).clamp_min(0)
        frac = pos - p0
        p0 = p0.long()
        # per-axis hash terms of the two vertex coordinates p0 and p0 + 1: (N, H, 3, 2)
        terms = torch.stack([p0, p0 + 1], dim=-1) * self._primes[None, None, :, None]
        idx = (terms[:, :, 0, :, None, None] ^ terms[:, :, 1, None, :, None] ^ terms[:, :, 2, None, None, :])
        idx = idx & (self.table_size - 1)
        level_offset = torch.arange(len(res), device=u.device, dtype=torch.int64) * self.table_size
        idx = (idx + level_offset[None, :, None, None, None]).flatten(2)  # (N, H, 8)
        w1 = torch.stack([1.0 - frac, frac], dim=-1)  # (N, H, 3, 2)
        w = (w1[:, :, 0, :, None, None] * w1[:, :, 1, None, :, None] * w1[:, :, 2, None, None, :]).flatten(2)
        feats = self.hashed[idx]  # (N, H, 8, F)
        return (feats * w[..., None].to(feats.dtype)).sum(2)  # (N, H, F)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Encode ``(N, 3)`` points in ``[0, 1]^3`` -> ``(N, L * F)``."""
        u = u.float().clamp(0.0, 1.0)
        parts = self._dense_features(u)
        if self.num_levels > self.num_dense:
            parts.append(self._hashed_features(u).flatten(1))
        return torch.cat(parts, dim=1)


# ------------------------------------------------------------------------------ directions
_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real spherical-harmonic basis (orthonormal on the sphere) of unit directions.

    Args:
        dirs: ``(N, 3)`` unit vectors.
        degree: 1..4; the basis has ``degree ** 2`` functions (bands 0 .. degree - 1).
    Returns:
        ``(N, degree ** 2)``.
    """
    if not 1 <= degree <= 4:
        raise ValueError(f"sh degree must be 1..4, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _SH_C0)]
    if degree > 1:
        out += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_SH_C2[0] * x * y, _SH_C2[1] * y * z, _SH_C2[2] * (3.0 * zz - 1.0),
                _SH_C2[3] * x * z, _SH_C2[4] * (xx - yy)]
    if degree > 3:
        out += [_SH_C3[0] * y * (3.0 * xx - yy), _SH_C3[1] * x * y * z, _SH_C3[2] * y * (5.0 * zz - 1.0),
                _SH_C3[3] * z * (5.0 * zz - 3.0), _SH_C3[4] * x * (5.0 * zz - 1.0), _SH_C3[5] * z * (xx - yy),
                _SH_C3[6] * x * (xx - 3.0 * yy)]
    return torch.stack(out, dim=-1)
