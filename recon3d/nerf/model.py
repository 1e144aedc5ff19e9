"""The NeRF model: rays -> two proposal levels -> radiance field -> pixel colour, depth, opacity.

Per ray (all in model space, see :mod:`recon3d.nerf.scene`):

1. ``proposal_samples[0]`` bins, uniform in the spacing coordinate between near and far;
   proposal field 1 gives their density, hence weights.
2. ``proposal_samples[1]`` bins drawn from those weights; proposal field 2 -> weights.
3. ``nerf_samples`` bins drawn from those; the radiance field gives density and colour, which
   are composited (:mod:`recon3d.nerf.renderer`).

Proposal weights are sharpened by an exponent that grows from 0 to 1 during training (nerfacto's
annealing), so early sampling stays near uniform.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from recon3d.nerf import renderer, sampling
from recon3d.nerf.config import NerfConfig
from recon3d.nerf.contraction import (
    contract,
    ray_box_intersection,
    unit_cube_from_box,
    unit_cube_from_contracted,
)
from recon3d.nerf.encoding import HashGrid
from recon3d.nerf.field import NerfField, ProposalField
from recon3d.nerf.scene import SceneFrame

UNBOUNDED_FAR = 1000.0
"""Far bound of unbounded scenes, in model units (the contracted shell ends near radius 2)."""


class NerfModel(nn.Module):
    """nerfacto-style model.

    Args:
        config: architecture and sampling settings.
        frame: world <-> model space and ray bounds.
        num_images: training images (for the appearance embedding).
    """

    def __init__(self, config: NerfConfig, frame: SceneFrame, num_images: int):
        super().__init__()
        if len(config.proposal_samples) != 2 or len(config.proposal_max_resolution) != 2:
            raise ValueError("proposal_samples and proposal_max_resolution need two entries (two proposal levels)")
        self.config = config
        self.frame = frame
        self.mode = frame.mode
        self.spacing = "lindisp" if frame.mode == "unbounded" else "linear"
        self.register_buffer("center", torch.tensor(frame.center, dtype=torch.float32))
        self.register_buffer("aabb", torch.tensor(frame.aabb, dtype=torch.float32))
        self.radius = float(frame.radius)
        self.proposals = nn.ModuleList([
            ProposalField(HashGrid(config.proposal_levels, 2, config.proposal_log2_hashmap_size,
                                   16, max(res, 17)), config.proposal_hidden_dim)
            for res in config.proposal_max_resolution
        ])
        self.field = NerfField(
            HashGrid(config.num_levels, config.features_per_level, config.log2_hashmap_size,
                     config.base_resolution, config.max_resolution),
            hidden_dim=config.hidden_dim, geo_feat_dim=config.geo_feat_dim, color_hidden_dim=config.color_hidden_dim,
            color_layers=config.color_layers, sh_degree=config.sh_degree, num_images=num_images,
            appearance_dim=config.appearance_dim,
        )
        self._compiled: dict[str, Callable] = {}

    # ------------------------------------------------------------------ helpers
    def enable_compile(self) -> None:
        """Use ``torch.compile``d fields for training batches (fixed shapes; rendering stays eager)."""
        self._compiled = {"field": torch.compile(self.field.forward),
                          **{f"prop{i}": torch.compile(p.forward) for i, p in enumerate(self.proposals)}}

    def to_unit_cube(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model-space points ``(N, 3)`` -> grid coordinates ``(N, 3)`` and an inside mask (object mode) or None."""
        if self.mode == "unbounded":
            return unit_cube_from_contracted(contract(x, self.config.contraction_norm)), None
        return unit_cube_from_box(x, self.aabb)

    def ray_bounds(self, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Near and far ``(R,)`` in model units for model-space rays ``(R, 3)`` with unit directions."""
        near = torch.full_like(origins[:, 0], self.frame.near / self.radius)
        if self.mode == "unbounded":
            return near, torch.full_like(near, UNBOUNDED_FAR)
        t_in, t_out = ray_box_intersection(origins, dirs, self.aabb)
        near = torch.maximum(near, t_in)
        far = torch.maximum(t_out, near + 1e-4)
        return near, far

    def _density(self, level: int, u: torch.Tensor, inside: torch.Tensor | None, train: bool) -> torch.Tensor:
        fn = self._compiled.get(f"prop{level}") if train else None
        sigma = (fn or self.proposals[level])(u)
        return sigma if inside is None else sigma * inside

    # ------------------------------------------------------------------ forward
    def forward(self, origins: torch.Tensor, dirs: torch.Tensor, image_idx: torch.Tensor | None = None,
                stratified: bool = False, anneal: float = 1.0, generator: torch.Generator | None = None) -> dict:
        """Render rays.

        Args:
            origins: ``(R, 3)`` world ray origins.
            dirs: ``(R, 3)`` world ray directions (normalised here).
            image_idx: ``(R,)`` training-image index per ray (-1 or None: mean appearance).
            stratified: jitter samples (training).
            anneal: exponent of the proposal weights used for resampling (0 uniform .. 1 exact).
        Returns:
            dict with ``rgb`` (R, 3), ``depth`` (R,) median distance along the ray in world units, ``acc``
            (R,) opacity, ``weights`` (R, S), ``t_bins`` (R, S + 1) world distances of the final bins, and for
            the losses ``s_bins`` (R, S + 1) and ``proposals`` [(s_bins, weights), ...].
        """
        cfg = self.config
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        o = (origins - self.center) / self.radius
        near, far = self.ray_bounds(o, dirs)
        R = o.shape[0]
        s_bins = sampling.uniform_bins(R, cfg.proposal_samples[0], stratified, device=o.device, generator=generator)
        proposals = []
        for level in range(2):
            t_bins = sampling.t_from_s(s_bins, near, far, self.spacing)
            t_mid = 0.5 * (t_bins[:, 1:] + t_bins[:, :-1])
            x = o[:, None, :] + dirs[:, None, :] * t_mid[..., None]
            u, inside = self.to_unit_cube(x.reshape(-1, 3))
            sigma = self._density(level, u, inside, stratified).view(R, -1)
            w, _ = renderer.compositing_weights(sigma, t_bins[:, 1:] - t_bins[:, :-1])
            proposals.append((s_bins, w))
            n_next = cfg.proposal_samples[1] if level == 0 else cfg.nerf_samples
            w_resample = w.detach() ** anneal if anneal != 1.0 else w.detach()
            s_bins = sampling.pdf_bins(s_bins, w_resample, n_next, stratified, generator=generator)
        t_bins = sampling.t_from_s(s_bins, near, far, self.spacing)
        t_mid = 0.5 * (t_bins[:, 1:] + t_bins[:, :-1])
        S = t_mid.shape[1]
        x = o[:, None, :] + dirs[:, None, :] * t_mid[..., None]
        u, inside = self.to_unit_cube(x.reshape(-1, 3))
        d = dirs[:, None, :].expand(R, S, 3).reshape(-1, 3)
        idx = None if image_idx is None else image_idx[:, None].expand(R, S).reshape(-1)
        fn = self._compiled.get("field") if stratified else None
        sigma, rgb = (fn or self.field)(u, d, idx)
        if inside is not None:
            sigma = sigma * inside
        sigma, rgb = sigma.view(R, S), rgb.view(R, S, 3)
        w, _ = renderer.compositing_weights(sigma, t_bins[:, 1:] - t_bins[:, :-1])
        if cfg.background == "last_sample":
            bg = rgb[:, -1]
        else:
            bg = torch.full_like(rgb[:, -1], 1.0 if cfg.background == "white" else 0.0)
        out_rgb = renderer.composite(w, rgb, bg)
        acc = w.sum(-1)
        depth = renderer.median_distance(w, t_bins)
        return {"rgb": out_rgb, "depth": depth * self.radius, "acc": acc, "weights": w,
                "t_bins": t_bins * self.radius, "s_bins": s_bins, "proposals": proposals}

    def losses(self, out: dict, target_rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses of a :meth:`forward` output against ``(R, 3)`` target colours."""
        cfg = self.config
        losses = {"rgb": torch.mean((out["rgb"] - target_rgb) ** 2)}
        if cfg.interlevel_weight > 0:
            losses["interlevel"] = cfg.interlevel_weight * renderer.interlevel_loss(
                out["s_bins"], out["weights"], out["proposals"])
        if cfg.distortion_weight > 0:
            losses["distortion"] = cfg.distortion_weight * renderer.distortion_loss(out["s_bins"], out["weights"])
        return losses

    @torch.no_grad()
    def render_rays(self, origins: torch.Tensor, dirs: torch.Tensor, chunk: int) -> dict[str, torch.Tensor]:
        """Evaluation rendering in chunks: ``(R, 3), (R, 3)`` -> rgb ``(R, 3)``, depth ``(R,)``, acc ``(R,)``."""
        parts: dict[str, list[torch.Tensor]] = {"rgb": [], "depth": [], "acc": []}
        for i in range(0, origins.shape[0], chunk):
            out = self.forward(origins[i:i + chunk], dirs[i:i + chunk])
            for k in parts:
                parts[k].append(out[k].float())
        return {k: torch.cat(v) for k, v in parts.items()}
