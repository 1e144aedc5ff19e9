"""Render a camera path with any backend's renderer, and write the frames as a video or PNGs.

Videos are MP4 (OpenCV's ``mp4v`` encoder); where no encoder is present the frames are written
as a PNG sequence instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from recon3d.core.atomic import atomic_dir, atomic_path

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi")
"""Outputs with these suffixes are videos; anything else is a folder of PNG frames."""


class NoEncoder(Exception):
    """OpenCV could not encode the video here."""


def write_video(frames: list[np.ndarray], path: Path, fps: float = 30.0) -> Path:
    """Write RGB uint8 frames ``(H, W, 3)`` as an MP4 (OpenCV ``mp4v``) atomically.

    Raises :class:`NoEncoder` (nothing written) when OpenCV cannot encode or read back the video.
    """
    import cv2

    path = Path(path)
    h, w = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise NoEncoder()
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        cap = cv2.VideoCapture(str(tmp))
        ok = cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
        cap.release()
        if not ok:
            raise NoEncoder()
    return path


def write_frames(frames: list[np.ndarray], folder: Path) -> Path:
    """Write RGB uint8 frames as ``folder/frame_NNNN.png`` (the folder is replaced atomically)."""
    import cv2

    with atomic_dir(folder) as tmp:
        for i, f in enumerate(frames):
            cv2.imwrite(str(tmp / f"frame_{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def save_frames(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """MP4 when the suffix asks for a video and an encoder works, else a PNG sequence folder."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            return write_video(frames, path, fps)
        except NoEncoder:
            folder = path.with_name(path.stem + "_frames")
            return write_frames(frames, folder)
    return write_frames(frames, path)


def render_frames(render: Callable[[np.ndarray, np.ndarray, int, int], np.ndarray], poses: np.ndarray,
                  K: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Render every pose with ``render(cam_from_world, K, W, H) -> (H, W, 3) uint8`` (with a progress bar)."""
    from recon3d.core.progress import progress

    return [render(p, K, width, height) for p in progress(poses, desc="render", unit="frame")]
