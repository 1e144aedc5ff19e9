"""The stereo configs: every setting of ``recon3d stereo`` once, as a dataclass field with its doc.

:class:`SGBMConfig` (matching) is shared by :class:`PairConfig` (``recon3d stereo LEFT RIGHT``)
and :class:`FusionConfig` (``recon3d stereo WS``). No OpenCV here, so ``recon3d --help`` can build
the command line from these fields (:func:`recon3d.core.config.add_config_arguments`; ``flag``
metadata keeps the historical option names). A run saves the resolved config (``OUT/config.yaml``,
``WS/stereo/config.yaml``), which ``recon3d stereo --config`` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recon3d.core.config import option


@dataclass
class SGBMConfig:
    """Semi-global matching settings (disparities in pixels of the input resolution)."""

    max_disparity: int = option(0, flag="--max-disparity", min=0)
    """Largest disparity searched, px; 0 = automatic (pairs: image width / 8, at least 32; workspaces: from
    the sparse points)."""
    min_disparity: int = option(0, flag="--min-disparity")
    """Smallest disparity searched, px (negative for converging cameras)."""
    block_size: int = option(3, flag="--block-size", min=1, max=11)
    """Matching block side, odd (1-11); small blocks keep edges sharp, SGM's smoothness does the rest."""
    p1: int = option(0, min=0)
    """Penalty for disparity changes of 1 px between neighbours; 0 = 2 * channels * block_size^2."""
    p2: int = option(0, min=0)
    """Penalty for larger disparity jumps; 0 = 16 * channels * block_size^2."""
    uniqueness: int = option(5, min=0, max=100)
    """Best cost must beat the second best by this many percent (0 = off)."""
    lr_max_diff: int = option(1, min=-1)
    """Left-right consistency: largest allowed difference (px) between the left and right match; -1 = off."""
    speckle_window: int = option(100, min=0)
    """Disconnected disparity blobs smaller than this many pixels are removed (0 = off)."""
    speckle_range: int = option(2, min=0)
    """Largest disparity step (px) inside one blob for speckle filtering."""
    mode: Literal["3way", "sgbm", "hh", "hh4"] = option("3way", flag="--mode")
    """OpenCV SGBM variant: '3way' (fast, multi-threaded), 'sgbm' (5 paths), 'hh' (8 paths, 2x slower), 'hh4'."""
    pad: bool = True
    """Pad the left border so its pixels can be matched (see :mod:`recon3d.stereo.disparity`)."""
    refine_iters: int = option(1, min=0)
    """Sub-pixel refinement steps after SGBM (0 = SGBM's own parabola fit only; --no-refine sets 0)."""
    refine_window: int = option(7, min=1)
    """Window side (px) of the sub-pixel refinement."""
    min_texture: float = option(0.0, flag="--min-texture", min=0.0)
    """Drop disparities where the left image's 9x9 grey-level standard deviation is below this
    (e.g. 1.0 removes flat sky; 0 = keep all: SGM fills flat regions from their borders)."""
    downscale: float = option(1.0, flag="--downscale", min=0.0, max=1.0)
    """Match at this fraction of the resolution (e.g. 0.5), then upsample the disparity; 1 = full
    (pairs only: a workspace matches at its scale)."""


@dataclass
class PairConfig:
    """Settings of ``recon3d stereo LEFT RIGHT``."""

    sgbm: SGBMConfig = field(default_factory=SGBMConfig)
    """Semi-global matching settings."""
    point_stride: int = option(1, min=1)
    """Write every n-th pixel (in x and y) to points.ply."""
    max_depth: float = option(0.0, min=0.0)
    """Leave points farther than this (m) out of points.ply; 0 = keep all."""


@dataclass
class FusionConfig:
    """Settings of ``recon3d stereo WS``: pairs, matching, consistency filter and TSDF fusion."""

    sgbm: SGBMConfig = field(default_factory=SGBMConfig)
    """Matching settings (the disparity range comes from the sparse points)."""
    scale: float = option(0.5, flag="--scale", min=0.0, max=1.0)
    """Image scale the depth maps are computed at (0.5 = half resolution)."""
    max_pairs: int = option(0, flag="--max-pairs", min=0)
    """Use at most this many pairs, evenly spread over the images (0 = one per image)."""
    min_baseline_ratio: float = option(0.05, min=0.0)
    """Smallest accepted baseline / scene depth of a pair."""
    max_baseline_ratio: float = option(0.45, min=0.0)
    """Largest accepted baseline / scene depth of a pair."""
    consistency_neighbours: int = option(2, min=0)
    """Depth maps each depth map is checked against (0 = no consistency filter)."""
    consistency_tol: float = option(0.02, min=0.0)
    """Relative depth difference under which two depth maps agree."""
    voxel_size: float = option(0.0, flag="--voxel-size", min=0.0)
    """TSDF voxel side in metres; 0 = automatic (1.5 pixel footprints at the median scene depth)."""
    trunc_voxels: float = option(4.0, min=0.0)
    """TSDF truncation distance in voxels."""
    weight_threshold: float = option(2.0, flag="--weight-threshold", min=0.0)
    """Mesh only surfaces seen by at least this many depth maps."""
