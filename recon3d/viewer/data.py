"""What the viewer shows, as plain arrays: cameras, per-point reprojection error, splat covariances.

Nothing here imports viser, so the numbers the viewer draws are tested on their own.
Conventions are :mod:`recon3d.geometry`'s: ``cam_from_world`` ``(3, 4)``, OpenCV camera frame
(x right, y down, z forward), quaternions wxyz, ``K`` in COLMAP pixel-centre convention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recon3d import geometry
from recon3d.geometry.align import umeyama
from recon3d.geometry.camera import Camera
from recon3d.geometry.reprojection import observation_errors
from recon3d.io.cameras import camera_from_colmap
from recon3d.io.colmap import Model


@dataclass
class CameraView:
    """One registered photo, as the viewer draws it."""

    image_id: int
    """COLMAP image id."""
    name: str
    """Image file name (relative to ``images/``)."""
    cam_from_world: np.ndarray
    """(3, 4) world to camera."""
    camera: Camera
    """Intrinsics (K in COLMAP convention) and distortion."""
    image_path: Optional[Path] = None
    """The photo on disk, when it exists."""

    @property
    def world_from_cam(self) -> np.ndarray:
        """(3, 4) camera to world: rotation columns are the camera axes in the world, last column the centre."""
        return geometry.invert_rigid(self.cam_from_world)

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates."""
        return self.world_from_cam[:, 3]

    @property
    def wxyz(self) -> np.ndarray:
        """(4,) rotation of ``world_from_cam`` as a wxyz quaternion (viser's frame convention)."""
        return geometry.quat_wxyz_from_rotmat(self.world_from_cam[:, :3])

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians (pinhole, from fy and the image height)."""
        return float(2.0 * np.arctan2(self.camera.height / 2.0, self.camera.K[1, 1]))

    @property
    def aspect(self) -> float:
        """Width over height."""
        return self.camera.width / self.camera.height


def camera_views(model: Model, images_dir: Path | None = None) -> list[CameraView]:
    """The model's registered images as :class:`CameraView`, in image-id order.

    Args:
        model: a COLMAP model as arrays (:func:`recon3d.colmap_io.read_model`).
        images_dir: folder holding the photos (``ws.images``); paths that do not exist are ``None``.
    """
    cameras = {cid: camera_from_colmap(*spec, where=f"camera {cid} of the model")
               for cid, spec in model.cameras.items()}
    views = []
    for image_id in sorted(model.images):
        im = model.images[image_id]
        path = None
        if images_dir is not None and (Path(images_dir) / im.name).is_file():
            path = Path(images_dir) / im.name
        views.append(CameraView(image_id, im.name, np.asarray(im.cam_from_world, np.float64),
                                cameras[im.camera_id], path))
    return views


# ------------------------------------------------------------------------- reprojection error
@dataclass
class Reprojection:
    """Reprojection error of a model's observations."""

    point_error: np.ndarray
    """(P,) mean error in pixels of each 3D point over its observations (NaN: no observation)."""
    point_track: np.ndarray
    """(P,) number of observations of each point."""
    image_error: dict[int, tuple[float, int]]
    """image_id -> (mean error in pixels, number of observations)."""


def reprojection_errors(model: Model) -> Reprojection:
    """Per-point and per-image reprojection error, recomputed from the model's observations.

    The errors are :func:`recon3d.geometry.reprojection.observation_errors` (every observation
    ``(image, keypoint)`` whose keypoint has a 3D point, projected with the image's pose and camera,
    distortion included); points behind a camera count as 1e6 pixels.
    """
    P = len(model.point_ids)
    err_sum = np.zeros(P)
    count = np.zeros(P, dtype=np.int64)
    image_error: dict[int, tuple[float, int]] = {}
    for image_id, (idx, e) in observation_errors(model).items():
        e = np.where(np.isfinite(e), e, 1e6)
        np.add.at(err_sum, idx, e)
        np.add.at(count, idx, 1)
        image_error[image_id] = (float(e.mean()) if len(e) else float("nan"), int(len(e)))
    with np.errstate(invalid="ignore", divide="ignore"):
        point_error = np.where(count > 0, err_sum / np.maximum(count, 1), np.nan)
    return Reprojection(point_error, count, image_error)


# ------------------------------------------------------------------------------ scene frame
@dataclass
class SceneFrame:
    """Where the scene is and which way is up, for initial views and default sizes."""

    center: np.ndarray
    """(3,) a robust centre of the scene (median of the points, else of the cameras)."""
    radius: float
    """Robust size: distance from ``center`` that holds the cameras and most points."""
    up: np.ndarray
    """(3,) unit world direction that looks up in the photos (mean of the cameras' -y axes)."""
    camera_spacing: float
    """Median distance from a camera to its nearest neighbour (``radius / 10`` for one camera)."""


def scene_frame(views: list[CameraView], points: np.ndarray) -> SceneFrame:
    """Centre, size, up direction and camera spacing of a reconstruction.

    Args:
        views: the cameras (may be empty).
        points: ``(P, 3)`` sparse points (may be empty).
    """
    centers = np.array([v.center for v in views]).reshape(-1, 3)
    points = np.asarray(points, np.float64).reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points):
        center = np.median(points, axis=0)
    elif len(centers):
        center = centers.mean(axis=0)
    else:
        center = np.zeros(3)
    dists = []
    if len(points):
        dists.append(np.percentile(np.linalg.norm(points - center, axis=1), 90))
    if len(centers):
        dists.append(np.linalg.norm(centers - center, axis=1).max())
    radius = float(max(dists)) if dists else 1.0
    radius = radius if np.isfinite(radius) and radius > 1e-9 else 1.0
    if views:
        up = -np.mean([v.world_from_cam[:, 1] for v in views], axis=0)
        norm = np.linalg.norm(up)
        up = up / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])
    else:
        up = np.array([0.0, 0.0, 1.0])
    if len(centers) > 1:
        d = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        spacing = float(np.median(d.min(axis=1)))
    else:
        spacing = radius / 10.0
    if not np.isfinite(spacing) or spacing <= 1e-9:
        spacing = radius / 10.0
    return SceneFrame(center, radius, up, spacing)


def home_view(views: list[CameraView]) -> int | None:
    """Index of the camera the viewer opens at: the medoid of the camera centres (the one with the
    smallest summed distance to the others; the first of equals, e.g. on an orbit); ``None`` without cameras."""
    if not views:
        return None
    c = np.array([v.center for v in views])
    return int(np.argmin(np.linalg.norm(c[:, None] - c[None], axis=-1).sum(axis=1)))


def frustums_at(centers: np.ndarray, eyes: np.ndarray, size: float, around: float = 0.0) -> np.ndarray:
    """Indices of the frustums in the way of views that look through a camera.

    An eye closer than ``size`` (the frustum depth) to a camera centre sits inside that frustum;
    for such an eye every frustum with its apex closer than ``max(size, around)`` is returned (its
    own and, with ``around``, the neighbours' that reach into the picture). Eyes elsewhere hide nothing.

    Args:
        centers: ``(M, 3)`` frustum apexes (camera centres); eyes: ``(E, 3)`` view positions.
        size: frustum depth in world units; around: radius of the neighbours hidden with it.
    Returns:
        ``(K,)`` int64 sorted indices into ``centers``.
    """
    centers = np.asarray(centers, np.float64).reshape(-1, 3)
    eyes = np.asarray(eyes, np.float64).reshape(-1, 3)
    if not len(centers) or not len(eyes):
        return np.zeros(0, np.int64)
    d = np.linalg.norm(eyes[:, None] - centers[None], axis=-1)  # (E, M)
    inside = d.min(axis=1) < size  # (E,) eyes looking through a camera
    return np.flatnonzero((d[inside] < max(size, around)).any(axis=0)).astype(np.int64)


def subsample_indices(n: int, max_n: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_n`` of ``n`` items, random but reproducible, in increasing order.

    Returns ``(min(n, max_n),)`` int64; all indices when ``n <= max_n``.
    """
    if n <= max_n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max(int(max_n), 0), replace=False)).astype(np.int64)


# ------------------------------------------------------------------------------------ splats
def splat_covariances(scales: np.ndarray, quats_wxyz: np.ndarray) -> np.ndarray:
    """World-space covariances ``R diag(s)^2 R^T`` of Gaussians.

    Args:
        scales: ``(N, 3)`` standard deviations along the Gaussian's axes (activated, not log).
        quats_wxyz: ``(N, 4)`` rotations (normalised here).
    Returns:
        ``(N, 3, 3)`` float32 covariances.
    """
    q = np.asarray(quats_wxyz, np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1), np.array([1.0, 0, 0, 0]))
    R = geometry.rotmat_from_quat_wxyz(q)
    M = R * np.asarray(scales, np.float64)[:, None, :]
    return np.einsum("nij,nkj->nik", M, M).astype(np.float32)


@dataclass
class SplatArrays:
    """Gaussians ready for viser's splat node."""

    centers: np.ndarray
    """(N, 3) float32."""
    covariances: np.ndarray
    """(N, 3, 3) float32."""
    rgbs: np.ndarray
    """(N, 3) float32 in [0, 1]."""
    opacities: np.ndarray
    """(N, 1) float32 in [0, 1]."""
    total: int
    """Number of Gaussians before subsampling."""


def splat_arrays(means: np.ndarray, scales: np.ndarray, quats_wxyz: np.ndarray, opacities: np.ndarray,
                 rgbs: np.ndarray, max_splats: int, log_scales: bool | None = None,
                 logit_opacities: bool | None = None) -> SplatArrays:
    """Subsample and activate Gaussian parameters for display.

    Args:
        means: ``(N, 3)``; scales: ``(N, 3)``; quats_wxyz: ``(N, 4)``; opacities: ``(N,)`` or ``(N, 1)``;
        rgbs: ``(N, 3)`` in [0, 1].
        max_splats: keep at most this many (random, reproducible).
        log_scales: whether ``scales`` are logs (3DGS PLY) or standard deviations; ``None``: logs
            when any is negative (standard deviations never are).
        logit_opacities: whether ``opacities`` are logits; ``None``: logits when any lies outside [0, 1].
    """
    n = len(means)
    idx = subsample_indices(n, max_splats)
    s = np.asarray(scales, np.float64)[idx]
    if log_scales is None:
        log_scales = bool(np.any(np.asarray(scales) < 0))
    s = np.exp(s) if log_scales else s
    o = np.asarray(opacities, np.float64).reshape(n)[idx]
    if logit_opacities is None:
        logit_opacities = bool(np.any((np.asarray(opacities) < 0) | (np.asarray(opacities) > 1)))
    o = 1.0 / (1.0 + np.exp(-o)) if logit_opacities else o
    return SplatArrays(
        centers=np.ascontiguousarray(np.asarray(means, np.float32)[idx]),
        covariances=splat_covariances(s, np.asarray(quats_wxyz)[idx]),
        rgbs=np.clip(np.asarray(rgbs, np.float32)[idx], 0.0, 1.0),
        opacities=np.clip(o, 0.0, 1.0).astype(np.float32)[:, None],
        total=n,
    )


# ----------------------------------------------------------------------- ground-truth overlay
def align_gt_views(gt_views: list[CameraView], views: list[CameraView]) -> tuple[list[np.ndarray], str]:
    """Ground-truth camera poses brought into the model's frame by a similarity on shared names.

    Returns ``(cam_from_world (3, 4) per GT view, note)``; the note says how they were aligned.
    With fewer than 3 shared images the GT poses are returned as they are.
    """
    by_name = {v.name: v for v in views}
    shared = [(g, by_name[g.name]) for g in gt_views if g.name in by_name]
    poses = [g.cam_from_world for g in gt_views]
    if len(shared) < 3:
        return poses, f"GT frame as is ({len(shared)} shared images; too few to align)"
    src = np.array([g.center for g, _ in shared])
    dst = np.array([m.center for _, m in shared])
    if np.linalg.matrix_rank(src - src.mean(0), tol=1e-9) < 2:
        return poses, "GT frame as is (shared cameras are collinear)"
    s, R, t = umeyama(src, dst)
    rms = float(np.sqrt(np.mean(np.sum((s * src @ R.T + t - dst) ** 2, axis=1))))
    out = []
    for g in gt_views:
        wfc = g.world_from_cam
        out.append(geometry.invert_rigid(np.concatenate([R @ wfc[:, :3], (s * R @ wfc[:, 3] + t)[:, None]], axis=1)))
    return out, f"aligned by a similarity on {len(shared)} cameras, centre RMS {rms:.2g}"


# ---------------------------------------------------------------------------------- images
def load_thumbnail(path: Path, max_size: int) -> np.ndarray | None:
    """The photo at ``path`` shrunk to fit ``max_size`` pixels, ``(h, w, 3)`` uint8 RGB; ``None`` if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (max_size, max_size))
            im = im.convert("RGB")
            im.thumbnail((max_size, max_size))
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, ValueError):
        return None


def read_point_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices ``(N, 3)`` and colours ``(N, 3)`` uint8 (or ``None``) of a point-cloud or mesh PLY."""
    import open3d as o3d

    pcd = o3d.io.read_point_cloud(str(path))
    points = np.asarray(pcd.points, np.float64)
    colors = (np.clip(np.asarray(pcd.colors), 0, 1) * 255).astype(np.uint8) if pcd.has_colors() else None
    return points, colors


# ---------------------------------------------------------------------------------- reports
REPORT_FILES = (
    ("SfM", "reports/sfm.json"),
    ("Evaluation", "reports/eval.json"),
    ("Splat training", "splat/metrics.json"),
    ("NeRF training", "nerf/metrics.json"),
)
"""(title, path relative to the workspace) of the reports the viewer's panel shows."""


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        rows: list[tuple[str, str]] = []
        for k, v in data.items():
            rows += _flatten(v, f"{prefix}{k}.")
        return rows
    key = prefix.rstrip(".")
    if isinstance(data, list):
        if 0 < len(data) <= 4 and all(isinstance(x, (int, float)) for x in data):
            return [(key, ", ".join(_fmt(x) for x in data))]
        return [(key, f"[{len(data)} items]")]
    return [(key, _fmt(data))]


def _fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def report_rows(path: Path, max_rows: int = 24) -> list[tuple[str, str]] | None:
    """``(key, value)`` rows of a JSON report, nested keys dotted; ``None`` when absent or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    rows = _flatten(data)
    if len(rows) > max_rows:
        rows = rows[:max_rows] + [("…", f"{len(rows) - max_rows} more in {Path(path).name}")]
    return rows


def reports_markdown(root: Path) -> str:
    """A Markdown summary of the workspace's reports (those that exist), one table each."""
    parts = []
    for title, rel in REPORT_FILES:
        rows = report_rows(Path(root) / rel)
        if rows is None:
            continue
        table = "\n".join(f"| {k.replace('|', '/')} | {v.replace('|', '/')} |" for k, v in rows)
        parts.append(f"**{title}** (`{rel}`)\n\n| | |\n|---|---|\n{table}")
    if not parts:
        return "No reports yet (reports/sfm.json, reports/eval.json, splat/metrics.json, nerf/metrics.json)."
    return "\n\n".join(parts)
