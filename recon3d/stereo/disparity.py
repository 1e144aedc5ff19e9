"""Disparity by semi-global matching (OpenCV SGBM) with recon3d's tuned defaults.

What recon3d adds around ``cv2.StereoSGBM``:

* **left padding**: SGBM cannot match the first ``min + num`` disparity columns of the left
  image; both images are padded on the left by that many replicated columns so pixels near the
  left border are matched wherever their true disparity allows it.
* **left-right consistency** (SGBM's ``disp12MaxDiff``: a pixel is kept only when the right
  view's best match points back to it within ``lr_max_diff`` px), a **uniqueness** margin and
  **speckle filtering** (small disconnected blobs are removed); all mark pixels invalid.
* **sub-pixel refinement**: SGBM's parabola fit locks onto integer disparities; a few
  Gauss-Newton (Lucas-Kanade) steps on a window refine each disparity, accepted only where
  they lower the window's matching error.
* an automatic **disparity range** (image width / 8, or from sparse 3D points for SfM pairs)
  and an optional **downscale** for speed.

Disparities are ``x_left - x_right`` in pixels of the (full-resolution) rectified images;
invalid pixels are NaN.
"""

from __future__ import annotations

import cv2
import numpy as np

from recon3d.core.errors import UserError
from recon3d.stereo.config import SGBMConfig as SGBMConfig

MODES = {"sgbm": cv2.STEREO_SGBM_MODE_SGBM, "3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
         "hh": cv2.STEREO_SGBM_MODE_HH, "hh4": cv2.STEREO_SGBM_MODE_HH4}


def auto_max_disparity(width: int) -> int:
    """Default search range for an image ``width`` px wide: width / 8, at least 32, a multiple of 16."""
    return max(32, int(np.ceil(width / 8 / 16)) * 16)


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img


def sgbm_matcher(config: SGBMConfig, min_disparity: int, num_disparities: int, channels: int) -> "cv2.StereoSGBM":
    """The configured ``cv2.StereoSGBM`` (``num_disparities`` a positive multiple of 16)."""
    bs = int(config.block_size)
    area = channels * bs * bs
    return cv2.StereoSGBM_create(
        minDisparity=int(min_disparity), numDisparities=int(num_disparities), blockSize=bs,
        P1=int(config.p1 or 2 * area), P2=int(config.p2 or 16 * area),
        disp12MaxDiff=int(config.lr_max_diff), uniquenessRatio=int(config.uniqueness),
        speckleWindowSize=int(config.speckle_window), speckleRange=int(config.speckle_range),
        mode=MODES[config.mode])


def search_range(config: SGBMConfig, width: int, scale: float) -> tuple[int, int]:
    """(min disparity, number of disparities) at the matching resolution."""
    lo = int(np.floor(config.min_disparity * scale))
    hi = config.max_disparity * scale if config.max_disparity > 0 else auto_max_disparity(round(width * scale)) + lo
    num = int(np.ceil(max(hi - lo, 16) / 16)) * 16
    return lo, num


def refine_subpixel(left: np.ndarray, right: np.ndarray, disparity: np.ndarray, iters: int = 1,
                    window: int = 7) -> np.ndarray:
    """Refine disparities by windowed Gauss-Newton steps on the grey images.

    Each step linearises ``I_left(x) = I_right(x - d)`` around the current ``d`` and solves for
    the update over a ``window`` x ``window`` box (symmetric gradient, as in ESM); an update is kept
    only where it lowers the window's sum of squared differences and moves by at most 0.5 px.

    Args:
        left, right: ``(H, W)`` or ``(H, W, 3)`` uint8 rectified images.
        disparity: ``(H, W)`` float32 disparity, NaN where invalid.
        iters: number of steps.
        window: box side in pixels.
    Returns:
        ``(H, W)`` float32 refined disparity (NaN where the input was).
    """
    gl = _gray(left).astype(np.float32)
    gr = _gray(right).astype(np.float32)
    h, w = gl.shape
    gxl = cv2.Sobel(gl, cv2.CV_32F, 1, 0, ksize=3) / 8
    gxr = cv2.Sobel(gr, cv2.CV_32F, 1, 0, ksize=3) / 8
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    valid = np.isfinite(disparity)
    d = np.where(valid, disparity, 0).astype(np.float32)
    box = (int(window), int(window))

    def warp(img: np.ndarray, dd: np.ndarray) -> np.ndarray:
        return cv2.remap(img, xs - dd, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    warped = warp(gr, d)
    cost = cv2.boxFilter((gl - warped) ** 2, -1, box, normalize=False)
    for _ in range(int(iters)):
        g = 0.5 * (warp(gxr, d) + gxl)
        r = gl - warped
        num = cv2.boxFilter(g * r, -1, box, normalize=False)
        den = cv2.boxFilter(g * g, -1, box, normalize=False)
        step = np.clip(-num / np.maximum(den, 1e-3), -0.5, 0.5)
        cand = d + np.where(den > 1.0, step, 0).astype(np.float32)
        cand_warped = warp(gr, cand)
        cand_cost = cv2.boxFilter((gl - cand_warped) ** 2, -1, box, normalize=False)
        better = cand_cost < cost
        d = np.where(better, cand, d)
        warped = np.where(better, cand_warped, warped)
        cost = np.where(better, cand_cost, cost)
    return np.where(valid, d, np.nan).astype(np.float32)


def compute_disparity(left: np.ndarray, right: np.ndarray, config: SGBMConfig | None = None,
                      left_valid: np.ndarray | None = None) -> np.ndarray:
    """Disparity of a rectified pair by tuned semi-global matching.

    Args:
        left, right: ``(H, W, 3)`` or ``(H, W)`` uint8 rectified images of the same size.
        config: matching settings (defaults: :class:`SGBMConfig`).
        left_valid: optional ``(H, W)`` bool mask of left pixels that hold image content (False
            where rectification looked outside the photo); their disparity is NaN.
    Returns:
        ``(H, W)`` float32 disparity ``x_left - x_right`` in pixels at the input resolution, NaN
        where invalid (occluded, ambiguous, filtered, or outside the search range).
    """
    config = config or SGBMConfig()
    if left.shape != right.shape:
        raise UserError(f"left image is {left.shape[1]}x{left.shape[0]}, right is {right.shape[1]}x{right.shape[0]}; "
                        "a stereo pair needs two images of the same size")
    if not 0 < config.downscale <= 1:
        raise UserError(f"downscale {config.downscale}: give a factor in (0, 1], e.g. 0.5")
    if config.block_size % 2 == 0 or not 1 <= config.block_size <= 11:
        raise UserError(f"block size {config.block_size}: give an odd number from 1 to 11")
    h, w = left.shape[:2]
    s = float(config.downscale)
    if s < 1:
        size = (max(16, round(w * s)), max(16, round(h * s)))
        left_s = cv2.resize(left, size, interpolation=cv2.INTER_AREA)
        right_s = cv2.resize(right, size, interpolation=cv2.INTER_AREA)
        s = size[0] / w
    else:
        left_s, right_s = left, right
    lo, num = search_range(config, w, s)
    if lo + num >= left_s.shape[1]:
        raise UserError(f"disparity range {lo}..{lo + num} px (at the matching resolution) is as wide as the image "
                        f"({left_s.shape[1]} px); give a smaller --max-disparity")
    channels = 1 if left_s.ndim == 2 else left_s.shape[2]
    matcher = sgbm_matcher(config, lo, num, channels)
    pad = max(lo + num, 0) if config.pad else 0
    if pad:
        border = cv2.BORDER_REPLICATE
        raw = matcher.compute(cv2.copyMakeBorder(left_s, 0, 0, pad, 0, border),
                              cv2.copyMakeBorder(right_s, 0, 0, pad, 0, border))[:, pad:]
    else:
        raw = matcher.compute(left_s, right_s)
    disp = raw.astype(np.float32) / 16.0
    disp[raw < lo * 16] = np.nan  # SGBM marks invalid pixels with (min_disparity - 1) * 16
    if config.refine_iters > 0:
        disp = refine_subpixel(left_s, right_s, disp, config.refine_iters, config.refine_window)
    if config.min_texture > 0:
        disp[local_std(left_s, 9) < config.min_texture] = np.nan
    if s < 1:
        disp = upsample_disparity(disp, (w, h), 1.0 / s)
    if left_valid is not None:
        disp[~left_valid] = np.nan
    return disp


def local_std(image: np.ndarray, window: int) -> np.ndarray:
    """``(H, W)`` float32 grey-level standard deviation over ``window`` x ``window`` boxes."""
    g = _gray(image).astype(np.float32)
    mu = cv2.boxFilter(g, -1, (window, window))
    mu2 = cv2.boxFilter(g * g, -1, (window, window))
    return np.sqrt(np.maximum(mu2 - mu * mu, 0))


def upsample_disparity(disp: np.ndarray, size: tuple[int, int], factor: float) -> np.ndarray:
    """Resize a low-resolution disparity to ``size`` = (W, H) and scale its values by ``factor``.

    Bilinear where all four neighbours are valid, nearest elsewhere (so no value is interpolated
    across an invalid pixel); NaN stays NaN.
    """
    valid = np.isfinite(disp).astype(np.float32)
    filled = np.where(np.isfinite(disp), disp, 0).astype(np.float32)
    lin = cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR)
    lin_valid = cv2.resize(valid, size, interpolation=cv2.INTER_LINEAR)
    near = cv2.resize(np.where(valid > 0, disp, np.nan).astype(np.float32), size, interpolation=cv2.INTER_NEAREST)
    out = np.where(lin_valid > 0.999, lin, near)
    return (out * factor).astype(np.float32)


def opencv_default_disparity(left: np.ndarray, right: np.ndarray, num_disparities: int = 16) -> np.ndarray:
    """Plain ``cv2.StereoSGBM_create()`` (all defaults but the range): the benchmark baseline.

    Args:
        left, right: ``(H, W[, 3])`` uint8 rectified images.
        num_disparities: search range (OpenCV's default is 16).
    Returns:
        ``(H, W)`` float32 disparity, NaN where SGBM reports none.
    """
    raw = cv2.StereoSGBM_create(numDisparities=int(num_disparities)).compute(left, right)
    disp = raw.astype(np.float32) / 16.0
    disp[raw < 0] = np.nan
    return disp
