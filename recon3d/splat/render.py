"""Render trained splats: one view of a parameter set, and a workspace's trained splats as a renderer.

:func:`render_image` is what training (the live viewer's renders), evaluation and
:func:`load_renderer` draw with: gsplat's CUDA rasterizer on a GPU, the pure-torch twin on CPUs
(:mod:`recon3d.splat.rasterize`). :func:`load_renderer` reads ``WS/splat/point_cloud.ply`` and the
run's ``WS/splat/config.yaml`` (SH degree reached, background, rasterizer) and is registered for the
splat methods in :mod:`recon3d.core.registry` (``recon3d render --method splat``, the viewer).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.splat.config import SplatConfig


def render_image(params: dict, cam_from_world: np.ndarray, K: np.ndarray, width: int, height: int, sh_degree: int,
                 background: torch.Tensor | None, backend: str, tile_size: int,
                 rasterize_mode: str = "classic") -> torch.Tensor:
    """``(H, W, 3)`` render of ``params`` from one camera, clamped to [0, 1], without grad.

    Args:
        params: Gaussian parameters (gsplat layout, :mod:`recon3d.splat.model`).
        cam_from_world: ``(3, 4)`` pose; ``K``: ``(3, 3)`` intrinsics (COLMAP pixel centres).
        sh_degree: SH degree to evaluate; background: ``(3,)`` colour behind the Gaussians.
        backend: ``"cuda"`` (gsplat) or ``"torch"``; tile_size: the CUDA rasterizer's tile side.
        rasterize_mode: ``"classic"`` or ``"antialiased"`` (as the model was trained).
    """
    from recon3d.splat.model import render, viewmat

    device = params["means"].device
    vm = torch.as_tensor(viewmat(cam_from_world), dtype=torch.float32, device=device)[None]
    Kt = torch.as_tensor(np.asarray(K), dtype=torch.float32, device=device)[None]
    with torch.no_grad():
        img, _, _ = render(params, vm, Kt, int(width), int(height), sh_degree, background,
                           backend=backend, tile_size=tile_size, rasterize_mode=rasterize_mode)
    return img[0].clamp(0, 1)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """An ``(H, W, 3)`` render in [0, 1] as uint8 (rounded as the evaluation pictures are)."""
    return (image * 255 + 0.5).byte().cpu().numpy()


def trained_config(ws: Workspace) -> SplatConfig | None:
    """The resolved config of the workspace's splat run (``WS/splat/config.yaml``), or ``None`` without one."""
    from recon3d.core.config import from_dict, load_yaml

    path = ws.splat / "config.yaml"
    if not path.is_file():
        return None
    return from_dict(SplatConfig, load_yaml(path), where=str(path))


def final_sh_degree(config: SplatConfig) -> int:
    """The SH degree a finished run of ``config`` renders with (raised every ``sh_degree_interval`` steps)."""
    return min(config.steps // max(config.sh_degree_interval, 1), config.sh_degree)


def load_renderer(ws: Workspace, device: str = "auto") -> Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]:
    """The trained splats of ``ws`` as ``render(cam_from_world (3, 4), K (3, 3), W, H) -> (H, W, 3) uint8``.

    Renders exactly as the run's evaluation did (same SH degree, background, tile size and rasterize mode); without
    ``config.yaml`` (splats from elsewhere) every SH degree of the PLY is used on a black background.
    """
    from recon3d.io.gaussians_ply import read_splat_ply
    from recon3d.splat.model import params_from_splats

    ply = ws.splat / "point_cloud.ply"
    if not ply.is_file():
        raise UserError(f"{ply}: no trained splats here; run `recon3d train {ws.root} --method splat` first")
    splats = read_splat_ply(ply)
    ply_degree = int(round(np.sqrt(splats.shN.shape[1] + 1))) - 1
    config = trained_config(ws)
    sh_degree = ply_degree if config is None else min(final_sh_degree(config), ply_degree)
    config = config or SplatConfig()
    rasterizer = "auto" if config.rasterizer == "cuda" else config.rasterizer  # a CUDA run may render on a CPU
    torch_device, backend = resolve_device(dataclasses.replace(config, device=device, rasterizer=rasterizer))
    params = {k: v.detach() for k, v in params_from_splats(splats, torch_device).items()}
    background = torch.tensor(config.background, dtype=torch.float32, device=torch_device)
    tile, mode = config.tile_size, config.rasterize_mode

    def render(cam_from_world, K, width, height):
        return to_uint8(render_image(params, cam_from_world, K, width, height, sh_degree, background, backend, tile,
                                     mode))

    return render


def resolve_device(config: SplatConfig) -> tuple[torch.device, str]:
    """The torch device and rasterizer backend (``"cuda"`` or ``"torch"``) a config asks for."""
    name = config.device
    if name not in ("auto", "cuda", "cpu"):
        raise UserError(f"device {name!r}: expected auto, cuda or cpu")
    has_cuda = torch.cuda.is_available()
    if name == "cuda" and not has_cuda:
        raise UserError(f"--device cuda: no CUDA GPU is visible to torch {torch.__version__}; "
                        "train with --device cpu (slow, small scenes) or on a machine with a GPU")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and has_cuda) else "cpu")
    backend = config.rasterizer
    if backend == "auto":
        backend = "cuda" if device.type == "cuda" else "torch"
    if backend == "cuda" and device.type != "cuda":
        raise UserError("rasterizer=cuda needs a CUDA device; use --device cuda or --set rasterizer=torch")
    return device, backend
