"""Middlebury PFM images (Portable Float Map): read and write float32 disparity maps.

A PFM file is a text header ``Pf`` (one channel) or ``PF`` (three), ``W H``, and a scale
whose sign gives the byte order (negative: little endian), followed by float32 rows stored
**bottom to top**. Middlebury stores invalid disparities as ``inf``; recon3d does the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from recon3d.core.errors import UserError


def write_pfm(path: Path | str, image: np.ndarray) -> Path:
    """Write ``image`` as a little-endian PFM atomically.

    Args:
        path: output ``.pfm`` path.
        image: ``(H, W)`` or ``(H, W, 3)`` array (converted to float32; NaN is written as ``inf``).
    Returns:
        ``path``.
    """
    from recon3d.core.atomic import atomic_write_bytes

    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        kind = b"Pf"
    elif image.ndim == 3 and image.shape[2] == 3:
        kind = b"PF"
    else:
        raise ValueError(f"PFM images are (H, W) or (H, W, 3), got {image.shape}")
    image = np.where(np.isnan(image), np.float32(np.inf), image)
    h, w = image.shape[:2]
    header = kind + b"\n" + f"{w} {h}\n-1.0\n".encode()
    data = np.ascontiguousarray(image[::-1]).astype("<f4").tobytes()
    return atomic_write_bytes(path, header + data)


def read_pfm(path: Path | str) -> np.ndarray:
    """Read a PFM file.

    Args:
        path: a ``.pfm`` file.
    Returns:
        ``(H, W)`` or ``(H, W, 3)`` float32 array, top row first.
    Raises:
        UserError: missing file or not a PFM file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a .pfm disparity map")
    raw = path.read_bytes()
    m = re.match(rb"(P[Ff])\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s", raw)
    if not m:
        raise UserError(f"{path}: not a PFM file (no 'Pf'/'PF' header); give a Middlebury .pfm disparity map")
    channels = 3 if m.group(1) == b"PF" else 1
    w, h, scale = int(m.group(2)), int(m.group(3)), float(m.group(4))
    dtype = "<f4" if scale < 0 else ">f4"
    n = w * h * channels
    body = raw[m.end():]
    if len(body) < 4 * n:
        raise UserError(f"{path}: truncated PFM file ({len(body)} bytes of data, {4 * n} expected)")
    data = np.frombuffer(body[: 4 * n], dtype=dtype).astype(np.float32)
    shape = (h, w, 3) if channels == 3 else (h, w)
    return np.ascontiguousarray(data.reshape(shape)[::-1])
