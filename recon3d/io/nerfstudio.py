"""nerfstudio interop through its data format: ``transforms.json`` + ``images/``.

nerfstudio's format (docs: "Data conventions"; parser ``nerfstudio_dataparser.py``)::

    {"camera_model": "OPENCV" | "OPENCV_FISHEYE" | "PINHOLE" | ...,   # top level only
     "fl_x", "fl_y", "cx", "cy", "w", "h",                            # top level, or per frame
     "k1", "k2", "k3", "k4", "p1", "p2",                              # top level, or per frame
     "frames": [{"file_path": "images/x.png", "transform_matrix": 4x4 camera-to-world}, ...],
     "applied_transform": 3x4 (optional), "ply_file_path": "sparse_pc.ply" (optional)}

Cameras are OpenGL-style (x right, y up, z back), so ``transform_matrix = world_from_cam_opencv @
diag(1, -1, -1, 1)``. Pixel centres sit at +0.5, as in COLMAP, so ``cx, cy`` are COLMAP's values.
Radial-tangential "OPENCV" distortion uses k1, k2, (k3), p1, p2 like OpenCV; "OPENCV_FISHEYE" k1..k4.
COLMAP's rational FULL_OPENCV has no nerfstudio equivalent: such views are exported undistorted.

:func:`export_nerfstudio` writes a workspace as such a folder (``recon3d export --format nerfstudio``);
:func:`import_nerfstudio` turns one back into a workspace (``recon3d import-nerfstudio``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from recon3d.core.atomic import atomic_dir
from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.geometry.camera import Camera
from recon3d.io.cameras import camera_from_colmap

OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Flips the camera's y and z axes (its own inverse)."""

PERSPECTIVE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
"""nerfstudio ``camera_model`` values of perspective cameras (radial-tangential distortion)."""
FISHEYE_MODELS = ("OPENCV_FISHEYE",)

_INTRINSICS = ("fl_x", "fl_y", "cx", "cy")
_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


# ------------------------------------------------------------------------------ poses
def transform_matrix_from_cam_from_world(cam_from_world: np.ndarray) -> np.ndarray:
    """nerfstudio ``transform_matrix`` (OpenGL camera-to-world) ``(4, 4)`` from an OpenCV ``(3, 4)`` pose."""
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    world_from_cam = np.eye(4)
    world_from_cam[:3, :3] = R.T
    world_from_cam[:3, 3] = -R.T @ t
    return world_from_cam @ OPENGL_FROM_OPENCV


def cam_from_world_from_transform_matrix(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`transform_matrix_from_cam_from_world`: ``(4, 4)`` or ``(3, 4)`` -> ``(3, 4)``."""
    m = np.eye(4)
    m[:3] = np.asarray(matrix, dtype=np.float64)[:3]
    world_from_cam = m @ OPENGL_FROM_OPENCV
    R = world_from_cam[:3, :3].T
    return np.concatenate([R, (-R @ world_from_cam[:3, 3])[:, None]], axis=1)


# ------------------------------------------------------------------------------ export
def _camera_fields(cam: Camera) -> tuple[str, dict]:
    """nerfstudio camera model and intrinsics/distortion fields of a (non-rational) camera."""
    fields = {"fl_x": float(cam.K[0, 0]), "fl_y": float(cam.K[1, 1]), "cx": float(cam.K[0, 2]),
              "cy": float(cam.K[1, 2]), "w": int(cam.width), "h": int(cam.height)}
    d = list(cam.dist) + [0.0] * 8
    if cam.model == "fisheye":
        fields.update(k1=float(d[0]), k2=float(d[1]), k3=float(d[2]), k4=float(d[3]))
        return "OPENCV_FISHEYE", fields
    if not cam.has_distortion:
        return "PINHOLE", fields
    fields.update(k1=float(d[0]), k2=float(d[1]), k3=float(d[4]), k4=0.0, p1=float(d[2]), p2=float(d[3]))
    return "OPENCV", fields


def _write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """Binary little-endian PLY with x, y, z (float) and red, green, blue (uchar)."""
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rec = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                       ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = points[:, 0], points[:, 1], points[:, 2]
    rec["r"], rec["g"], rec["b"] = colors[:, 0], colors[:, 1], colors[:, 2]
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())


def export_nerfstudio(ws: Workspace, output: Path | None = None) -> Path:
    """Write a workspace's registered views as a nerfstudio dataset.

    Args:
        ws: workspace with ``sparse/0`` and ``images/``.
        output: folder to write (default ``WS/nerfstudio``); replaced atomically if it holds an earlier export.
    Returns:
        the folder, holding ``transforms.json``, ``images/`` and (with SfM points) ``sparse_pc.ply``.
    """
    import cv2

    from recon3d.io.colmap import read_model
    from recon3d.io.dataset import undistort_view

    model = read_model(ws.require_model())
    out = Path(output) if output is not None else ws.root / "nerfstudio"
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "transforms.json").is_file())):
        raise UserError(f"{out}: exists and is not an earlier nerfstudio export; choose a new or empty folder")
    if not model.images:
        raise UserError(f"{ws.model}: the model has no registered images; nothing to export")
    cams = {cid: camera_from_colmap(*spec, where=ws.model) for cid, spec in model.cameras.items()}
    images = sorted(model.images.items(), key=lambda kv: kv[1].name)
    for _, im in images:
        if not (ws.images / im.name).is_file():
            raise UserError(f"{ws.images / im.name}: missing image of the model; the workspace's images/ must hold "
                            "every registered image")
    rational = {cid for cid, c in cams.items() if c.model == "rational"}
    out_cams: dict[int, Camera] = {cid: c for cid, c in cams.items() if cid not in rational}
    per_cam = {}
    for cid, cam in cams.items():
        if cid in rational:  # exported undistorted: its pinhole camera comes from undistort_view
            h, w = cam.height, cam.width
            _, out_cams[cid] = undistort_view(np.zeros((h, w, 3), np.uint8), cam)
        per_cam[cid] = _camera_fields(out_cams[cid])
    kinds = {m for m, _ in per_cam.values()}
    if len(kinds & set(FISHEYE_MODELS)) and len(kinds) > 1:
        raise UserError(f"{ws.model}: mixes fisheye and perspective cameras; nerfstudio needs one camera_model "
                        "per dataset")
    camera_model = kinds.pop() if len(kinds) == 1 else "OPENCV"
    shared = len(per_cam) == 1
    meta: dict = {"camera_model": camera_model}
    if shared:
        meta.update(next(iter(per_cam.values()))[1])
    frames = []
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        for image_id, im in images:
            dst = tmp / "images" / im.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if im.camera_id in rational:
                bgr = cv2.imread(str(ws.images / im.name), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise UserError(f"{ws.images / im.name}: unreadable image")
                und, _ = undistort_view(bgr, cams[im.camera_id])
                cv2.imwrite(str(dst), und)
            else:
                shutil.copy2(ws.images / im.name, dst)
            frame = {"file_path": f"images/{im.name}",
                     "transform_matrix": transform_matrix_from_cam_from_world(im.cam_from_world).tolist(),
                     "colmap_im_id": int(image_id)}
            if not shared:
                frame.update(per_cam[im.camera_id][1])
            frames.append(frame)
        meta["frames"] = frames
        if len(model.points):
            _write_ply(tmp / "sparse_pc.ply", model.points, model.colors)
            meta["ply_file_path"] = "sparse_pc.ply"
        (tmp / "transforms.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


# ------------------------------------------------------------------------------ import
def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError):
        raise UserError(f"{path}: not a readable image") from None


def read_transforms(source: Path) -> tuple[Path, dict]:
    """Find and parse ``transforms.json`` (``source`` is the file or its folder): ``(data folder, meta)``."""
    source = Path(source)
    path = source / "transforms.json" if source.is_dir() else source
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a nerfstudio transforms.json or the folder holding it")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); give a nerfstudio transforms.json") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise UserError(f"{path}: no 'frames' list; a nerfstudio transforms.json lists its images under 'frames'")
    return path.parent, meta


def _frame_camera(meta: dict, frame: dict, model: str, image: Path, where: str) -> Camera:
    def get(key: str):
        if key in frame:
            return frame[key]
        return meta.get(key)

    values = {}
    for key in _INTRINSICS:
        v = get(key)
        if v is None:
            raise UserError(f"{where}: '{key}' is missing (neither in the frame nor at the top of the file)")
        values[key] = _number(v, f"{where}.{key}")
    if values["fl_x"] <= 0 or values["fl_y"] <= 0:
        raise UserError(f"{where}: focal lengths must be positive")
    w, h = get("w"), get("h")
    size = _image_size(image)
    if w is None or h is None:
        w, h = size
    if isinstance(w, bool) or isinstance(h, bool) or not isinstance(w, (int, float)) or not isinstance(h, (int, float)) \
            or int(w) != w or int(h) != h or w <= 0 or h <= 0:
        raise UserError(f"{where}: 'w' and 'h' must be positive integers, got {w!r} and {h!r}")
    if (int(w), int(h)) != size:
        raise UserError(f"{image}: image is {size[0]}x{size[1]} but transforms.json says {int(w)}x{int(h)}")
    # nerfstudio reads distortion from the top level when any of k1, k2, k3, p1, p2 is there
    src = meta if any(k in meta for k in ("k1", "k2", "k3", "p1", "p2")) else frame
    d = {k: _number(src.get(k, 0.0), f"{where}.{k}") for k in _DISTORTION}
    K = [[values["fl_x"], 0, values["cx"]], [0, values["fl_y"], values["cy"]], [0, 0, 1]]
    if model in FISHEYE_MODELS:
        return Camera(int(w), int(h), K, [d["k1"], d["k2"], d["k3"], d["k4"]], model="fisheye")
    if d["k4"] != 0.0:
        raise UserError(f"{where}: k4 of a perspective camera (an r^8 term in nerfstudio) has no COLMAP equivalent")
    return Camera(int(w), int(h), K, [d["k1"], d["k2"], d["p1"], d["p2"], d["k3"]])


def _pose(frame: dict, applied: np.ndarray | None, where: str) -> np.ndarray:
    m = frame.get("transform_matrix")
    try:
        m = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}.transform_matrix: expected a 4x4 matrix of numbers") from None
    if m.shape not in ((4, 4), (3, 4)) or not np.isfinite(m).all():
        raise UserError(f"{where}.transform_matrix: expected a finite 4x4 (or 3x4) matrix, got shape {m.shape}")
    R = m[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-5 or np.linalg.det(R) < 0:
        raise UserError(f"{where}.transform_matrix: the rotation part is not a rotation (scaled or mirrored poses "
                        "are not supported)")
    full = np.eye(4)
    full[:3] = m[:3]
    if applied is not None:
        full = np.linalg.solve(applied, full)
    return cam_from_world_from_transform_matrix(full)


def import_nerfstudio(source: Path, output: Path, overwrite: bool = False) -> Workspace:
    """Make a workspace (``images/`` + ``sparse/0`` COLMAP binary model, no 3D points) from nerfstudio data.

    ``applied_transform`` (written by ``ns-process-data``) is undone, so poses come back in the frame
    of the original reconstruction.

    Args:
        source: ``transforms.json`` or the folder holding it.
        output: workspace folder to create.
        overwrite: replace an existing ``images/`` and ``sparse/0`` there.
    Returns:
        the :class:`Workspace`.
    """
    import pycolmap

    from recon3d.io.colmap import Model, ModelImage, write_text_model

    data_dir, meta = read_transforms(source)
    where0 = str(data_dir / "transforms.json") if Path(source).is_dir() else str(source)
    model_name = meta.get("camera_model", "OPENCV")
    if model_name not in PERSPECTIVE_MODELS + FISHEYE_MODELS:
        raise UserError(f"{where0}: camera_model {model_name!r} is not supported; use one of "
                        f"{', '.join(PERSPECTIVE_MODELS + FISHEYE_MODELS)}")
    applied = None
    if "applied_transform" in meta:
        a = np.asarray(meta["applied_transform"], dtype=np.float64)
        if a.shape != (3, 4) or not np.isfinite(a).all():
            raise UserError(f"{where0}: applied_transform must be a 3x4 matrix")
        applied = np.eye(4)
        applied[:3] = a
    ws = Workspace(output)
    if not overwrite and (ws.has_model() or (ws.images.is_dir() and any(ws.images.iterdir()))):
        raise UserError(f"{ws.root}: already holds images/ or sparse/0; choose a new folder or pass --overwrite")

    entries = []  # (name, source image, camera, cam_from_world)
    names: set[str] = set()
    for i, frame in enumerate(meta["frames"]):
        where = f"{where0}: frames[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise UserError(f"{where}: needs a 'file_path' string and a 'transform_matrix'")
        rel = Path(frame["file_path"])
        image = (data_dir / rel).resolve()
        if not image.is_file():
            raise UserError(f"{image}: missing image (frames[{i}].file_path); the images must sit beside transforms.json")
        try:
            name = image.relative_to(data_dir.resolve()).as_posix()
        except ValueError:
            name = image.name
        if name.startswith("images/"):
            name = name[len("images/"):]
        if name in names:
            raise UserError(f"{where}: image {name} is listed twice")
        names.add(name)
        cam = _frame_camera(meta, frame, model_name, image, where)
        entries.append((name, image, cam, _pose(frame, applied, where)))

    camera_ids: dict[tuple, int] = {}
    cameras: dict[int, tuple] = {}
    images: dict[int, ModelImage] = {}
    real_names: dict[int, str] = {}
    for image_id, (name, _, cam, pose) in enumerate(sorted(entries, key=lambda e: e[0]), start=1):
        cname, params = cam.colmap_model()
        key = (cname, cam.width, cam.height, tuple(params))
        if key not in camera_ids:
            camera_ids[key] = len(camera_ids) + 1
            cameras[camera_ids[key]] = (cname, cam.width, cam.height, list(params))
        # COLMAP's text model splits lines on spaces: a placeholder name there, the real one set below
        images[image_id] = ModelImage(name=f"image{image_id}", camera_id=camera_ids[key], cam_from_world=pose)
        real_names[image_id] = name

    ws.create()
    for marker in (ws.reports / "stages").glob("*.json"):  # they describe earlier data
        marker.unlink()
    with atomic_dir(ws.images) as tmp:
        for name, src, _, _ in entries:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / name)
    text_dir = ws.root / ".import_text_model"
    write_text_model(Model(cameras, images), text_dir)
    try:
        rec = pycolmap.Reconstruction(str(text_dir))
        for image_id, name in real_names.items():
            rec.image(image_id).name = name
        with atomic_dir(ws.model) as tmp:
            rec.write_binary(str(tmp))
    finally:
        shutil.rmtree(text_dir, ignore_errors=True)
    return ws
