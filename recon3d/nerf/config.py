"""The NeRF config (one flat dataclass, so ``--set key=value`` reaches every field) and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recon3d.core.config import option


@dataclass
class NerfConfig:
    """Everything that shapes a NeRF run; saved as ``nerf/config.yaml`` beside the outputs."""

    # -- run
    steps: int = option(20000, min=1)
    """Training steps (one batch of rays each)."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cuda' or 'cpu'."""
    seed: int = option(0, min=0)
    """Seed of the ray sampling and of the weight initialisation."""
    downscale: float = option(1.0, min=0.01)
    """Divide image sizes by this factor before training (1 = as in images/)."""
    test_every: int = option(8, min=0)
    """Hold out every n-th image by name for evaluation (0: none); the same split as the splat backend."""
    batch_rays: int = option(4096, min=1)
    """Rays per training step."""
    lr: float = option(1e-2, min=1e-09)
    """Adam learning rate of grids and MLPs at the start."""
    lr_final_factor: float = option(0.03, min=1e-09)
    """The learning rate decays exponentially to lr * lr_final_factor at the last step."""
    # -- field
    num_levels: int = option(16, min=1)
    """Hash-grid levels of the main field."""
    features_per_level: int = option(2, min=1)
    """Features per hash-grid level."""
    log2_hashmap_size: int = option(19, min=1, max=26)
    """log2 of the entries per hashed level (coarse levels that fit are stored densely)."""
    base_resolution: int = option(16, min=1)
    """Grid resolution of the coarsest level."""
    max_resolution: int = option(2048, min=1)
    """Grid resolution of the finest level (over the whole contracted or boxed scene)."""
    hidden_dim: int = option(64, min=1)
    """Width of the density MLP."""
    geo_feat_dim: int = option(15, min=1)
    """Geometry features passed from the density MLP to the colour MLP."""
    color_hidden_dim: int = option(64, min=1)
    """Width of the colour MLP."""
    color_layers: int = option(2, min=1)
    """Hidden layers of the colour MLP."""
    sh_degree: int = option(4, min=1, max=4)
    """Spherical-harmonic degree of the view-direction encoding (1..4; degree d uses d*d terms)."""
    appearance_dim: int = option(32, min=0)
    """Per-image appearance embedding size (0: none). Held-out views use the mean embedding."""
    # -- sampling
    proposal_samples: list[int] = option(default_factory=lambda: [256, 96], min=1)
    """Samples per ray of the two proposal levels (the first is uniform in lin-disp spacing)."""
    nerf_samples: int = option(48, min=1)
    """Samples per ray of the final (colour) level."""
    proposal_levels: int = option(5, min=1)
    """Hash-grid levels of each proposal density field."""
    proposal_max_resolution: list[int] = option(default_factory=lambda: [128, 256], min=1)
    """Finest grid resolution of each proposal field."""
    proposal_log2_hashmap_size: int = option(17, min=1, max=26)
    """log2 of the hash-table size of the proposal fields."""
    proposal_hidden_dim: int = option(16, min=1)
    """Width of the proposal density MLPs."""
    proposal_anneal_steps: int = option(1000, min=0)
    """Steps over which proposal weights are sharpened from uniform (exponent 0) to exact (exponent 1)."""
    # -- scene
    scene: Literal["auto", "unbounded", "object"] = "auto"
    """'unbounded': contract space beyond the unit ball; 'object': an axis-aligned box around the sparse points;
    'auto': unbounded."""
    contraction_norm: Literal["l2", "linf"] = "linf"
    """Norm of the scene contraction: 'linf' (nerfacto, uses the grid's corners) or 'l2' (mip-NeRF 360)."""
    near: float = option(0.0, min=0.0)
    """Near plane in world units (0: from the sparse points, or the camera spacing when there are none)."""
    far: float = option(0.0, min=0.0)
    """Far plane in world units (0: from the sparse points; unbounded scenes sample out to 1000 scene radii)."""
    background: Literal["last_sample", "white", "black"] = "last_sample"
    """Colour behind the last sample: that sample's colour (nerfacto), or a fixed white/black."""
    # -- losses
    interlevel_weight: float = option(1.0, min=0.0)
    """Weight of the proposal (interlevel) loss that teaches proposal fields to bound the final weights."""
    distortion_weight: float = option(0.002, min=0.0)
    """Weight of the mip-NeRF 360 distortion loss on the final weights (0: off)."""
    # -- speed
    mixed_precision: bool = True
    """bfloat16 autocast of the MLPs on CUDA (ignored on CPU)."""
    compile: bool = True
    """torch.compile the fields on CUDA (ignored on CPU)."""
    cpu_threads: int = option(0, min=0)
    """Torch threads when training on the CPU (0: torch's default). 1 is often fastest on a busy machine."""
    eval_chunk: int = option(16384, min=1)
    """Rays per chunk when rendering whole images."""
    eval_every: int = option(0, min=0)
    """Also measure held-out PSNR every this many steps, into metrics.json's history (0: only at the end)."""
    # -- outputs
    checkpoint_every: int = option(2000, min=1)
    """Save a checkpoint (atomically) every this many steps; the last two are kept."""
    monitor_every: int = option(10, min=1)
    """Report progress to a monitor (the live viewer) every this many steps."""
    report_views: int = option(4, min=0)
    """Held-out views shown in reports/nerf_test_views.png (0: write no report pictures)."""


def preset_nerf() -> NerfConfig:
    """nerfacto-like defaults for a GPU: 16-level hash grid, (256, 96) proposal samples, 48 final samples."""
    return NerfConfig()


def preset_nerf_fast() -> NerfConfig:
    """A short, small run for previews, CPUs and tests (about 2 minutes at 80x60 on 2 cores)."""
    return NerfConfig(
        steps=1500,
        batch_rays=1024,
        lr=2e-2,
        lr_final_factor=0.2,
        num_levels=8,
        log2_hashmap_size=16,
        base_resolution=16,
        max_resolution=256,
        hidden_dim=32,
        color_hidden_dim=32,
        color_layers=1,
        sh_degree=3,
        appearance_dim=0,
        proposal_samples=[32, 24],
        nerf_samples=16,
        proposal_levels=3,
        proposal_max_resolution=[32, 64],
        proposal_log2_hashmap_size=16,
        proposal_anneal_steps=200,
        checkpoint_every=500,
        eval_chunk=8192,
    )
