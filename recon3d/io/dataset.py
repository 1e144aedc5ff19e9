"""Training views from a workspace: undistorted images, pinhole cameras, poses, split, points.

Shared by the splat and NeRF backends so both train and evaluate on the same views. The
held-out test split is the usual convention: sorted by name, every 8th image (0, 8, 16, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.geometry.camera import Camera
from recon3d.io.cameras import camera_from_colmap
from recon3d.io.colmap import Model, read_model


@dataclass
class TrainView:
    """One photo ready for training."""

    name: str
    """Image file name (as in the COLMAP model)."""
    image: np.ndarray
    """(H, W, 3) float32 RGB in [0, 1], undistorted."""
    camera: Camera
    """Pinhole camera of ``image`` (no distortion; COLMAP pixel centres)."""
    cam_from_world: np.ndarray
    """(3, 4) pose."""


@dataclass
class SceneData:
    """Everything a radiance-field backend needs from a workspace."""

    train: list[TrainView]
    """Training views."""
    test: list[TrainView]
    """Held-out views (every ``test_every``-th image by name)."""
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """(P, 3) sparse points (world)."""
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """(P, 3) point colours in [0, 1]."""

    @property
    def all_views(self) -> list[TrainView]:
        return sorted(self.train + self.test, key=lambda v: v.name)

    def camera_centers(self) -> np.ndarray:
        """(V, 3) centres of all views."""
        return np.stack([-v.cam_from_world[:, :3].T @ v.cam_from_world[:, 3] for v in self.all_views])

    def scene_scale(self) -> float:
        """Radius of the camera centres around their mean (the 3DGS 'cameras extent'), times 1.1."""
        c = self.camera_centers()
        return float(np.linalg.norm(c - c.mean(0), axis=1).max() * 1.1) or 1.0


def split_names(names: list[str], test_every: int = 8) -> tuple[list[str], list[str]]:
    """Train and test names: sorted, every ``test_every``-th (0, 8, ...) held out; 0 disables."""
    names = sorted(names)
    if test_every <= 0 or len(names) < 2:
        return names, []
    test = names[::test_every]
    return [n for n in names if n not in set(test)], test


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"{path}: missing or unreadable image; the workspace's images/ must hold every model image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def undistort_view(rgb: np.ndarray, camera: Camera) -> tuple[np.ndarray, Camera]:
    """Undistort an image to a pinhole camera that keeps only valid pixels (alpha 0).

    Args:
        rgb: ``(H, W, 3)`` image.
        camera: its camera (with distortion).
    Returns:
        the undistorted ``(H, W, 3)`` image and its pinhole :class:`Camera`.
    """
    if not camera.has_distortion:
        return rgb, camera
    size = (camera.width, camera.height)
    if camera.model == "fisheye":
        K_new = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            camera.K_opencv, camera.dist[:4], size, np.eye(3), balance=0.0)
        m1, m2 = cv2.fisheye.initUndistortRectifyMap(camera.K_opencv, camera.dist[:4], np.eye(3), K_new, size, cv2.CV_32FC1)
    else:
        K_new, _ = cv2.getOptimalNewCameraMatrix(camera.K_opencv, camera.dist, size, 0.0, size)
        m1, m2 = cv2.initUndistortRectifyMap(camera.K_opencv, camera.dist, None, K_new, size, cv2.CV_32FC1)
    out = cv2.remap(rgb, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    K_new = K_new.copy()
    K_new[0, 2] += 0.5
    K_new[1, 2] += 0.5
    return out, Camera(camera.width, camera.height, K_new)


def load_scene(ws: Workspace, downscale: float = 1.0, test_every: int = 8, model: Model | None = None) -> SceneData:
    """Load a workspace's registered views for training.

    Args:
        ws: workspace with ``sparse/0`` and ``images/``.
        downscale: divide image sizes by this factor (1 = full resolution).
        test_every: hold out every n-th image by name (0: no test split).
        model: an already-read model (default: read ``sparse/0``).
    Returns:
        :class:`SceneData` with undistorted float images and pinhole cameras.
    """
    model = model or read_model(ws.require_model())
    if not model.images:
        raise UserError(f"{ws.model}: the model has no registered images; rerun `recon3d sfm`")
    cams = {cid: camera_from_colmap(*spec, where=ws.model) for cid, spec in model.cameras.items()}
    views: dict[str, TrainView] = {}
    for im in model.images.values():
        rgb = _read_rgb(ws.images / im.name)
        cam = cams[im.camera_id]
        if rgb.shape[:2] != (cam.height, cam.width):
            raise UserError(f"{ws.images / im.name}: image is {rgb.shape[1]}x{rgb.shape[0]} but its camera says "
                            f"{cam.width}x{cam.height}; the images do not belong to this model")
        rgb, cam = undistort_view(rgb, cam)
        if downscale != 1.0:
            w, h = round(cam.width / downscale), round(cam.height / downscale)
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            K = cam.K.copy()
            K[0] *= w / cam.width
            K[1] *= h / cam.height
            cam = Camera(w, h, K)
        views[im.name] = TrainView(im.name, rgb.astype(np.float32) / 255.0, cam, im.cam_from_world)
    train_names, test_names = split_names(list(views), test_every)
    return SceneData(
        train=[views[n] for n in train_names],
        test=[views[n] for n in test_names],
        points=model.points.copy(),
        colors=model.colors.astype(np.float64) / 255.0,
    )
