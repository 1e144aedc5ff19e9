"""Radiance and density fields: hash grid -> small MLPs.

* :class:`NerfField` (nerfacto's field): hash features -> density MLP -> (density, geometry
  features); geometry features + spherical harmonics of the view direction (+ per-image
  appearance embedding) -> colour MLP -> RGB.
* :class:`ProposalField`: a smaller grid and a one-layer MLP that only predicts density, used to
  place the samples of the next level.

Inputs are points already mapped into the unit cube (:mod:`recon3d.nerf.contraction`).
"""

from __future__ import annotations

import torch
from torch import nn

from recon3d.nerf.encoding import HashGrid, sh_basis


class _TruncExp(torch.autograd.Function):
    """``exp`` whose gradient uses ``exp(min(x, 15))`` (Instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """Density activation: ``exp(x)`` with a clamped gradient, ``(*) -> (*)``."""
    return _TruncExp.apply(x)


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden``, then a linear output: ``(N, in) -> (N, out)``."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


class NerfField(nn.Module):
    """Density and view-dependent colour.

    Args:
        grid: the hash grid of positions.
        hidden_dim: density MLP width (one hidden layer).
        geo_feat_dim: geometry features handed to the colour MLP.
        color_hidden_dim, color_layers: colour MLP.
        sh_degree: view-direction encoding degree (``sh_degree ** 2`` terms).
        num_images, appearance_dim: per-image appearance embedding (``appearance_dim == 0``: none).
    """

    def __init__(self, grid: HashGrid, hidden_dim: int = 64, geo_feat_dim: int = 15, color_hidden_dim: int = 64,
                 color_layers: int = 2, sh_degree: int = 4, num_images: int = 0, appearance_dim: int = 0):
        super().__init__()
        self.grid = grid
        self.geo_feat_dim = geo_feat_dim
        self.sh_degree = sh_degree
        self.appearance_dim = appearance_dim if num_images > 0 else 0
        self.density_mlp = mlp(grid.output_dim, hidden_dim, 1, 1 + geo_feat_dim)
        self.color_mlp = mlp(geo_feat_dim + sh_degree**2 + self.appearance_dim, color_hidden_dim, color_layers, 3)
        self.appearance = nn.Embedding(num_images, appearance_dim) if self.appearance_dim else None
        if self.appearance is not None:
            nn.init.normal_(self.appearance.weight, std=0.01)

    def density(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``u`` ``(N, 3)`` in the unit cube -> density ``(N,)`` (>= 0) and geometry features ``(N, G)``."""
        h = self.density_mlp(self.grid(u).to(self.density_mlp[0].weight.dtype))
        sigma = trunc_exp(h[:, 0].float() - 1.0)
        return sigma, h[:, 1:]

    def appearance_code(self, image_idx: torch.Tensor) -> torch.Tensor:
        """``(N,)`` image indices (-1: a held-out or novel view, gets the mean code) -> ``(N, A)``."""
        table = self.appearance.weight
        mean = table.mean(0, keepdim=True).expand(len(image_idx), -1)
        valid = image_idx >= 0
        code = table[image_idx.clamp_min(0)]
        return torch.where(valid[:, None], code, mean)

    def forward(self, u: torch.Tensor, dirs: torch.Tensor, image_idx: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density and colour.

        Args:
            u: ``(N, 3)`` points in the unit cube.
            dirs: ``(N, 3)`` unit view directions (world frame).
            image_idx: ``(N,)`` training-image index of each sample's ray, or -1.
        Returns:
            density ``(N,)`` and RGB ``(N, 3)`` in [0, 1].
        """
        sigma, geo = self.density(u)
        parts = [geo, sh_basis(dirs, self.sh_degree).to(geo.dtype)]
        if self.appearance is not None:
            if image_idx is None:
                image_idx = torch.full((len(u),), -1, dtype=torch.long, device=u.device)
            parts.append(self.appearance_code(image_idx).to(geo.dtype))
        rgb = torch.sigmoid(self.color_mlp(torch.cat(parts, dim=-1)).float())
        return sigma, rgb


class ProposalField(nn.Module):
    """Density only, from a small hash grid and a one-hidden-layer MLP: ``(N, 3) -> (N,)``."""

    def __init__(self, grid: HashGrid, hidden_dim: int = 16):
        super().__init__()
        self.grid = grid
        self.mlp = mlp(grid.output_dim, hidden_dim, 1, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` ``(N, 3)`` in the unit cube -> density ``(N,)``."""
        h = self.mlp(self.grid(u).to(self.mlp[0].weight.dtype))
        return trunc_exp(h[:, 0].float() - 1.0)
