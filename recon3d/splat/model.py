"""Gaussian parameters: initialisation, optimizers, learning-rate schedule, rendering, conversion.

The model is a plain ``dict[str, torch.nn.Parameter]`` with gsplat's keys and layouts (what its
strategies edit in place)::

    means (N, 3)   scales (N, 3) log   quats (N, 4) wxyz   opacities (N,) logit
    sh0 (N, 1, 3)  shN (N, K, 3)       K = (sh_degree + 1)^2 - 1

with one Adam optimizer per key.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import Tensor

from recon3d.io.dataset import SceneData
from recon3d.io.gaussians_ply import SH_C0, Splats
from recon3d.splat.config import SplatConfig

PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _knn_scale(points: np.ndarray, k: int = 3) -> np.ndarray:
    """(P,) mean distance of each point to its ``k`` nearest neighbours (floored for duplicates)."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return np.full(len(points), 0.01)
    k = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1)
    d = dist[:, 1:].mean(1)
    floor = max(float(np.median(d)) * 1e-2, 1e-7)
    return np.maximum(d, floor)


def _sky_points(scene: SceneData, n: int, radius: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on a sphere of ``radius`` around the cameras' centre, along rays through random
    training pixels, with those pixels' colours. Returns ``(n, 3)`` points and ``(n, 3)`` colours."""
    centre = scene.camera_centers().mean(0)
    pts, cols = [], []
    views = scene.train or scene.test
    which = rng.integers(0, len(views), n)
    for i, view in enumerate(views):
        m = int((which == i).sum())
        if m == 0:
            continue
        cam = view.camera
        u = rng.uniform(0, cam.width, m)
        v = rng.uniform(0, cam.height, m)
        rays_c = np.linalg.solve(cam.K, np.stack([u, v, np.ones(m)]))  # (3, m)
        R, t = view.cam_from_world[:, :3], view.cam_from_world[:, 3]
        origin = -R.T @ t
        d = (R.T @ rays_c).T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        oc = origin - centre
        b = d @ oc
        s = -b + np.sqrt(np.maximum(b * b - (oc @ oc - radius * radius), 0.0))
        pts.append(origin + s[:, None] * d)
        px = view.image[np.clip(v.astype(int), 0, cam.height - 1), np.clip(u.astype(int), 0, cam.width - 1)]
        cols.append(px)
    return np.concatenate(pts), np.concatenate(cols)


def init_splats(scene: SceneData, config: SplatConfig) -> Splats:
    """Initial Gaussians from the sparse points (or random, see ``config.init``).

    Args:
        scene: the training data (points ``(P, 3)``, colours ``(P, 3)``, cameras).
        config: ``init``, ``init_*``, ``sky_*``, ``sh_degree`` and ``seed`` are read.
    Returns:
        :class:`Splats` with ``N`` Gaussians: isotropic scales from the 3-nearest-neighbour
        distance, identity rotations, opacity ``init_opacity``, colour in the degree-0 SH term.
    """
    rng = np.random.default_rng(config.seed)
    scale = scene.scene_scale()
    points, colors = scene.points, scene.colors
    if config.init == "sfm" and len(points) == 0:
        warn("the model has no 3D points; starting from random Gaussians (init=random)")
    if config.init == "random" or len(points) == 0:
        centre = scene.camera_centers().mean(0)
        half = config.init_extent * scale
        points = centre + rng.uniform(-half, half, (config.init_num_points, 3))
        colors = rng.uniform(0, 1, (config.init_num_points, 3))
    if config.sky_points > 0:
        sp, sc = _sky_points(scene, config.sky_points, config.sky_radius * scale, rng)
        points, colors = np.concatenate([points, sp]), np.concatenate([colors, sc])
    n = len(points)
    dist = _knn_scale(points) * config.init_scale
    k = (config.sh_degree + 1) ** 2 - 1
    return Splats(
        means=points.astype(np.float32),
        scales=np.repeat(np.log(dist)[:, None], 3, 1).astype(np.float32),
        quats=np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)),
        opacities=np.full(n, np.log(config.init_opacity / (1 - config.init_opacity)), np.float32),
        sh0=((np.clip(colors, 0, 1) - 0.5) / SH_C0).reshape(n, 1, 3).astype(np.float32),
        shN=np.zeros((n, k, 3), np.float32),
    )


def params_from_splats(splats: Splats, device: str | torch.device) -> dict[str, torch.nn.Parameter]:
    """Trainable parameters (gsplat layout) from :class:`Splats`."""
    arrays = {"means": splats.means, "scales": splats.scales, "quats": splats.quats,
              "opacities": splats.opacities, "sh0": splats.sh0, "shN": splats.shN}
    return {k: torch.nn.Parameter(torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32, device=device))
            for k, v in arrays.items()}


def splats_from_params(params: dict[str, Tensor]) -> Splats:
    """:class:`Splats` (numpy, CPU) from parameters."""
    get = {k: params[k].detach().float().cpu().numpy() for k in PARAM_KEYS}
    return Splats(means=get["means"], scales=get["scales"], quats=get["quats"],
                  opacities=get["opacities"], sh0=get["sh0"], shN=get["shN"])


def learning_rates(config: SplatConfig, scene_scale: float) -> dict[str, float]:
    """Initial learning rate of every parameter (means' scaled by the scene scale)."""
    return {"means": config.lr_means * scene_scale, "scales": config.lr_scales, "quats": config.lr_quats,
            "opacities": config.lr_opacities, "sh0": config.lr_sh0, "shN": config.lr_shN}


def means_lr(config: SplatConfig, scene_scale: float, step: int) -> float:
    """Learning rate of the centres at ``step``: exponential from ``lr_means`` to ``lr_means_final``."""
    t = min(max(step / max(config.steps, 1), 0.0), 1.0)
    return scene_scale * config.lr_means * (config.lr_means_final / config.lr_means) ** t


def uses_gsplat(config: SplatConfig, device: torch.device | str) -> bool:
    """Whether training with ``config`` on ``device`` renders with gsplat's CUDA kernels (not the torch twin)."""
    return torch.device(device).type == "cuda" and config.rasterizer != "torch"


def sparse_grads(config: SplatConfig, device: torch.device | str) -> bool:
    """Whether the run uses sparse gradients (``sparse_grad`` and ``packed``, on gsplat's rasterizer)."""
    return config.sparse_grad and config.packed and uses_gsplat(config, device)


def make_optimizers(params: dict[str, torch.nn.Parameter], config: SplatConfig,
                    scene_scale: float) -> dict[str, torch.optim.Optimizer]:
    """One Adam per parameter (as gsplat's strategies expect), eps 1e-15 as in 3DGS; SparseAdam with
    ``sparse_grad`` on gsplat's rasterizer."""
    lrs = learning_rates(config, scene_scale)
    sparse = sparse_grads(config, next(iter(params.values())).device)
    cls = torch.optim.SparseAdam if sparse else torch.optim.Adam
    return {k: cls([{"params": [p], "lr": lrs[k], "name": k}], eps=1e-15) for k, p in params.items()}


def sparsify_grads(params: dict[str, torch.nn.Parameter], info: dict) -> None:
    """Make the gradients of the Gaussians seen (``info["gaussian_ids"]``, packed) sparse, as gsplat's
    trainer does with ``sparse_grad`` (SparseAdam then updates only those rows)."""
    ids = info["gaussian_ids"]
    for p in params.values():
        if p.grad is None or p.grad.is_sparse:
            continue
        p.grad = torch.sparse_coo_tensor(ids[None], p.grad[ids], p.size(), is_coalesced=False).coalesce()


def render(
    params: dict[str, Tensor],
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: int,
    background: Tensor | None = None,  # [3]
    backend: str = "auto",
    tile_size: int = 16,
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    packed: bool = False,
    sparse_grad: bool = False,
) -> tuple[Tensor, Tensor, dict]:
    """Render the model into ``C`` cameras (activations applied here; options as :func:`rasterize`).

    Returns:
        ``colors (C, H, W, 3)``, ``alphas (C, H, W, 1)`` and the rasterizer's ``meta``.
    """
    from recon3d.splat.rasterize import rasterize

    C = viewmats.shape[0]
    coeffs = torch.cat([params["sh0"], params["shN"]], 1)
    bg = None if background is None else background.expand(C, 3)
    return rasterize(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        coeffs, viewmats, Ks, width, height, sh_degree=sh_degree, backgrounds=bg, backend=backend,
        tile_size=tile_size, absgrad=absgrad, rasterize_mode=rasterize_mode, packed=packed, sparse_grad=sparse_grad,
    )


def viewmat(cam_from_world: np.ndarray) -> np.ndarray:
    """(4, 4) view matrix from a (3, 4) cam_from_world."""
    m = np.eye(4)
    m[:3] = cam_from_world
    return m
