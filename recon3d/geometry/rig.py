"""A calibrated stereo rig and its rectification; its ``stereo.json`` form.

Pure: bad input raises ``ValueError``; reading and writing the file is :mod:`recon3d.io.cameras`
(:func:`~recon3d.io.cameras.load_rig`, :func:`~recon3d.io.cameras.save_rig`).

``stereo.json``::

    {"left": camera.json, "right": camera.json,        # see recon3d.geometry.camera
     "R": 3x3, "T": [3],                              # right_from_left: X_r = R X_l + T
     "baseline": |T|, "E": 3x3, "F": 3x3,              # F maps left pixels to right epipolar lines
     "R1", "R2": 3x3, "P1", "P2": 3x4, "Q": 4x4,       # rectification (COLMAP pixel centres)
     "pixel_convention": "colmap", ...}

All matrices use COLMAP pixel centres (see :mod:`recon3d.geometry`); :meth:`StereoRig.rectify_maps`
does the conversion for OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from recon3d.geometry.camera import Camera
from recon3d.geometry.epipolar import skew


@dataclass
class Rectification:
    """Rectifying rotations and projections (COLMAP pixel centres)."""

    R1: np.ndarray
    """(3, 3) rotation from the left camera frame to the rectified left frame."""
    R2: np.ndarray
    """(3, 3) rotation from the right camera frame to the rectified right frame."""
    P1: np.ndarray
    """(3, 4) projection of the rectified left camera (in its own frame)."""
    P2: np.ndarray
    """(3, 4) projection of the rectified right camera, in the rectified left frame: P2[0, 3] = -f B."""
    Q: np.ndarray
    """(4, 4) reprojection: (x, y, disparity, 1) -> homogeneous 3D point in the rectified left frame."""

    @property
    def focal(self) -> float:
        return float(self.P1[0, 0])

    @property
    def baseline(self) -> float:
        return float(-self.P2[0, 3] / self.P2[0, 0])


@dataclass
class StereoRig:
    """Two cameras and the pose of the right one relative to the left."""

    left: Camera
    right: Camera
    R: np.ndarray
    """(3, 3) rotation right_from_left."""
    T: np.ndarray
    """(3,) translation right_from_left (metres): X_right = R X_left + T."""
    extras: dict = field(default_factory=dict)
    """Other keys of stereo.json (rms_px, per-pair errors, ...)."""

    def __post_init__(self) -> None:
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.T = np.asarray(self.T, dtype=np.float64).reshape(3)

    @property
    def baseline(self) -> float:
        return float(np.linalg.norm(self.T))

    @property
    def E(self) -> np.ndarray:
        """(3, 3) essential matrix, x_r^T E x_l = 0 for normalized points."""
        return skew(self.T) @ self.R

    @property
    def F(self) -> np.ndarray:
        """(3, 3) fundamental matrix, p_r^T F p_l = 0 for pixels (COLMAP centres)."""
        return np.linalg.inv(self.right.K).T @ self.E @ np.linalg.inv(self.left.K)

    def rectify(self, alpha: float = 0.0) -> Rectification:
        """Rectification with ``cv2.stereoRectify`` (zero-disparity flag; alpha 0 crops to valid pixels)."""
        size = (self.left.width, self.left.height)
        R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(
            self.left.K_opencv, self.left.dist, self.right.K_opencv, self.right.dist, size,
            self.R, self.T.reshape(3, 1), flags=cv2.CALIB_ZERO_DISPARITY, alpha=alpha)
        P1, P2, Q = P1.copy(), P2.copy(), Q.copy()
        for P in (P1, P2):
            P[0, 2] += 0.5
            P[1, 2] += 0.5
            P[0, 3] += 0.5 * P[2, 3]
            P[1, 3] += 0.5 * P[2, 3]
        Q[0, 3] -= 0.5
        Q[1, 3] -= 0.5
        return Rectification(R1, R2, P1, P2, Q)

    def rectify_maps(self, rect: Rectification) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``cv2.remap`` maps (left, right) that produce the rectified images."""
        size = (self.left.width, self.left.height)
        maps = []
        for cam, Rr, P in ((self.left, rect.R1, rect.P1), (self.right, rect.R2, rect.P2)):
            Pcv = P.copy()
            Pcv[0, 2] -= 0.5
            Pcv[1, 2] -= 0.5
            maps.append(cv2.initUndistortRectifyMap(cam.K_opencv, cam.dist, Rr, Pcv[:3, :3], size, cv2.CV_32FC1))
        return maps[0], maps[1]

    def to_json(self, rect: Rectification | None = None) -> dict[str, Any]:
        rect = rect or self.rectify()
        data = {
            "left": self.left.to_json(), "right": self.right.to_json(),
            "R": self.R.tolist(), "T": self.T.tolist(), "baseline": self.baseline,
            "E": self.E.tolist(), "F": self.F.tolist(),
            "R1": rect.R1.tolist(), "R2": rect.R2.tolist(), "P1": rect.P1.tolist(),
            "P2": rect.P2.tolist(), "Q": rect.Q.tolist(), "pixel_convention": "colmap",
        }
        data.update({k: v for k, v in self.extras.items() if k not in data})
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StereoRig":
        """The rig of a ``stereo.json`` object (other keys, rectification included, go to ``extras``).

        Raises:
            ValueError: missing or malformed cameras, R or T (the message names the part).
        """
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object with left, right, R and T")
        try:
            cameras = []
            for side in ("left", "right"):
                try:
                    cameras.append(Camera.from_json(data[side]))
                except ValueError as exc:
                    raise ValueError(f"{side}: {exc}") from None
            rig = cls(*cameras, data["R"], data["T"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a stereo calibration file ({exc})") from None
        known = {"left", "right", "R", "T"}
        rig.extras = {k: v for k, v in data.items() if k not in known}
        return rig

    @staticmethod
    def rectification_from_json(data: dict) -> Rectification:
        return Rectification(*(np.asarray(data[k], dtype=np.float64) for k in ("R1", "R2", "P1", "P2", "Q")))
