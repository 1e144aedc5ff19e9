"""Writing and reading COLMAP models as plain arrays.

recon3d keeps COLMAP's own model format as the contract between stages. pycolmap reads
and writes it; this module adds a dependency-light text writer (used for ground truth)
and a loader that returns numpy arrays keyed by image name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon3d import geometry
from recon3d.core.atomic import atomic_dir
from recon3d.core.errors import UserError


@dataclass
class ModelImage:
    """One registered image of a model."""

    name: str
    camera_id: int
    cam_from_world: np.ndarray
    """(3, 4) ``[R | t]``, world to camera."""
    points2D: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    """(M, 2) keypoint pixels, COLMAP pixel centres."""
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(M,) id of the 3D point each keypoint observes, -1 for none."""


@dataclass
class Model:
    """A COLMAP model as arrays: cameras by id, images in id order, points by id."""

    cameras: dict[int, tuple[str, int, int, list[float]]]
    """camera_id -> (COLMAP model name, width, height, params)."""
    images: dict[int, ModelImage]
    """image_id -> image."""
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(P,) 3D point ids."""
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """(P, 3) 3D points in world coordinates."""
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.uint8))
    """(P, 3) RGB colours, uint8."""

    def by_name(self) -> dict[str, ModelImage]:
        return {im.name: im for im in self.images.values()}


def write_text_model(model: Model, folder: Path | str) -> Path:
    """Write ``cameras.txt``, ``images.txt``, ``points3D.txt`` into ``folder`` atomically."""
    folder = Path(folder)
    tracks: dict[int, list[tuple[int, int]]] = {int(pid): [] for pid in model.point_ids}
    for image_id, im in model.images.items():
        for idx, pid in enumerate(im.point3D_ids):
            if pid >= 0:
                tracks[int(pid)].append((image_id, idx))
    with atomic_dir(folder) as tmp:
        with open(tmp / "cameras.txt", "w") as f:
            f.write("# Camera list with one line of data per camera:\n")
            f.write("#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
            for cid, (name, w, h, params) in sorted(model.cameras.items()):
                f.write(f"{cid} {name} {w} {h} " + " ".join(f"{p:.17g}" for p in params) + "\n")
        with open(tmp / "images.txt", "w") as f:
            f.write("# Image list with two lines of data per image:\n")
            f.write("#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n")
            f.write("#   POINTS2D[] as (X, Y, POINT3D_ID)\n")
            for image_id, im in sorted(model.images.items()):
                q = geometry.quat_wxyz_from_rotmat(im.cam_from_world[:3, :3])
                t = im.cam_from_world[:3, 3]
                f.write(f"{image_id} " + " ".join(f"{v:.17g}" for v in (*q, *t)) + f" {im.camera_id} {im.name}\n")
                f.write(" ".join(f"{x:.17g} {y:.17g} {int(p)}" for (x, y), p in zip(im.points2D, im.point3D_ids)) + "\n")
        with open(tmp / "points3D.txt", "w") as f:
            f.write("# 3D point list with one line of data per point:\n")
            f.write("#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
            for pid, xyz, rgb in zip(model.point_ids, model.points, model.colors):
                track = " ".join(f"{i} {j}" for i, j in tracks[int(pid)])
                f.write(f"{int(pid)} " + " ".join(f"{v:.17g}" for v in xyz) + " " + " ".join(str(int(c)) for c in rgb) + f" 0 {track}\n")
    return folder


def binary_model_problem(folder: Path | str) -> str | None:
    """What is wrong with the layout of ``images.bin`` / ``points3D.bin`` in ``folder`` (truncated,
    trailing bytes), or ``None``. Checked before pycolmap reads them: a length read from a cut file
    makes it allocate without bound instead of failing."""
    import struct

    folder = Path(folder)

    def walk(name: str, record) -> str | None:
        path = folder / name
        if not path.is_file():
            return None
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{name} is truncated"
            for _ in range(struct.unpack("<Q", head)[0]):
                if record(f, size) is None or f.tell() > size:
                    return f"{name} is truncated"
            if f.tell() != size:
                return f"{name} has {size - f.tell()} unexpected bytes at its end"
        return None

    def image(f, size):
        if len(f.read(4 + 56 + 4)) < 64:
            return None
        while True:
            c = f.read(1)
            if not c:
                return None
            if c == b"\0":
                break
        n = f.read(8)
        if len(n) < 8:
            return None
        skip = struct.unpack("<Q", n)[0] * 24
        if f.tell() + skip > size:
            return None
        f.seek(skip, 1)
        return True

    def point(f, size):
        head = f.read(8 + 24 + 3 + 8 + 8)
        if len(head) < 51:
            return None
        skip = struct.unpack_from("<Q", head, 43)[0] * 8
        if f.tell() + skip > size:
            return None
        f.seek(skip, 1)
        return True

    return walk("images.bin", image) or walk("points3D.bin", point)


def read_model(folder: Path | str) -> Model:
    """Read a COLMAP model (binary or text) through pycolmap into arrays."""
    import pycolmap

    folder = Path(folder)
    if not any((folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
        raise UserError(f"{folder}: no COLMAP model (cameras.bin or cameras.txt) here")
    try:
        problem = binary_model_problem(folder) if (folder / "cameras.bin").is_file() else None
        if problem:
            raise ValueError(problem)
        rec = pycolmap.Reconstruction(str(folder))
    except Exception as exc:  # pycolmap raises plain RuntimeError / ValueError on corrupt files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{folder}: COLMAP could not read this model ({first}){repair_hint(folder)}") from None
    return model_from_reconstruction(rec)


def repair_hint(folder: Path) -> str:
    """What remakes the model in ``folder``: for a workspace's ``sparse/N`` the sfm rerun that replaces it."""
    folder = Path(folder)
    if folder.parent.name == "sparse" and folder.parent.parent.name != "gt":
        ws = folder.parent.parent
        return f"; rerun `recon3d sfm {ws / 'images'} -o {ws} --overwrite` to reconstruct it again"
    if folder.parent.name == "sparse":
        return "; render the scene again (`recon3d scene`) to remake its ground truth"
    return "; write the model again"


def model_from_reconstruction(rec) -> Model:
    """Arrays from a ``pycolmap.Reconstruction`` (registered images only)."""
    cameras = {
        cid: (cam.model.name, int(cam.width), int(cam.height), [float(p) for p in cam.params])
        for cid, cam in rec.cameras.items()
    }
    images: dict[int, ModelImage] = {}
    for image_id, im in rec.images.items():
        if not im.has_pose:
            continue
        pts = im.points2D
        images[image_id] = ModelImage(
            name=im.name,
            camera_id=int(im.camera_id),
            cam_from_world=np.asarray(im.cam_from_world().matrix(), dtype=np.float64),
            points2D=np.array([p.xy for p in pts], dtype=np.float64).reshape(-1, 2),
            point3D_ids=np.array(
                [p.point3D_id if p.has_point3D() else -1 for p in pts], dtype=np.int64
            ),
        )
    ids = np.array(sorted(rec.points3D.keys()), dtype=np.int64)
    points = np.array([rec.points3D[i].xyz for i in ids], dtype=np.float64).reshape(-1, 3)
    colors = np.array([rec.points3D[i].color for i in ids], dtype=np.uint8).reshape(-1, 3)
    return Model(cameras, images, ids, points, colors)
