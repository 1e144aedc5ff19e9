"""Where the field lives: scene contraction for unbounded scenes, an axis-aligned box for objects.

Both map model-space points (see :mod:`recon3d.nerf.scene`: the scene of interest inside the unit
ball) into the unit cube the hash grid covers.

Contraction (Barron et al., mip-NeRF 360, 2022)::

    contract(x) = x                              if |x| <= 1
                  (2 - 1 / |x|) * x / |x|        otherwise

maps all of space into the ball (or cube, for the L-inf norm) of radius 2; the unit ball is kept
as is and the rest of the world, out to infinity, is squeezed into the shell 1 < |x| < 2.
"""

from __future__ import annotations

import torch


def contract(x: torch.Tensor, norm: str = "linf") -> torch.Tensor:
    """Scene contraction.

    Args:
        x: ``(*, 3)`` model-space points.
        norm: ``'l2'`` (mip-NeRF 360) or ``'linf'`` (nerfacto; fills the grid's corners too).
    Returns:
        ``(*, 3)`` points with norm < 2 (identity where the norm is <= 1).
    """
    if norm == "l2":
        mag = x.norm(dim=-1, keepdim=True)
    elif norm == "linf":
        mag = x.abs().amax(dim=-1, keepdim=True)
    else:
        raise ValueError(f"contraction norm must be 'l2' or 'linf', got {norm!r}")
    safe = mag.clamp_min(1.0)
    return torch.where(mag <= 1.0, x, (2.0 - 1.0 / safe) * (x / safe))


def unit_cube_from_contracted(x: torch.Tensor) -> torch.Tensor:
    """``(*, 3)`` contracted points (norm < 2) -> ``(*, 3)`` in ``[0, 1]^3`` for the hash grid."""
    return (x + 2.0) * 0.25


def unit_cube_from_box(x: torch.Tensor, aabb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise points by an axis-aligned box.

    Args:
        x: ``(*, 3)`` model-space points.
        aabb: ``(2, 3)`` box corners (min, max).
    Returns:
        ``(*, 3)`` coordinates in the box's unit cube, and ``(*,)`` bool: inside the box.
    """
    u = (x - aabb[0]) / (aabb[1] - aabb[0])
    inside = ((u >= 0.0) & (u <= 1.0)).all(dim=-1)
    return u, inside


def ray_box_intersection(origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through a box (slab method).

    Args:
        origins, dirs: ``(R, 3)`` rays (any direction length; distances are in its units).
        aabb: ``(2, 3)`` box.
    Returns:
        ``t_in``, ``t_out``: ``(R,)``; ``t_out <= t_in`` for rays that miss the box.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    t_in = torch.minimum(t0, t1).amax(dim=-1)
    t_out = torch.maximum(t0, t1).amin(dim=-1)
    return t_in, t_out
