"""``camera.json`` and ``stereo.json`` files, and cameras of COLMAP models, with one-line errors.

The formats are :class:`~recon3d.geometry.camera.Camera` and
:class:`~recon3d.geometry.rig.StereoRig`'s (pure, raising ``ValueError``); this module reads and
writes the files (atomically) and turns bad input into a :class:`UserError` naming the file and
what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recon3d.core.atomic import atomic_write_json
from recon3d.core.errors import UserError
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import Rectification, StereoRig

__all__ = ["camera_from_colmap", "load_camera", "load_rig", "save_camera", "save_rig"]


def _read_json(path: Path, missing: str, hint: str) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); {hint}") from None


def load_camera(path: Path | str) -> Camera:
    """Read ``camera.json``; a missing or malformed file is a :class:`UserError`."""
    path = Path(path)
    data = _read_json(path, "no such camera file; create one with `recon3d calibrate`",
                      "give a camera.json from `recon3d calibrate`")
    try:
        return Camera.from_json(data)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}; make one with `recon3d calibrate`") from None


def save_camera(camera: Camera, path: Path | str) -> Path:
    """Write ``camera.json`` atomically; returns ``path``."""
    return atomic_write_json(path, camera.to_json())


def load_rig(path: Path | str) -> StereoRig:
    """Read ``stereo.json``; a missing or malformed file is a :class:`UserError`."""
    path = Path(path)
    data = _read_json(path, "no such stereo calibration; make one with `recon3d calibrate --left ... --right ...`",
                      "make one with `recon3d calibrate`")
    try:
        return StereoRig.from_json(data)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}; make one with `recon3d calibrate`") from None


def save_rig(rig: StereoRig, path: Path | str, rect: Rectification | None = None) -> Path:
    """Write ``stereo.json`` atomically (with ``rect``, else the rig's own rectification); returns ``path``."""
    return atomic_write_json(path, rig.to_json(rect))


def camera_from_colmap(model: str, width: int, height: int, params: list[float], where: Path | str) -> Camera:
    """:meth:`Camera.from_colmap`, with a COLMAP model it cannot represent a :class:`UserError` naming ``where``
    (the model folder or file the camera comes from)."""
    try:
        return Camera.from_colmap(model, width, height, params)
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None
