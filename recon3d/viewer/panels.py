"""GUI panels beside the scene: the selected camera, renders of the trained model on demand, the reports."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import numpy as np

from recon3d.core import registry
from recon3d.core.workspace import Workspace
from recon3d.viewer import data as D
from recon3d.viewer.server import (
    client_cam_from_world,
    client_K,
    has_camera,
    render_size,
)

RenderFn = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]
"""render(cam_from_world (3, 4), K (3, 3) COLMAP convention, width, height) -> (H, W, 3) uint8."""


class SelectedCameraPanel:
    """Name, pose, reprojection error and photo of the camera the user clicked."""

    def __init__(self, gui, folder):
        self.folder = folder
        self.text = gui.add_markdown("Click a camera frustum to fly the view there and see its photo.")
        self.photo = gui.add_image(np.full((4, 4, 3), 200, np.uint8), label=None, format="jpeg", visible=False)

    def show(self, view: D.CameraView, error: tuple[float, int], photo: Optional[np.ndarray]) -> None:
        """Show ``view``; ``error`` is (mean reprojection error px, observations)."""
        c = view.center
        err = f"{error[0]:.3f} px over {error[1]} observations" if error[1] else "no observations"
        self.text.content = (f"**{view.name}** (image {view.image_id})  \n"
                             f"centre ({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}), "
                             f"{view.camera.width}×{view.camera.height}, f = {view.camera.K[1, 1]:.1f} px  \n"
                             f"reprojection error: {err}")
        if photo is not None:
            self.photo.image = photo
            self.photo.visible = True
        else:
            self.photo.visible = False


def find_loader(ws: Workspace) -> tuple[Optional[Callable[[Workspace], RenderFn]], str, str]:
    """The render hook for ``ws``'s trained model: ``(load_renderer, method, "")`` or ``(None, "", why not)``.

    The hook is the renderer the method registry (:mod:`recon3d.core.registry`) names for the
    backend of the workspace's trained model (a NeRF, else splats). Only checks that the model's
    folder exists and the backend is installed; the renderer is imported (it may import torch)
    when the user first asks for a render.
    """
    backends = sorted(registry.trained_backends(ws.root), key=lambda b: b != "nerf")  # splats are a layer too
    if not backends:
        return None, "", (f"No NeRF or splats in this workspace to render; train one with "
                          f"`recon3d train {ws.root} --method nerf` (or splat).")
    missing = []
    for backend in backends:
        method = registry.backend_renderer(backend)
        if method is None or not registry.available(method):
            missing.append(backend)
            continue

        def load(ws: Workspace, method: str = method) -> RenderFn:
            return registry.renderer(method)(ws)

        return load, method, ""
    return None, "", f"Renders of the {' and '.join(missing)} model need a backend this install does not have."


def check_render(image: Any, width: int, height: int) -> np.ndarray:
    """A renderer's output as ``(height, width, 3)`` uint8, or ``ValueError`` saying what is wrong."""
    img = np.asarray(image)
    if img.dtype != np.uint8 and np.issubdtype(img.dtype, np.floating) and img.size and img.max() <= 1.0:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if img.shape[:2] != (height, width) or img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"renderer returned shape {img.shape}, expected ({height}, {width}, 3)")
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


class RenderPanel:
    """A button that renders the clicking client's current view with the workspace's trained model.

    The render is shown behind the scene (viser background image) for that client and in the panel.
    Without a trained model or without its backend the button is hidden and a note says why.

    Args:
        loader: ``load_renderer(ws) -> RenderFn``; default: :func:`find_loader`'s.
        label: what the button says it renders (default: the trained model's backend, e.g. NeRF).
    """

    def __init__(self, gui, ws: Workspace, max_side: int = 640, loader: Optional[Callable] = None,
                 label: str = ""):
        self.ws, self.max_side = ws, max_side
        note = ""
        if loader is None:
            loader, method, note = find_loader(ws)
            label = label or (registry.get(method).backend if method else "")
        self.label = {"nerf": "NeRF", "splat": "splats"}.get(label, label) or "model"
        self._loader = loader
        self._render: Optional[RenderFn] = None
        self._busy = threading.Lock()
        self.note = gui.add_markdown(note or f"Render the current view with the workspace's {self.label}.")
        self.button = gui.add_button(f"Render this view ({self.label})", visible=loader is not None,
                                     hint="renders what your browser view sees; hide layers to see it unobstructed")
        self.clear = gui.add_button("Clear render", visible=False)
        self.image = gui.add_image(np.full((4, 4, 3), 200, np.uint8), label=None, format="jpeg", visible=False)
        self.button.on_click(lambda event: self.render_for(event.client))
        self.clear.on_click(lambda event: self.clear_for(event.client))

    @property
    def available(self) -> bool:
        return self._loader is not None

    def render_for(self, client) -> Optional[np.ndarray]:
        """Render ``client``'s current view; returns the image (``None`` when it could not)."""
        if client is None or self._loader is None or not has_camera(client):
            return None
        if not self._busy.acquire(blocking=False):
            return None
        self.button.disabled = True
        try:
            t0 = time.perf_counter()
            if self._render is None:
                self.note.content = f"Loading the {self.label}…"
                self._render = self._loader(self.ws)
            w, h = render_size(client.camera, self.max_side)
            img = check_render(self._render(client_cam_from_world(client.camera), client_K(client.camera, w, h), w, h), w, h)
            client.scene.set_background_image(img, format="jpeg")
            self.image.image = img
            self.image.visible = self.clear.visible = True
            self.note.content = f"Rendered {w}×{h} in {time.perf_counter() - t0:.2f} s."
            return img
        except Exception as exc:  # noqa: BLE001 - a failed render must not take the viewer down
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.note.content = f"{self.label} render failed: {first}"
            return None
        finally:
            self.button.disabled = False
            self._busy.release()

    def clear_for(self, client) -> None:
        if client is not None:
            client.scene.set_background_image(None)
        self.image.visible = self.clear.visible = False


class ReportsPanel:
    """The numbers of ``reports/sfm.json``, ``reports/eval.json``, ``splat/metrics.json``, ``nerf/metrics.json``."""

    def __init__(self, gui, ws: Workspace, on_reload: Optional[Callable[[], None]] = None):
        self.ws = ws
        self._on_reload = on_reload
        self.text = gui.add_markdown(D.reports_markdown(ws.root))
        self.button = gui.add_button("Reload from disk", hint="re-read the reports and a newer splat/point_cloud.ply")
        self.button.on_click(lambda _e: self.reload())

    def reload(self) -> None:
        self.text.content = D.reports_markdown(self.ws.root)
        if self._on_reload is not None:
            self._on_reload()
