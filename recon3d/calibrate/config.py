"""The calibration config: the board and how to calibrate, every setting of ``recon3d calibrate`` once.

No OpenCV here (it is imported where a board is detected or drawn), so ``recon3d --help`` can
build the command line from these fields (:func:`recon3d.core.config.add_config_arguments`;
``flag`` metadata keeps the historical option names such as ``--square`` and ``--model``;
``--board COLSxROWS`` sets ``board.cols`` and ``board.rows`` through :func:`parse_board_size`).
A run saves the resolved config beside its output (``camera.config.yaml``), which
``recon3d calibrate --config`` reads back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from recon3d.core.config import option
from recon3d.core.errors import UserError

LENS_MODELS = ("pinhole", "rational", "fisheye")
"""Lens models calibration can fit (:data:`recon3d.geometry.camera.CAMERA_MODELS`)."""


@dataclass
class Board:
    """The calibration target."""

    cols: int = option(9, min=2)
    """Checkerboard: inner corners along the board's x axis. ChArUco: squares along x (set with --board COLSxROWS)."""
    rows: int = option(6, min=2)
    """Checkerboard: inner corners along y. ChArUco: squares along y (set with --board COLSxROWS)."""
    square: float = option(1.0, flag="--square", min=0.0, metavar="M")
    """Side of one square in metres; it sets the unit of translations and of a rig's baseline (1 =
    translations in squares; a stereo rig needs the real size)."""
    charuco: str | None = option(None, flag="--charuco", metavar="DICT")
    """The board is a ChArUco board with this ArUco dictionary (e.g. 4x4_50, 5x5_100); none for a
    plain checkerboard."""
    marker: float | None = option(None, flag="--marker", min=0.0, metavar="M")
    """ChArUco marker side in metres (default 0.75 x square)."""
    legacy: bool = option(False, flag="--legacy-charuco")
    """ChArUco board made by OpenCV < 4.6 (matters for an even number of rows: the legacy layout)."""

    def __post_init__(self) -> None:
        if self.cols < 2 or self.rows < 2:
            raise UserError(f"--board {self.cols}x{self.rows}: a board needs at least 2x2 corners")
        if not self.square > 0:
            raise UserError(f"--square {self.square}: the square size must be positive (metres)")
        if self.charuco == "":
            self.charuco = None
        if self.charuco is not None:
            self.charuco = dictionary_name(self.charuco)
            if self.cols < 3 or self.rows < 3:
                raise UserError(f"--board {self.cols}x{self.rows}: a ChArUco board needs at least 3x3 squares")
            if self.marker is None:
                self.marker = 0.75 * self.square
            if not 0 < self.marker < self.square:
                raise UserError(f"--marker {self.marker}: the marker side must lie between 0 and the square "
                                f"side ({self.square})")

    @property
    def kind(self) -> str:
        return "charuco" if self.charuco else "checkerboard"

    @property
    def corner_grid(self) -> tuple[int, int]:
        """(cols, rows) of inner corners."""
        return (self.cols - 1, self.rows - 1) if self.charuco else (self.cols, self.rows)

    @property
    def n_corners(self) -> int:
        c, r = self.corner_grid
        return c * r

    def object_points(self) -> np.ndarray:
        """``(n_corners, 3)`` board-frame corners; a checkerboard's index ``j * cols + i`` is at ``(i s, j s, 0)``.

        For ChArUco, OpenCV's corner ids follow the same layout, but its board frame starts at the
        outer corner, so corner ``(i, j)`` lies at ``((i + 1) s, (j + 1) s, 0)``.
        """
        if self.charuco:
            return np.asarray(self.charuco_board().getChessboardCorners(), np.float64).reshape(-1, 3)
        c, r = self.corner_grid
        i, j = np.meshgrid(np.arange(c), np.arange(r))
        return np.stack([i.ravel() * self.square, j.ravel() * self.square, np.zeros(i.size)], axis=1)

    def describe(self) -> str:
        """One line for summaries, e.g. 'checkerboard 9x6 inner corners, squares of 25 mm'."""
        def length(x: float) -> str:
            return f"{x * 1000:g} mm" if x < 1 else f"{x:g} m"

        if self.charuco:
            return (f"ChArUco {self.cols}x{self.rows} squares of {length(self.square)}, markers "
                    f"{length(self.marker)} ({self.charuco})")
        return f"checkerboard {self.cols}x{self.rows} inner corners, squares of {length(self.square)}"

    def to_json(self) -> dict:
        data = {"type": self.kind, "cols": self.cols, "rows": self.rows, "square": self.square}
        if self.charuco:
            data.update(dictionary=self.charuco, marker=self.marker, legacy=self.legacy)
        return data

    def charuco_board(self):
        """The OpenCV ChArUco board (marker layout as printed by ``generateImage``)."""
        import cv2

        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.charuco))
        board = cv2.aruco.CharucoBoard((self.cols, self.rows), self.square, self.marker, dictionary)
        if self.legacy:
            board.setLegacyPattern(True)
        return board


def parse_board_size(text: str) -> tuple[int, int]:
    """``'9x6'`` -> ``(9, 6)``; anything else is a :class:`UserError`."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", str(text))
    if not m:
        raise UserError(f"--board {text!r}: give the size as COLSxROWS, e.g. --board 9x6 "
                        "(a checkerboard's inner corners; a ChArUco board's squares)")
    return int(m.group(1)), int(m.group(2))


def dictionary_name(text: str) -> str:
    """Normalise an ArUco dictionary name: '4x4_50' or 'dict_4x4_50' -> 'DICT_4X4_50'."""
    import cv2

    name = str(text).strip().upper()
    if not name.startswith("DICT_"):
        name = "DICT_" + name
    if not isinstance(getattr(cv2.aruco, name, None), int):
        known = sorted({n[5:].upper() for n in dir(cv2.aruco) if n.startswith("DICT_")})
        raise UserError(f"--charuco {text!r}: unknown ArUco dictionary; use one of {', '.join(known)}")
    return name


@dataclass
class CalibrationConfig:
    """How to calibrate."""

    board: Board = field(default_factory=Board)
    """The calibration target."""
    model: Literal["pinhole", "rational", "fisheye"] = option("pinhole", flag="--model")
    """Lens model: pinhole = k1, k2, p1, p2, k3; rational adds k4, k5, k6 (wide lenses); fisheye = k1..k4
    (mono only)."""
    min_views: int = option(5, flag="--min-views", min=3)
    """Fewest usable views (pairs, for a rig) to calibrate from (at least 3)."""
    outlier_factor: float = option(3.0, min=1.0)
    """A view is dropped when its RMS error exceeds this many times the median ..."""
    outlier_min_px: float = option(0.1, min=0.0)
    """... and also exceeds the median by this many pixels."""
    min_corners: int = option(8, min=4)
    """ChArUco views with fewer detected corners are skipped."""
    max_detect_size: int = option(1600, min=64)
    """Checkerboards are searched in a copy downscaled to this longer side, then refined at full size."""
    refine_rig: bool = True
    """Stereo: after fixing each camera's intrinsics, refine intrinsics and rig jointly."""

    def __post_init__(self) -> None:
        if self.model not in LENS_MODELS:
            raise UserError(f"--model {self.model!r}: unknown lens model; use one of {', '.join(LENS_MODELS)}")
        if self.min_views < 3:
            raise UserError("at least 3 views are needed to calibrate a camera")


def config_path(output: Path) -> Path:
    """Where a calibration saves its resolved config: ``camera.json`` -> ``camera.config.yaml``."""
    output = Path(output)
    return output.with_name(output.stem + ".config.yaml")
