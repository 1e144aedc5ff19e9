"""Configuration of Gaussian splatting runs and the named presets (``splat``, ``splat-mcmc``, ``splat-fast``).

Defaults follow the 3DGS paper (Kerbl et al. 2023) and gsplat's example trainer: per-parameter
Adam learning rates, means' rate scaled by the scene scale and decayed exponentially by 100x,
L1 + 0.2 D-SSIM, SH degree raised every 1000 steps, densification by gsplat's strategies.
Every field can be changed from the command line: ``recon3d train WS --set lr_means=1e-4``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from recon3d.core.config import option


@dataclass
class SplatConfig:
    """A Gaussian splatting run."""

    steps: int = option(30_000, min=1)
    """Training steps (``batch_size`` images per step)."""
    batch_size: int = option(1, min=1)
    """Training views per step; the step follows the mean of their losses. With ``procs`` > 1 the
    views are split among the processes (at least one each)."""
    procs: int = option(1, min=1)
    """Processes training together, data parallel (torch.distributed: gloo on CPU, NCCL on GPUs):
    each renders its share of the batch, gradients and densification statistics are summed, so all
    hold the same Gaussians. Does not change the result (up to rounding) nor identify the run."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), 'cuda' or 'cpu'."""
    rasterizer: Literal["auto", "cuda", "torch"] = "auto"
    """'auto': gsplat's CUDA kernels on a GPU, the pure-torch twin on CPU; 'torch' forces the twin."""
    seed: int = option(0, min=0)
    """Seed of every random choice (initialisation, view order, densification)."""
    threads: int = option(0, min=0)
    """CPU threads torch may use while training (0: torch's default). Results are reproducible for a
    fixed number of threads."""

    # data
    downscale: float = option(1.0, min=0.01)
    """Divide image sizes by this factor before training (1 = full resolution)."""
    max_image_side: int = option(1600, min=0)
    """Downscale further so that no image side exceeds this many pixels (0 = no limit)."""
    test_every: int = option(8, min=0)
    """Hold out every n-th image (sorted by name: 0, n, 2n, ...) for evaluation; 0 = none."""
    num_downscales: int = option(0, min=0, max=10)
    """Train at 1/2^n resolution first, doubling it every ``resolution_schedule`` steps (as splatfacto)."""
    resolution_schedule: int = option(3000, min=1)
    """Steps per resolution level when ``num_downscales`` > 0."""
    background: list[float] = option(default_factory=lambda: [0.0, 0.0, 0.0], min=0.0, max=1.0)
    """RGB colour behind the Gaussians, in [0, 1]."""

    # initialisation
    init: Literal["sfm", "random"] = "sfm"
    """'sfm': one Gaussian per sparse point of sparse/0; 'random': uniform in a box (also the
    fallback, with a warning, when the model has no points)."""
    init_num_points: int = option(100_000, min=1)
    """Number of Gaussians of a random initialisation."""
    init_extent: float = option(3.0, min=1e-09)
    """Half side of the random-initialisation box, in units of the scene scale."""
    init_opacity: float = option(0.1, min=0.001, max=0.999)
    """Initial opacity of every Gaussian."""
    init_scale: float = option(1.0, min=1e-09)
    """Initial scale = this x the mean distance to the 3 nearest neighbours."""
    sky_points: int = option(0, min=0)
    """Extra Gaussians on a far sphere (radius ``sky_radius`` x scene scale) along rays through random
    training pixels, coloured by those pixels: a backdrop for sky and distant background."""
    sky_radius: float = option(3.0, min=1e-09)
    """Radius of the backdrop sphere in units of the scene scale."""

    # appearance and loss
    sh_degree: int = option(3, min=0, max=4)
    """Highest spherical-harmonics degree of the view-dependent colour."""
    sh_degree_interval: int = option(1000, min=1)
    """Raise the active SH degree by one every this many steps."""
    ssim_lambda: float = option(0.2, min=0.0, max=1.0)
    """Loss = (1 - ssim_lambda) L1 + ssim_lambda (1 - SSIM)."""
    opacity_reg: float = option(0.0, min=0.0)
    """Weight of the mean-opacity regulariser (the MCMC preset uses 0.01)."""
    scale_reg: float = option(0.0, min=0.0)
    """Weight of the mean-scale regulariser (the MCMC preset uses 0.01)."""

    # learning rates (Adam, eps 1e-15)
    lr_means: float = option(1.6e-4, min=1e-09)
    """Initial learning rate of the centres, times the scene scale."""
    lr_means_final: float = option(1.6e-6, min=0.0)
    """Final learning rate of the centres (exponential decay), times the scene scale."""
    lr_scales: float = option(5e-3, min=0.0)
    """Learning rate of the log scales."""
    lr_quats: float = option(1e-3, min=0.0)
    """Learning rate of the rotations."""
    lr_opacities: float = option(5e-2, min=0.0)
    """Learning rate of the opacity logits."""
    lr_sh0: float = option(2.5e-3, min=0.0)
    """Learning rate of the degree-0 SH coefficients."""
    lr_shN: float = option(2.5e-3 / 20, min=0.0)
    """Learning rate of the higher SH coefficients."""

    # densification (gsplat strategies)
    strategy: Literal["default", "mcmc"] = "default"
    """'default': gsplat.DefaultStrategy (clone/split/prune as in 3DGS); 'mcmc': gsplat.MCMCStrategy."""
    refine_start: int = option(500, min=0)
    """First step that densifies."""
    refine_stop: int = option(15_000, min=0)
    """No densification from this step on."""
    refine_every: int = option(100, min=1)
    """Densify every this many steps."""
    reset_every: int = option(3000, min=1)
    """Default strategy: reset opacities every this many steps."""
    grow_grad2d: float = option(0.0002, min=0.0)
    """Default strategy: clone/split Gaussians whose mean 2D gradient exceeds this."""
    grow_scale3d: float = option(0.01, min=0.0)
    """Default strategy: clone below, split above this 3D scale (x scene scale)."""
    prune_opacity: float = option(0.005, min=0.0, max=1.0)
    """Prune (default) or relocate (MCMC) Gaussians less opaque than this."""
    prune_scale3d: float = option(0.1, min=0.0)
    """Default strategy: prune Gaussians larger than this (x scene scale) after the first reset."""
    cap_max: int = option(1_000_000, min=1)
    """MCMC strategy: the most Gaussians."""
    noise_lr: float = option(5e5, min=0.0)
    """MCMC strategy: scale of the position noise."""
    absgrad: bool = False
    """Default strategy, CUDA only: use absolute 2D gradients (AbsGS; raise grow_grad2d to ~0.0008). The torch
    rasterizer refuses it (it changes which Gaussians grow, and the twin has no absolute gradients)."""

    # end-of-training cleanup (recon3d.splat.cleanup)
    cleanup_min_views: int = option(2, min=0)
    """After training, remove Gaussians whose centre projects into fewer than this many training
    images (unconstrained floaters); 0 keeps them."""
    cleanup_huge_scale: float = option(0.05, min=0.0)
    """After training, remove faint Gaussians (``cleanup_faint_opacity``) whose largest axis exceeds
    this x the scene scale."""
    cleanup_faint_opacity: float = option(0.05, min=0.0, max=1.0)
    """Opacity below which a huge Gaussian is removed after training; 0 keeps them all."""

    # rasterizer (gsplat's names)
    tile_size: int = option(16, min=1, max=64)
    """Tile side in pixels of the CUDA rasterizer."""
    rasterize_mode: Literal["classic", "antialiased"] = "classic"
    """'antialiased': Mip-Splatting's 2D filter compensation (each opacity times sqrt(det(cov2d) /
    det(cov2d + 0.3 I))), for renders at other resolutions than training; both rasterizers."""
    packed: bool = False
    """gsplat's packed layout (only the visible (camera, Gaussian) pairs: less GPU memory with many
    Gaussians, same images). CUDA only: the torch rasterizer's layout is already sparse; it ignores this."""
    sparse_grad: bool = False
    """Sparse gradients and torch.optim.SparseAdam for the Gaussians (gsplat's experimental option; needs
    packed). CUDA only: the torch rasterizer ignores it and trains with Adam."""

    # bookkeeping
    checkpoint_every: int = option(1000, min=1)
    """Write a checkpoint every this many steps (a rerun resumes from the last one)."""
    keep_checkpoints: int = option(2, min=1)
    """How many recent checkpoints to keep."""
    log_every: int = option(10, min=1)
    """Update the progress bar and the monitor every this many steps."""
    report_views: int = option(3, min=0)
    """Side-by-side pictures (render | photo) of this many held-out views in reports/."""


def preset_splat() -> SplatConfig:
    """3DGS defaults: 30k steps, gsplat's default densification."""
    return SplatConfig()


def preset_splat_mcmc() -> SplatConfig:
    """3DGS-MCMC: gsplat's MCMC strategy with its opacity and scale regularisers."""
    return SplatConfig(strategy="mcmc", init_opacity=0.5, init_scale=0.1, opacity_reg=0.01, scale_reg=0.01,
                       refine_stop=25_000)


def preset_splat_fast() -> SplatConfig:
    """A short run for previews, CPU and tests: 3000 steps, images at most 800 px (the first 500 steps
    at half that), schedule compressed."""
    return replace(SplatConfig(), steps=3000, max_image_side=800, num_downscales=1, resolution_schedule=500,
                   sh_degree=2, sh_degree_interval=500, refine_start=200, refine_stop=2000, refine_every=100,
                   checkpoint_every=500)


def preset_splat_cpu() -> SplatConfig:
    """A CPU preview (the schedule of the CPU acceptance test): images at most 160 px, 500 steps, the first
    200 at half resolution, densification every 50 steps until 350, a sky backdrop, and learning rates
    raised for the short schedule (centres 8x, colours 8x, scales 4x, opacities 2x, rotations 3x the
    3DGS values); one CPU thread, so that the run is reproducible and unharmed by other busy processes."""
    return replace(SplatConfig(), steps=500, max_image_side=160, num_downscales=1, resolution_schedule=200,
                   sh_degree=1, sh_degree_interval=150, refine_start=50, refine_every=50, refine_stop=350,
                   init_scale=0.5, sky_points=1000, lr_means=1.28e-3, lr_means_final=1.28e-5, lr_sh0=0.02,
                   lr_scales=0.02, lr_opacities=0.1, lr_quats=0.003, checkpoint_every=250, threads=1)
