"""Calibration boards and their detection: checkerboards (OpenCV SB detector, classic fallback) and ChArUco.

A :class:`Board` says what was photographed; :func:`detect_board` finds its corners in one
grey image and returns a :class:`Detection` whose pixels follow recon3d's COLMAP convention
(centre of the top-left pixel at (0.5, 0.5), see :mod:`recon3d.geometry`).

Checkerboard corners are put in a canonical order that does not depend on the detector or on
the camera: corner 0 is the one whose diagonal outer square is black (when the board's two
ends differ in colour, i.e. cols + rows is odd, as for 9x6), and the board's x and y axes keep
the right-handed order a camera in front of the board sees. So the corner ``(i, j)`` (index
``j * cols + i``) is board point ``(i * square, j * square, 0)`` in every view, in both cameras
of a stereo rig, matching the synthetic scenes' ``gt/corners.npy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from recon3d.calibrate.config import Board as Board
from recon3d.calibrate.config import dictionary_name as dictionary_name
from recon3d.calibrate.config import parse_board_size as parse_board_size

_TERM = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4)


@dataclass
class Detection:
    """The board found (or not) in one image."""

    image: str
    """The image path as given."""
    size: tuple[int, int]
    """(width, height) of the image."""
    found: bool = False
    """Whether enough corners were found to use this view."""
    corners: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    """``(N, 2)`` corner pixels, COLMAP pixel centres."""
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """``(N,)`` board corner ids (index into :meth:`Board.object_points`)."""
    method: str = ""
    """Which detector found the board ('sb', 'classic', 'charuco'), or why not."""

    def object_points(self, board: Board) -> np.ndarray:
        """``(N, 3)`` board points of the detected corners."""
        return board.object_points()[self.ids]


# ------------------------------------------------------------------------------ checkerboards
def _grid_orient(gray: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Canonical order of a ``(rows, cols, 2)`` corner grid (OpenCV pixels); see the module docstring."""
    # handedness: x (along a row) then y (down the columns) must turn the way the camera sees the front
    dx = grid[:, -1] - grid[:, 0]
    dy = grid[-1, :] - grid[0, :]
    cross = dx.mean(0)[0] * dy.mean(0)[1] - dx.mean(0)[1] * dy.mean(0)[0]
    if cross < 0:
        grid = grid[:, ::-1]
    rows, cols = grid.shape[:2]
    if (rows + cols) % 2 == 1:
        # the outer squares diagonal from the first and last corners have opposite colours
        def outer(c0, cx, cy):
            p = c0 - 0.5 * (cx - c0) - 0.5 * (cy - c0)
            r = max(1.0, 0.12 * min(np.linalg.norm(cx - c0), np.linalg.norm(cy - c0)))
            x0, x1 = int(round(p[0] - r)), int(round(p[0] + r)) + 1
            y0, y1 = int(round(p[1] - r)), int(round(p[1] + r)) + 1
            if x0 < 0 or y0 < 0 or x1 > gray.shape[1] or y1 > gray.shape[0]:
                return None
            return float(gray[y0:y1, x0:x1].mean())

        first = outer(grid[0, 0], grid[0, 1], grid[1, 0])
        last = outer(grid[-1, -1], grid[-1, -2], grid[-2, -1])
        if first is not None and last is not None and abs(first - last) > 10:
            return grid if first < last else grid[::-1, ::-1]
    # same colours at both ends (or unseen): corner 0 nearest the image's top-left
    return grid if grid[0, 0].sum() <= grid[-1, -1].sum() else grid[::-1, ::-1]


def _refine(gray: np.ndarray, corners: np.ndarray, spacing: float) -> np.ndarray:
    """Sub-pixel refinement with a window that fits inside a square, ``(N, 2) -> (N, 2)``."""
    half = int(np.clip(round(0.4 * spacing), 2, 11))
    pts = corners.reshape(-1, 1, 2).astype(np.float32).copy()
    return cv2.cornerSubPix(gray, pts, (half, half), (-1, -1), _TERM).reshape(-1, 2).astype(np.float64)


def _detect_checkerboard(gray: np.ndarray, board: Board, max_size: int) -> tuple[np.ndarray | None, str]:
    pattern = (board.cols, board.rows)
    scale = min(1.0, max_size / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    corners, method = None, ""
    ok, c = cv2.findChessboardCornersSB(small, pattern)
    if ok:
        corners, method = c, "sb"
    else:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        ok, c = cv2.findChessboardCorners(small, pattern, flags=flags)
        if ok:
            corners, method = c, "classic"
    if corners is None:
        return None, "board not found"
    corners = corners.reshape(-1, 2).astype(np.float64)
    if scale < 1:
        corners = (corners + 0.5) / scale - 0.5
    grid = corners.reshape(board.rows, board.cols, 2)
    spacing = float(np.median(np.concatenate([
        np.linalg.norm(np.diff(grid, axis=0), axis=-1).ravel(), np.linalg.norm(np.diff(grid, axis=1), axis=-1).ravel()])))
    # SB corners carry a small systematic bias on smooth (anti-aliased) edges; the saddle-point
    # refinement removes it (measured on the checkerboard scene: focal error 0.47% -> 0.06%)
    corners = _refine(gray, corners, spacing)
    grid = _grid_orient(gray, corners.reshape(board.rows, board.cols, 2))
    return grid.reshape(-1, 2), method


# ------------------------------------------------------------------------------------ ChArUco
def _detect_charuco(gray: np.ndarray, board: Board, min_corners: int) -> tuple[np.ndarray | None, np.ndarray, str]:
    cboard = board.charuco_board()
    detector = cv2.aruco.CharucoDetector(cboard)
    corners, ids, _, marker_ids = detector.detectBoard(gray)
    if ids is None or len(ids) < min_corners:
        n = 0 if ids is None else len(ids)
        markers = 0 if marker_ids is None else len(marker_ids)
        return None, np.zeros(0, dtype=np.int64), f"{n} ChArUco corners ({markers} markers), need {min_corners}"
    ids = ids.reshape(-1).astype(np.int64)
    corners = corners.reshape(-1, 2).astype(np.float64)
    if cboard.checkCharucoCornersCollinear(ids.reshape(-1, 1).astype(np.int32)):
        return None, np.zeros(0, dtype=np.int64), "ChArUco corners collinear"
    order = np.argsort(ids)
    corners, ids = corners[order], ids[order]
    # OpenCV's interpolated ChArUco corners scatter by ~0.1-0.4 px; a saddle-point refinement in a
    # window that stays inside the white margin around the markers brings them to ~0.04 px
    if len(corners) > 1:
        d = np.linalg.norm(corners[:, None] - corners[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        spacing = float(np.median(d.min(1)))
        margin = (board.square - board.marker) / (2 * board.square)
        half = int(np.clip(round(0.6 * margin * spacing), 2, 11))
        pts = corners.reshape(-1, 1, 2).astype(np.float32)
        corners = cv2.cornerSubPix(gray, pts, (half, half), (-1, -1), _TERM).reshape(-1, 2).astype(np.float64)
    return corners, ids, "charuco"


def detect_board(gray: np.ndarray, board: Board, image: str = "", max_size: int = 1600,
                 min_corners: int = 8) -> Detection:
    """Find the board in one grey image.

    Args:
        gray: ``(H, W)`` uint8 image.
        board: what to look for.
        image: name recorded in the detection.
        max_size: checkerboards are searched in a copy whose longer side is at most this many
            pixels (big photos are slow otherwise); corners are then refined at full resolution.
        min_corners: ChArUco views with fewer corners are not used.
    Returns:
        a :class:`Detection`; ``corners`` are ``(N, 2)`` pixels in COLMAP convention.
    """
    size = (int(gray.shape[1]), int(gray.shape[0]))
    if board.charuco:
        corners, ids, method = _detect_charuco(gray, board, min_corners)
    else:
        corners, method = _detect_checkerboard(gray, board, max_size)
        ids = np.arange(board.n_corners, dtype=np.int64)
    if corners is None:
        return Detection(image, size, False, method=method)
    return Detection(image, size, True, corners + 0.5, ids, method)


def board_size_shown(gray: np.ndarray, board: Board, max_size: int = 1600) -> tuple[int, int] | None:
    """The ``(cols, rows)`` of inner corners of the whole checkerboard in a photo, in ``board``'s orientation.

    OpenCV's SB detector with ``CALIB_CB_LARGER`` grows a found grid to the whole board it lies in, so
    the size is found even when ``board`` is smaller or larger than the photographed one (it looks for
    ``board``'s pattern, then for any 3x3 one). None when no checkerboard is seen (or for ChArUco).
    """
    flag = getattr(cv2, "CALIB_CB_LARGER", None)
    if board.charuco or flag is None or not hasattr(cv2, "findChessboardCornersSBWithMeta"):
        return None
    scale = min(1.0, max_size / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    for pattern in dict.fromkeys([(board.cols, board.rows), (3, 3)]):
        ok, _, meta = cv2.findChessboardCornersSBWithMeta(small, pattern, flag)
        if ok and meta is not None:
            a, b = sorted(meta.shape[:2], reverse=True)
            return (a, b) if board.cols >= board.rows else (b, a)
    return None
