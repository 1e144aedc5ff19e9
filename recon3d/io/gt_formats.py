"""Ground-truth camera loaders: COLMAP models, Middlebury ``*_par.txt`` and Strecha ``*.camera`` files.

Every loader returns ``{image name: GtCamera}`` in recon3d's conventions (see
:mod:`recon3d.geometry`): ``cam_from_world`` maps world points into the OpenCV camera frame
and ``K`` uses COLMAP pixel centres. :func:`load_gt_cameras` picks the format from the path,
so ``recon3d eval --gt`` and the tests accept any of them.

Formats (as described in ``shared/data/README.md``):

* COLMAP model folder (``cameras.{bin,txt}``, ...), e.g. ``WS/gt/sparse/0`` of a rendered scene.
* Middlebury ``templeR_par.txt``: a count line, then ``name k11..k33 r11..r33 t1 t2 t3`` per view
  with ``x ~ K (R X + t)``; K in OpenCV pixel centres.
* Strecha ``NNNN.jpg.camera``: K (3x3), three radial terms, R (3x3, camera to world), centre C,
  width and height; ``R_cv = R^T``, ``t_cv = -R^T C``; K in OpenCV pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d import geometry
from recon3d.core.errors import UserError


@dataclass
class GtCamera:
    """One ground-truth camera."""

    K: np.ndarray
    """(3, 3) intrinsics, COLMAP pixel centres."""
    cam_from_world: np.ndarray
    """(3, 4) world-to-camera ``[R | t]``."""
    width: int = 0
    """Image width in pixels (0 when the format does not say)."""
    height: int = 0
    """Image height in pixels (0 when the format does not say)."""


def _as_rotation(R: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (measured data are orthonormal only to a few digits)."""
    U, _, Vt = np.linalg.svd(R)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def load_colmap_gt(folder: Path) -> dict[str, GtCamera]:
    """Cameras of a COLMAP model folder (binary or text), keyed by image name."""
    from recon3d.geometry.camera import Camera
    from recon3d.io.colmap import read_model

    model = read_model(folder)
    out = {}
    for im in model.images.values():
        name, w, h, params = model.cameras[im.camera_id]
        try:
            K = Camera.from_colmap(name, w, h, params).K
        except ValueError:  # a model Camera cannot represent: no intrinsics to compare
            K = np.full((3, 3), np.nan)
        out[im.name] = GtCamera(K, im.cam_from_world.copy(), w, h)
    return out


def load_middlebury_par(path: Path) -> dict[str, GtCamera]:
    """Cameras of a Middlebury ``*_par.txt`` file (e.g. ``templeR_par.txt``), keyed by image name."""
    try:
        lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
        count = int(lines[0][0])
        out = {}
        for parts in lines[1:1 + count]:
            vals = np.array([float(v) for v in parts[1:22]])
            K = geometry.K_colmap_from_opencv(vals[:9].reshape(3, 3))
            R = _as_rotation(vals[9:18].reshape(3, 3))
            out[parts[0]] = GtCamera(K, np.concatenate([R, vals[18:21, None]], axis=1))
    except (OSError, ValueError, IndexError) as exc:
        raise UserError(f"{path}: not a Middlebury camera file (count line, then name K R t per view): {exc}") from None
    return out


def load_strecha_camera(path: Path) -> GtCamera:
    """One Strecha ``*.camera`` file (K, radial terms, R camera-to-world, centre, size)."""
    try:
        vals = np.array([float(v) for v in Path(path).read_text().split()])
        K = geometry.K_colmap_from_opencv(vals[:9].reshape(3, 3))
        R_world_from_cam = vals[12:21].reshape(3, 3)
        C = vals[21:24]
        width, height = int(vals[24]), int(vals[25])
    except (OSError, ValueError, IndexError) as exc:
        raise UserError(f"{path}: not a Strecha .camera file (26 numbers: K, radial, R, C, width, height): {exc}") from None
    R = _as_rotation(R_world_from_cam.T)
    return GtCamera(K, np.concatenate([R, (-R @ C)[:, None]], axis=1), width, height)


def load_strecha_folder(folder: Path) -> dict[str, GtCamera]:
    """All ``NAME.camera`` files of a folder, keyed by ``NAME`` (the image name)."""
    return {p.name[: -len(".camera")]: load_strecha_camera(p) for p in sorted(Path(folder).glob("*.camera"))}


def load_gt_cameras(path: Path | str) -> dict[str, GtCamera]:
    """Ground-truth cameras from any supported source, keyed by image name.

    Accepts a COLMAP model folder, a workspace or photo-set folder with ``gt/sparse/0``,
    ``gt/*_par.txt`` or ``gt/*.camera`` inside, a ``*_par.txt`` file, or a folder of ``*.camera`` files.
    """
    path = Path(path)
    if path.is_file():
        if path.name.endswith("_par.txt"):
            return load_middlebury_par(path)
        if path.name.endswith(".camera"):
            return {path.name[: -len(".camera")]: load_strecha_camera(path)}
        raise UserError(f"{path}: unknown ground-truth file; give a COLMAP model folder, a *_par.txt or *.camera files")
    if not path.is_dir():
        raise UserError(f"{path}: no such ground-truth folder or file")
    if any((path / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
        return load_colmap_gt(path)
    for sub in (path / "sparse" / "0", path / "gt" / "sparse" / "0"):
        if any((sub / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return load_colmap_gt(sub)
    for folder in (path, path / "gt"):
        pars = sorted(folder.glob("*_par.txt"))
        if pars:
            return load_middlebury_par(pars[0])
        if any(folder.glob("*.camera")):
            return load_strecha_folder(folder)
    raise UserError(f"{path}: no ground truth found (looked for a COLMAP model, *_par.txt and *.camera files)")
