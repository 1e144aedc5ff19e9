"""A camera's intrinsics and lens distortion, its ``camera.json`` form, and COLMAP models.

Pure: bad input raises ``ValueError``; reading and writing the file is :mod:`recon3d.io.cameras`
(:func:`~recon3d.io.cameras.load_camera`, :func:`~recon3d.io.cameras.save_camera`), which turns
it into a one-line :class:`~recon3d.core.errors.UserError`.

``camera.json`` (written by ``recon3d calibrate`` and by synthetic scenes) holds::

    {"model": "pinhole" | "rational" | "fisheye", "width": W, "height": H,
     "K": [[fx, s, cx], [0, fy, cy], [0, 0, 1]],     # COLMAP pixel centres, see recon3d.geometry
     "dist": [k1, k2, p1, p2, k3, ...],              # OpenCV order (fisheye: k1..k4)
     "pixel_convention": "colmap", ...}              # further keys are kept as extras

``pixel_convention`` says where the centre of the top-left pixel lies: ``"colmap"`` (0.5, 0.5)
or ``"opencv"`` (0, 0). Files without the key are read as ``"colmap"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon3d import geometry

CAMERA_MODELS = ("pinhole", "rational", "fisheye")


@dataclass
class Camera:
    """Intrinsics of one camera (COLMAP pixel centres) and its OpenCV distortion."""

    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    K: np.ndarray
    """(3, 3) intrinsic matrix, COLMAP pixel-centre convention."""
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(k,) distortion in OpenCV order: k1, k2, p1, p2, k3 (rational: ... k4, k5, k6; fisheye: k1..k4)."""
    model: str = "pinhole"
    """Lens model: 'pinhole' (radial-tangential), 'rational' or 'fisheye'."""
    extras: dict = field(default_factory=dict)
    """Other keys found in camera.json (rms_px, views, ...), kept on round trips."""

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"camera model {self.model!r} is unknown; use one of {', '.join(CAMERA_MODELS)}")

    @property
    def K_opencv(self) -> np.ndarray:
        """(3, 3) intrinsics in OpenCV's pixel convention, for cv2 calls."""
        return geometry.K_opencv_from_colmap(self.K)

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(np.abs(self.dist) > 0))

    # -- COLMAP
    def colmap_model(self) -> tuple[str, list[float]]:
        """The matching COLMAP camera model name and parameter list."""
        fx, fy, cx, cy = (float(v) for v in (self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]))
        d = [float(v) for v in self.dist] + [0.0] * 8
        if self.model == "fisheye":
            return "OPENCV_FISHEYE", [fx, fy, cx, cy, *d[:4]]
        if not self.has_distortion:
            return "PINHOLE", [fx, fy, cx, cy]
        if self.model == "rational" or any(abs(x) > 0 for x in d[4:8]):
            # FULL_OPENCV: k1, k2, p1, p2, k3, k4, k5, k6
            return "FULL_OPENCV", [fx, fy, cx, cy, *d[:8]]
        return "OPENCV", [fx, fy, cx, cy, *d[:4]]

    @classmethod
    def from_colmap(cls, model: str, width: int, height: int, params: list[float]) -> "Camera":
        """Build from a COLMAP camera model name and parameters.

        Raises:
            ValueError: a model this class cannot represent (or too few parameters for one it can).
        """
        p = [float(x) for x in params]
        if model == "SIMPLE_PINHOLE":
            f, cx, cy = p
            return cls(width, height, [[f, 0, cx], [0, f, cy], [0, 0, 1]])
        if model == "PINHOLE":
            fx, fy, cx, cy = p
            return cls(width, height, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        if model == "SIMPLE_RADIAL":
            f, cx, cy, k = p
            return cls(width, height, [[f, 0, cx], [0, f, cy], [0, 0, 1]], [k, 0, 0, 0])
        if model == "RADIAL":
            f, cx, cy, k1, k2 = p
            return cls(width, height, [[f, 0, cx], [0, f, cy], [0, 0, 1]], [k1, k2, 0, 0])
        if model in ("OPENCV", "FULL_OPENCV"):
            fx, fy, cx, cy = p[:4]
            return cls(width, height, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], p[4:],
                       model="rational" if len(p) > 9 and any(p[9:]) else "pinhole")
        if model == "OPENCV_FISHEYE":
            fx, fy, cx, cy = p[:4]
            return cls(width, height, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], p[4:], model="fisheye")
        raise ValueError(f"COLMAP camera model {model} is not supported; use PINHOLE, OPENCV or OPENCV_FISHEYE")

    # -- projection (every model; the 5-coefficient pinhole path is pure numpy)
    @property
    def _numpy_path(self) -> bool:
        return self.model == "pinhole" and not np.any(self.dist[5:])

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Pixels of camera-frame points with distortion, ``(*, 3) -> (*, 2)``."""
        if self._numpy_path:
            return geometry.pixels_from_cam_distorted(self.K, self.dist, points_cam)
        import cv2

        pts = np.asarray(points_cam, dtype=np.float64)
        flat = pts.reshape(-1, 1, 3)
        if len(flat) == 0:
            return np.zeros(pts.shape[:-1] + (2,))
        zero = np.zeros(3)
        if self.model == "fisheye":
            uv, _ = cv2.fisheye.projectPoints(flat, zero, zero, self.K_opencv, self.dist[:4])
        else:
            uv, _ = cv2.projectPoints(flat, zero, zero, self.K_opencv, self.dist)
        return uv.reshape(pts.shape[:-1] + (2,)) + geometry.PIXEL_CENTER_OFFSET

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """Camera-frame rays ``(x, y, 1)`` through distorted pixels, ``(*, 2) -> (*, 3)``."""
        if self._numpy_path:
            return geometry.rays_cam_from_pixels_distorted(self.K, self.dist, pixels)
        import cv2

        pix = np.asarray(pixels, dtype=np.float64)
        flat = (pix - geometry.PIXEL_CENTER_OFFSET).reshape(-1, 1, 2)
        if len(flat) == 0:
            return np.zeros(pix.shape[:-1] + (3,))
        crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        if self.model == "fisheye":
            xy = cv2.fisheye.undistortPoints(flat, self.K_opencv, self.dist[:4], criteria=crit)
        else:
            xy = cv2.undistortPoints(flat, self.K_opencv, self.dist, criteria=crit)
        xy = xy.reshape(pix.shape[:-1] + (2,))
        return np.concatenate([xy, np.ones_like(xy[..., :1])], axis=-1)

    def scaled(self, factor: float) -> "Camera":
        """The same camera for images resized by ``factor`` (COLMAP convention keeps this exact)."""
        K = self.K.copy()
        K[:2] *= factor
        return Camera(round(self.width * factor), round(self.height * factor), K, self.dist.copy(), self.model)

    # -- camera.json
    def to_json(self) -> dict[str, Any]:
        data = {
            "model": self.model,
            "width": int(self.width),
            "height": int(self.height),
            "K": self.K.tolist(),
            "dist": self.dist.tolist(),
            "pixel_convention": "colmap",
        }
        data.update({k: v for k, v in self.extras.items() if k not in data})
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Camera":
        """The camera of a ``camera.json`` object.

        Raises:
            ValueError: missing or malformed width, height or K; an unknown pixel convention or model.
        """
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object with width, height, K and dist")
        try:
            K = np.asarray(data["K"], dtype=np.float64).reshape(3, 3)
            width, height = int(data["width"]), int(data["height"])
            dist = np.asarray(data.get("dist", []), dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a camera file (needs width, height and a 3x3 K: {exc})") from None
        convention = data.get("pixel_convention", "colmap")
        if convention == "opencv":
            K = geometry.K_colmap_from_opencv(K)
        elif convention != "colmap":
            raise ValueError(f"pixel_convention must be 'colmap' or 'opencv', not {convention!r}")
        known = {"model", "width", "height", "K", "dist", "pixel_convention"}
        return cls(width, height, K, dist, data.get("model", "pinhole"),
                   extras={k: v for k, v in data.items() if k not in known})
