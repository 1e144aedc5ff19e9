"""Camera rays (COLMAP pixel centres, OpenCV camera frame) and the training ray batches.

The ray through continuous pixel ``(u, v)`` of a pinhole camera ``K`` with pose ``cam_from_world
= [R | t]`` starts at the camera centre ``-R^T t`` and points along ``R^T ((u - cx) / fx, (v - cy) / fy, 1)``;
pixel ``(i, j)`` (row, column) is sampled at its centre ``(j + 0.5, i + 0.5)`` (recon3d.geometry).
"""

from __future__ import annotations

import numpy as np
import torch

from recon3d.io.dataset import TrainView


def rays_from_pixels(K: torch.Tensor, cam_from_world: torch.Tensor, uv: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World rays through pixels.

    Args:
        K: ``(R, 3, 3)`` or ``(3, 3)`` intrinsics (COLMAP pixel centres, zero skew).
        cam_from_world: ``(R, 3, 4)`` or ``(3, 4)`` poses.
        uv: ``(R, 2)`` continuous pixel coordinates.
    Returns:
        origins ``(R, 3)``, unit directions ``(R, 3)``, and ``(R,)`` the z component of each unit
        direction in the camera frame (z-depth = distance * this).
    """
    K = K.expand(uv.shape[0], 3, 3) if K.dim() == 2 else K
    P = cam_from_world.expand(uv.shape[0], 3, 4) if cam_from_world.dim() == 2 else cam_from_world
    x = (uv[:, 0] - K[:, 0, 2]) / K[:, 0, 0]
    y = (uv[:, 1] - K[:, 1, 2]) / K[:, 1, 1]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    norm = d_cam.norm(dim=-1, keepdim=True)
    d_cam = d_cam / norm
    R, t = P[:, :, :3], P[:, :, 3]
    dirs = torch.einsum("rji,rj->ri", R, d_cam)  # R^T d
    origins = -torch.einsum("rji,rj->ri", R, t)
    return origins, dirs, d_cam[:, 2]


def image_rays(K: np.ndarray, cam_from_world: np.ndarray, width: int, height: int, device="cpu"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays through every pixel centre of an image, row-major: ``(H * W, 3)`` x2 and ``(H * W,)`` z-scale."""
    jj, ii = np.meshgrid(np.arange(width), np.arange(height))
    uv = np.stack([jj.ravel() + 0.5, ii.ravel() + 0.5], axis=-1)
    return rays_from_pixels(torch.tensor(K, dtype=torch.float32, device=device),
                            torch.tensor(np.asarray(cam_from_world)[:3], dtype=torch.float32, device=device),
                            torch.tensor(uv, dtype=torch.float32, device=device))


class RayBatches:
    """Random pixels of all training views, as rays; views may differ in size.

    Args:
        views: training views (float images, pinhole cameras, poses).
        device: where batches are built.
    """

    def __init__(self, views: list[TrainView], device: torch.device):
        self.device = device
        sizes = [v.image.shape[0] * v.image.shape[1] for v in views]
        self.total = int(sum(sizes))
        self.starts = torch.tensor(np.cumsum([0] + sizes[:-1]), dtype=torch.int64, device=device)
        self.widths = torch.tensor([v.image.shape[1] for v in views], dtype=torch.int64, device=device)
        self.rgb = torch.tensor(np.concatenate([(v.image.reshape(-1, 3) * 255.0 + 0.5).astype(np.uint8)
                                                for v in views]), device=device)
        self.K = torch.tensor(np.stack([v.camera.K for v in views]), dtype=torch.float32, device=device)
        self.poses = torch.tensor(np.stack([v.cam_from_world[:3] for v in views]), dtype=torch.float32, device=device)

    def sample(self, n: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` random training pixels: origins ``(n, 3)``, directions ``(n, 3)``, RGB ``(n, 3)`` in [0, 1], view index ``(n,)``."""
        flat = torch.randint(0, self.total, (n,), device=self.device, generator=generator)
        view = torch.searchsorted(self.starts, flat, right=True) - 1
        local = flat - self.starts[view]
        w = self.widths[view]
        uv = torch.stack([(local % w).float() + 0.5, torch.div(local, w, rounding_mode="floor").float() + 0.5], dim=-1)
        origins, dirs, _ = rays_from_pixels(self.K[view], self.poses[view], uv)
        return origins, dirs, self.rgb[flat].float() / 255.0, view
