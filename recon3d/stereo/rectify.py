"""Loading stereo pairs and calibrations, rectification, and rigs built from two posed views.

A rectified pair shares one camera matrix ``P1[:3, :3]`` (COLMAP pixel centres); a point at
depth ``Z`` in the rectified-left frame appears ``d = f B / Z`` pixels further right in the
left image than in the right one. :class:`RectifiedPair` carries the images together with the
geometry that turns disparity into metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from recon3d.core.errors import UserError
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import Rectification, StereoRig
from recon3d.io.cameras import load_rig


@dataclass
class RectifiedPair:
    """A rectified image pair and, when known, its metric geometry."""

    left: np.ndarray
    """(H, W, 3) uint8 BGR rectified left image."""
    right: np.ndarray
    """(H, W, 3) uint8 BGR rectified right image."""
    focal: float | None = None
    """Focal length of the rectified cameras in pixels (None: uncalibrated)."""
    baseline: float | None = None
    """Distance between the camera centres in metres (None: uncalibrated)."""
    camera: Camera | None = None
    """The rectified left camera (no distortion), when calibrated."""
    left_from_rect: np.ndarray | None = None
    """(3, 3) rotation from the rectified-left frame to the original left camera frame (``R1^T``)."""
    left_valid: np.ndarray | None = None
    """(H, W) bool: rectified-left pixels that come from inside the photo (None: all)."""

    @property
    def calibrated(self) -> bool:
        return self.focal is not None and self.baseline is not None


# ------------------------------------------------------------------------------------ images
def load_image(path: Path | str) -> np.ndarray:
    """Read a photo as ``(H, W, 3)`` uint8 BGR (grey, alpha and 16-bit images are converted).

    Raises:
        UserError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such image; give the left and right photos of a stereo pair")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"{path}: not an image OpenCV can read; give a PNG or JPEG photo")
    if img.dtype != np.uint8:
        scale = 255.0 / max(float(img.max()), 1.0) if img.dtype.kind in "iu" else 255.0
        img = np.clip(img.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def check_same_size(left: np.ndarray, right: np.ndarray, left_name: str, right_name: str) -> None:
    """Raise a :class:`UserError` unless the two images have the same width and height."""
    if left.shape[:2] != right.shape[:2]:
        raise UserError(
            f"{left_name} is {left.shape[1]}x{left.shape[0]} but {right_name} is {right.shape[1]}x{right.shape[0]}; "
            "a stereo pair needs two images of the same size")


# ------------------------------------------------------------------------------- calibration
def load_calibration(path: Path | str) -> tuple[StereoRig, Rectification]:
    """Read ``stereo.json``: the rig and its rectification (stored R1/R2/P1/P2/Q, else computed).

    Raises:
        UserError: missing or malformed file, or a rig this module cannot rectify.
    """
    rig = load_rig(path)
    if all(k in rig.extras for k in ("R1", "R2", "P1", "P2", "Q")):
        try:
            rect = StereoRig.rectification_from_json(rig.extras)
            shapes = [m.shape for m in (rect.R1, rect.R2, rect.P1, rect.P2, rect.Q)]
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: malformed rectification matrices ({exc}); "
                            "recalibrate with `recon3d calibrate`") from None
        if shapes != [(3, 3), (3, 3), (3, 4), (3, 4), (4, 4)]:
            raise UserError(f"{path}: rectification matrices have shapes {shapes}; recalibrate with `recon3d calibrate`")
    else:
        rect = rig.rectify()
    check_horizontal(rect, str(path))
    return rig, rect


def check_horizontal(rect: Rectification, where: str) -> None:
    """Raise a :class:`UserError` unless ``rect`` is a horizontal rectification with the right camera on the right."""
    if abs(rect.P2[1, 3]) > abs(rect.P2[0, 3]):
        raise UserError(f"{where}: the cameras are stacked vertically; recon3d stereo needs a side-by-side rig")
    if rect.baseline <= 0:
        raise UserError(f"{where}: the 'right' camera sits left of the 'left' one; swap LEFT and RIGHT")


def check_calibration_size(rig: StereoRig, image: np.ndarray, calib: str, image_name: str) -> None:
    """Raise a :class:`UserError` when the calibrated image size differs from the photos'."""
    h, w = image.shape[:2]
    for side, cam in (("left", rig.left), ("right", rig.right)):
        if (cam.width, cam.height) != (w, h):
            raise UserError(
                f"{calib}: calibrated for {cam.width}x{cam.height} images ({side} camera) but {image_name} is {w}x{h}; "
                "use the calibration of this camera or resize the photos to the calibrated size")


def rectify_pair(rig: StereoRig, rect: Rectification, left: np.ndarray, right: np.ndarray) -> RectifiedPair:
    """Undistort and rectify a raw pair.

    Args:
        rig: the calibrated rig (image size must match the photos).
        rect: its rectification.
        left, right: ``(H, W, 3)`` uint8 raw images.
    Returns:
        The rectified pair with focal length, baseline and the rectified camera.
    """
    (l1, l2), (r1, r2) = rig.rectify_maps(rect)
    left_r = cv2.remap(left, l1, l2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    right_r = cv2.remap(right, r1, r2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ones = np.full(left.shape[:2], 255, dtype=np.uint8)
    valid = cv2.remap(ones, l1, l2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) == 255
    pair = rectified_pair(left_r, right_r, rect)
    pair.left_valid = valid
    return pair


def rectified_pair(left: np.ndarray, right: np.ndarray, rect: Rectification | None) -> RectifiedPair:
    """Wrap already-rectified images, with the geometry of ``rect`` when given."""
    if rect is None:
        return RectifiedPair(left, right)
    h, w = left.shape[:2]
    cam = Camera(w, h, rect.P1[:3, :3])
    return RectifiedPair(left, right, rect.focal, rect.baseline, cam, rect.R1.T.copy())


# ----------------------------------------------------------------------------- posed views
def rig_from_poses(left: Camera, right: Camera, left_cam_from_world: np.ndarray,
                   right_cam_from_world: np.ndarray) -> StereoRig:
    """A rig from two calibrated, posed views (e.g. two images of an SfM model).

    Args:
        left, right: the cameras.
        left_cam_from_world, right_cam_from_world: ``(3, 4)`` poses.
    Returns:
        The rig with ``R, T`` = right_from_left.
    """
    Rl, tl = left_cam_from_world[:, :3], left_cam_from_world[:, 3]
    Rr, tr = right_cam_from_world[:, :3], right_cam_from_world[:, 3]
    R = Rr @ Rl.T
    return StereoRig(left, right, R, tr - R @ tl)


def rect_cam_from_world(rect: Rectification, left_cam_from_world: np.ndarray) -> np.ndarray:
    """``(3, 4)`` pose of the rectified left camera: ``R1 @ left_cam_from_world``."""
    return rect.R1 @ np.asarray(left_cam_from_world, dtype=np.float64)
