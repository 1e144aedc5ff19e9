"""Video files: which files count as videos, their properties, and decoding their frames upright.

Decoding goes through OpenCV's FFmpeg backend. Phones store portrait clips as landscape frames plus
a rotation in the container (the track's display matrix); OpenCV reports it as
``CAP_PROP_ORIENTATION_META`` (degrees clockwise to turn a frame for display). Its own automatic
rotation is switched off here and the frames are turned with :func:`upright`, so every frame comes
out upright whatever the backend's default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from recon3d.core.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".3gp", ".mts", ".m2ts",
                    ".wmv", ".flv")
"""File extensions recon3d treats as videos (case-insensitive)."""


@dataclass
class VideoInfo:
    """What the container says about a video (sizes after rotation)."""

    path: Path
    width: int
    """Width of an upright frame, pixels."""
    height: int
    """Height of an upright frame, pixels."""
    fps: float
    """Frames per second (0 when the container does not say)."""
    frame_count: int
    """Frames the container declares (may differ slightly from what decodes; 0 when unknown)."""
    rotation: int
    """Degrees clockwise the stored frames are turned to stand upright: 0, 90, 180 or 270."""
    turn: bool = True
    """Whether :func:`read_frames` turns them (False: the backend already does)."""

    @property
    def duration(self) -> float:
        """Length in seconds from the declared frame count and rate (0 when unknown)."""
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def is_video_input(path: Path | str) -> bool:
    """Whether a command's input ``path`` is to be read as a video: a name with a video extension
    (existing or not, so a missing clip is reported as a missing video), or any file (a folder is
    photos). :func:`probe_video` then says when a file is not a video it can read."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_EXTENSIONS or path.is_file()


def _capture(path: Path):
    """An opened ``cv2.VideoCapture`` with automatic rotation off; FFmpeg's and OpenCV's own log lines
    (e.g. "moov atom not found") are kept off the terminal: a bad file is explained in one line."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when the backend loads
    import cv2

    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_FATAL)  # while opening
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        log.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise UserError(f"{path}: not a video OpenCV can read (unknown format, damaged or truncated file); "
                        f"give a video ({', '.join(VIDEO_EXTENSIONS[:6])}, ...) or a folder of photos")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # turned by `upright`, the same on every backend
    return cap


def _rotation(cap) -> tuple[int, bool]:
    """(rotation the container asks for, whether the backend applies it itself despite being told not to)."""
    import cv2

    meta = cap.get(cv2.CAP_PROP_ORIENTATION_META)
    if not np.isfinite(meta) or meta < 0:
        return 0, False
    return int(round(meta / 90.0)) % 4 * 90, cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) > 0


def probe_video(path: Path | str) -> VideoInfo:
    """The properties of a video; :class:`UserError` (exit 2) when it is missing or OpenCV cannot open it."""
    import cv2

    from recon3d.io.images import IMAGE_EXTENSIONS

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; give a video file or a folder of photos")
    if not path.is_file():
        raise UserError(f"{path}: not a file; give a video file")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise UserError(f"{path}: a single photo, not a video; give a video or a folder of photos")
    cap = _capture(path)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        count = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
        rot, by_backend = _rotation(cap)
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise UserError(f"{path}: holds no video stream OpenCV can decode; give a video with a picture track")
    if rot in (90, 270) and not by_backend:
        w, h = h, w
    return VideoInfo(path, w, h, fps if np.isfinite(fps) and fps > 0 else 0.0, count, rot, not by_backend)


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored frame ``(H, W, C)`` ``rotation`` degrees clockwise (0, 90, 180 or 270)."""
    import cv2

    if rotation == 90:
        return cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
    if rotation == 180:
        return cv2.rotate(frame, cv2.ROTATE_180)
    if rotation == 270:
        return cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return frame


def read_frames(info: VideoInfo, wanted: set[int] | None = None) -> Iterator[tuple[int, float, np.ndarray | None]]:
    """Decode a video from the start, in order.

    Args:
        info: from :func:`probe_video`.
        wanted: frame indices whose pixels are needed; None: all. Other frames are decoded but not
            converted (``None`` in their place), which is faster.
    Yields:
        ``(index, time in seconds, upright BGR frame (H, W, 3) uint8 or None)`` for every frame that
        decodes; stops at the first that does not (the end, or a damaged part).
    """
    import cv2

    cap = _capture(info.path)
    try:
        index = 0
        while cap.grab():
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not np.isfinite(t) or (t <= 0 and index > 0):
                t = index / info.fps if info.fps > 0 else float(index)
            frame = None
            if wanted is None or index in wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    return
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                frame = upright(frame, info.rotation if info.turn else 0)
            yield index, float(t), frame
            index += 1
    finally:
        cap.release()
