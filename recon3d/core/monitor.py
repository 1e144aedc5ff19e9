"""Training events: how a training loop reports progress to whoever watches (viewer, logs).

Trainers call ``monitor(event)`` every few steps when a monitor is given. The browser viewer
(:mod:`recon3d.viewer`) is one such monitor; it must return quickly (training must not slow
down by more than a few percent), so heavy work (rendering previews) happens only when the
viewer asks for it, through ``event.render``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import numpy as np


@dataclass
class TrainEvent:
    """One progress report from a training loop."""

    backend: str
    """'splat' or 'nerf'."""
    step: int
    """Steps done so far."""
    total_steps: int
    """Steps the run will take."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Scalars of this step: loss, psnr, num_gaussians, steps_per_s, ... The last (``done``) event may carry
    the held-out scores instead or as well: psnr_test, ssim_test."""
    render: Optional[Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]] = None
    """render(cam_from_world (3, 4), K (3, 3), width, height) -> (H, W, 3) uint8 of the current model."""
    splats: Optional[Callable[[], dict[str, Any]]] = None
    """For splat runs: () -> dict of numpy arrays (means (N, 3), quats_wxyz (N, 4), scales (N, 3), opacities (N,), rgbs (N, 3))."""
    done: bool = False
    """True on the last event of the run."""


class Monitor(Protocol):
    def __call__(self, event: TrainEvent) -> None: ...
