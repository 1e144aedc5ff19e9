"""The trained NeRF of a workspace as a renderer (``recon3d render``, the viewer's render button).

Registered for the NeRF methods in :mod:`recon3d.core.registry`; camera paths and videos are
:mod:`recon3d.render`'s.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from recon3d.core.workspace import Workspace


def load_renderer(ws: Workspace, device: str = "auto") -> Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]:
    """The trained NeRF of ``ws`` as ``render(cam_from_world (3, 4), K (3, 3), W, H) -> (H, W, 3) uint8``."""
    from recon3d.nerf.evaluate import render_uint8
    from recon3d.nerf.train import load_trained, resolve_device

    model = load_trained(ws, resolve_device(device))
    chunk = model.config.eval_chunk

    def render(cam_from_world, K, width, height):
        return render_uint8(model, cam_from_world, K, width, height, chunk)

    return render
