"""Stereo evaluation against ground truth: disparity, depth, and fused surfaces.

Definitions (the same in tests, benchmark and ``recon3d eval-stereo``):

* **valid GT**: pixels whose ground-truth disparity is finite and > 0 (0 / inf = no surface).
* **non-occluded** (:func:`nonoccluded_mask`): valid-GT pixels that the right camera sees too:
  inside the right image, and not hidden there by a nearer surface. Visibility is derived from
  the GT disparity itself by forward-warping it into the right view (a z-buffer per row).
* **textured** (:func:`textured_mask`): non-occluded pixels whose 7x7 neighbourhood in the left
  image has a grey-level standard deviation above 2 (out of 255): the regions where matching is
  determined by the image rather than by the smoothness prior.
* **EPE**: mean absolute disparity error over masked pixels that have an estimate.
* **bad-k**: fraction of masked pixels whose error exceeds k px **or that have no estimate**
  (missing counts as bad, so a method cannot improve its score by leaving pixels out).
* **density**: fraction of masked pixels with an estimate.
* **surface accuracy** (:func:`surface_distances`): distance from each reconstructed point to the
  true surface, measured along the rays of the ground-truth cameras through it (an upper bound
  of the Euclidean distance; the smallest over the cameras that see the point).
* **completeness** (:func:`completeness`): fraction of ground-truth surface points within a
  threshold of the mesh; **scene extent** (:func:`scene_extent`) is the bounding-box diagonal of
  the ground-truth points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.core.errors import UserError

BAD_THRESHOLDS = (1.0, 2.0, 4.0)
"""Disparity error thresholds (px) of the bad-k rates."""


# -------------------------------------------------------------------------------------- masks
def valid_gt(gt: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels with a ground-truth disparity (finite and > 0)."""
    return np.isfinite(gt) & (gt > 0)


def nonoccluded_mask(gt: np.ndarray, tolerance: float = 1.0) -> np.ndarray:
    """Valid-GT pixels of the left view that the right view also sees.

    Each left pixel's GT disparity is splatted to the right-image columns ``floor`` and ``ceil``
    of ``x - d`` (COLMAP centres); a pixel is visible when its disparity is within ``tolerance`` px
    of the largest disparity (nearest surface) landing on its right-image column, and that
    column lies inside the image.

    Args:
        gt: ``(H, W)`` ground-truth disparity (0 / inf / NaN where no surface).
        tolerance: disparity slack (px) for surfaces slanted within one column.
    Returns:
        ``(H, W)`` bool mask.
    """
    h, w = gt.shape
    ok = valid_gt(gt)
    d = np.where(ok, gt, 0).astype(np.float64)
    xr = np.arange(w)[None, :] - d  # right-image column coordinate (pixel index space)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    best = np.full((h, w), -np.inf)
    for rnd in (np.floor, np.ceil):
        c = rnd(xr).astype(np.int64)
        m = ok & (c >= 0) & (c < w)
        np.maximum.at(best, (rows[m], c[m]), d[m])
    c = np.round(xr).astype(np.int64)
    inside = ok & (c >= 0) & (c < w)
    vis = np.zeros((h, w), dtype=bool)
    vis[inside] = d[inside] >= best[rows[inside], c[inside]] - tolerance
    return vis


def textured_mask(image: np.ndarray, window: int = 7, min_std: float = 2.0) -> np.ndarray:
    """``(H, W)`` bool: pixels whose ``window`` x ``window`` grey-level standard deviation exceeds ``min_std``.

    Args:
        image: ``(H, W, 3)`` BGR or ``(H, W)`` grey uint8 image.
    """
    from recon3d.stereo.disparity import local_std

    return local_std(image, window) > min_std


# ---------------------------------------------------------------------------------- disparity
def disparity_metrics(est: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                      thresholds: tuple[float, ...] = BAD_THRESHOLDS) -> dict:
    """End-point error and bad-k rates of a disparity map.

    Args:
        est: ``(H, W)`` estimated disparity, NaN / inf / < 0 where missing.
        gt: ``(H, W)`` ground truth (0 / inf where no surface).
        mask: optional ``(H, W)`` bool region (intersected with valid GT).
        thresholds: the k of bad-k, px.
    Returns:
        ``{"pixels", "density", "epe", "median", "rmse", "bad_1", "bad_2", "bad_4", ...}``
        (bad-k as fractions; missing estimates count as bad).
    """
    if est.shape != gt.shape:
        raise UserError(f"disparity is {est.shape[1]}x{est.shape[0]} but the ground truth is "
                        f"{gt.shape[1]}x{gt.shape[0]}; compare maps of the same image size")
    region = valid_gt(gt) if mask is None else (mask & valid_gt(gt))
    n = int(region.sum())
    has = np.isfinite(est) & (est >= 0)
    err = np.abs(np.where(has, est, 0).astype(np.float64) - np.where(region, gt, 0))
    e = err[region & has]
    out = {"pixels": n, "density": float(len(e) / n) if n else float("nan"),
           "epe": float(e.mean()) if len(e) else float("nan"),
           "median": float(np.median(e)) if len(e) else float("nan"),
           "rmse": float(np.sqrt(np.mean(e ** 2))) if len(e) else float("nan")}
    for k in thresholds:
        bad = (~has | (err > k)) & region
        out[f"bad_{k:g}"] = float(bad.sum() / n) if n else float("nan")
    return out


# -------------------------------------------------------------------------------------- depth
def depth_metrics(est: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                  near_quantile: float = 1 / 3) -> dict:
    """Relative depth error ``|Z - Z_gt| / Z_gt``, overall and at the near range.

    The near range is the nearest ``near_quantile`` of the masked GT pixels (GT depth below that
    quantile).

    Args:
        est: ``(H, W)`` depth in metres, NaN / inf / <= 0 where missing.
        gt: ``(H, W)`` GT z-depth, inf / 0 where no surface.
        mask: optional ``(H, W)`` bool region.
    Returns:
        ``{"pixels", "density", "median_rel", "mean_rel", "within_1pct", "near_max_depth",
        "near_median_rel", "near_within_1pct", "near_density"}`` (fractions; within-1% counts
        missing pixels as failures).
    """
    if est.shape != gt.shape:
        raise UserError(f"depth is {est.shape[1]}x{est.shape[0]} but the ground truth is "
                        f"{gt.shape[1]}x{gt.shape[0]}; compare maps of the same image size")
    region = np.isfinite(gt) & (gt > 0)
    if mask is not None:
        region &= mask
    has = np.isfinite(est) & (est > 0)
    rel = np.abs(np.where(has, est, 0) - np.where(region, gt, 1)) / np.where(region, gt, 1)

    def stats(m: np.ndarray, prefix: str) -> dict:
        n = int(m.sum())
        r = rel[m & has]
        return {f"{prefix}pixels": n, f"{prefix}density": float(len(r) / n) if n else float("nan"),
                f"{prefix}median_rel": float(np.median(r)) if len(r) else float("nan"),
                f"{prefix}mean_rel": float(r.mean()) if len(r) else float("nan"),
                f"{prefix}within_1pct": float(np.sum(r <= 0.01) / n) if n else float("nan")}

    out = stats(region, "")
    if region.any():
        near_max = float(np.quantile(gt[region], near_quantile))
        out["near_max_depth"] = near_max
        out.update(stats(region & (gt <= near_max), "near_"))
    return out


# ------------------------------------------------------------------------------------ surfaces
@dataclass
class GTViews:
    """Ground-truth cameras with z-depth maps (a synthetic scene's ``gt/``)."""

    K: np.ndarray
    """(V, 3, 3) intrinsics (COLMAP pixel centres)."""
    cam_from_world: np.ndarray
    """(V, 3, 4) poses."""
    depth: np.ndarray
    """(V, H, W) float32 z-depth, inf where no surface."""
    points: np.ndarray
    """(P, 3) ground-truth surface points (the GT model's points3D)."""

    @classmethod
    def load(cls, gt_dir: Path | str) -> "GTViews":
        """Read ``gt/sparse/0`` and ``gt/depth/<image stem>.npy`` (pinhole cameras)."""
        from recon3d.io.cameras import camera_from_colmap
        from recon3d.io.colmap import read_model

        gt_dir = Path(gt_dir)
        model = read_model(gt_dir / "sparse" / "0")
        Ks, poses, depths = [], [], []
        for im in sorted(model.images.values(), key=lambda im: im.name):
            f = gt_dir / "depth" / f"{Path(im.name).stem}.npy"
            if not f.is_file():
                raise UserError(f"{f}: no ground-truth depth for {im.name}; render the scene with `recon3d scene render`")
            name, w, h, params = model.cameras[im.camera_id]
            cam = camera_from_colmap(name, w, h, params, where=gt_dir / "sparse" / "0")
            if cam.has_distortion:
                raise UserError(f"{gt_dir}: ground-truth cameras with lens distortion are not supported here")
            Ks.append(cam.K)
            poses.append(im.cam_from_world)
            depths.append(np.load(f))
        if not poses:
            raise UserError(f"{gt_dir}/sparse/0: no images in the ground-truth model")
        if not any((np.isfinite(d) & (d > 0)).any() for d in depths):
            raise UserError(f"{gt_dir}/depth: not one pixel of the ground-truth depth maps holds a depth (all 0, inf "
                            "or NaN); render the scene again with `recon3d scene render`")
        if len(model.points) == 0:
            raise UserError(f"{gt_dir}/sparse/0: the ground-truth model has no 3D points to score completeness "
                            "against; render the scene again with `recon3d scene render`")
        return cls(np.stack(Ks), np.stack(poses), np.stack(depths), model.points)


def _sample_gt_depth(depth: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """GT depth at continuous pixels ``(N, 2)`` (COLMAP centres): bilinear in inverse depth where the
    four neighbours are on one smooth surface (within 5 %), nearest pixel elsewhere; inf off-surface."""
    h, w = depth.shape
    x = uv[:, 0] - 0.5
    y = uv[:, 1] - 0.5
    x0 = np.clip(np.floor(x).astype(np.int64), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, h - 2)
    fx = np.clip(x - x0, 0, 1)
    fy = np.clip(y - y0, 0, 1)
    q = np.stack([depth[y0, x0], depth[y0, x0 + 1], depth[y0 + 1, x0], depth[y0 + 1, x0 + 1]], axis=1).astype(np.float64)
    inv = 1.0 / q
    wts = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    bil = 1.0 / np.maximum(np.sum(inv * wts, axis=1), 1e-12)
    finite = np.all(np.isfinite(q), axis=1)
    smooth = finite & (np.max(q, axis=1) <= 1.05 * np.min(q, axis=1))
    xi = np.clip(np.round(x).astype(np.int64), 0, w - 1)
    yi = np.clip(np.round(y).astype(np.int64), 0, h - 1)
    return np.where(smooth, bil, depth[yi, xi].astype(np.float64))


def surface_distances(points: np.ndarray, gt: GTViews, chunk: int = 200_000) -> np.ndarray:
    """Distance from each point to the true surface, along the GT cameras' rays.

    For each camera that sees a point (in front, inside the image, on a surface), the distance is
    ``|z - z_gt| * |(x/z, y/z, 1)|`` (the gap along the ray through the point); the result is the
    smallest over those cameras, inf where no camera sees a surface behind or in front of it.

    Args:
        points: ``(N, 3)`` world points.
        gt: the ground-truth views.
    Returns:
        ``(N,)`` distances in metres.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.full(len(points), np.inf)
    _, h, w = gt.depth.shape
    for s in range(0, len(points), chunk):
        X = points[s:s + chunk]
        best = np.full(len(X), np.inf)
        for K, pose, depth in zip(gt.K, gt.cam_from_world, gt.depth):
            Xc = X @ pose[:, :3].T + pose[:, 3]
            z = Xc[:, 2]
            front = z > 1e-6
            ray = np.zeros((len(X), 3))
            ray[front] = Xc[front] / z[front, None]
            uv = ray[:, :2] * np.diag(K)[:2] + K[:2, 2]
            inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
            if not inside.any():
                continue
            idx = np.nonzero(inside)[0]
            zg = _sample_gt_depth(depth, uv[idx])
            dist = np.abs(z[idx] - zg) * np.linalg.norm(ray[idx], axis=1)
            best[idx] = np.minimum(best[idx], dist)
        out[s:s + chunk] = best
    return out


def scene_extent(points: np.ndarray) -> float:
    """Diagonal of the axis-aligned bounding box of ``(N, 3)`` points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return float(np.linalg.norm(points.max(0) - points.min(0))) if len(points) else 0.0


def completeness(gt_points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Distance from each GT point to a triangle mesh (Open3D ray-casting scene).

    Args:
        gt_points: ``(P, 3)`` ground-truth surface points.
        vertices: ``(V, 3)`` mesh vertices; triangles: ``(T, 3)`` vertex indices.
    Returns:
        ``(P,)`` distances in metres (inf for an empty mesh).
    """
    if len(triangles) == 0:
        return np.full(len(gt_points), np.inf)
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(triangles, dtype=np.uint32)))
    q = o3d.core.Tensor(np.asarray(gt_points, dtype=np.float32))
    return scene.compute_distance(q).numpy().astype(np.float64)


def mesh_metrics(vertices: np.ndarray, triangles: np.ndarray, gt: GTViews, threshold: float | None = None,
                 max_points: int = 50_000, seed: int = 0) -> dict:
    """Accuracy and completeness of a mesh against ground-truth views.

    Args:
        vertices, triangles: the mesh ``(V, 3)``, ``(T, 3)``.
        gt: ground-truth views and points.
        threshold: distance (m) for the "within" rates; default 1 % of the scene extent.
        max_points: vertices sampled for accuracy (all when fewer).
    Returns:
        ``{"scene_extent", "threshold", "accuracy_median", "accuracy_mean", "accuracy_p90",
        "accurate_fraction", "completeness", "completeness_median", "vertices", "triangles"}``.
    """
    extent = scene_extent(gt.points)
    threshold = 0.01 * extent if threshold is None else float(threshold)
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    if len(v) > max_points:
        v = v[np.random.default_rng(seed).choice(len(v), max_points, replace=False)]
    acc = surface_distances(v, gt) if len(v) else np.full(0, np.inf)
    comp = completeness(gt.points, vertices, triangles)
    nan = float("nan")
    return {
        "scene_extent": extent, "threshold": threshold,
        "accuracy_median": float(np.median(acc)) if len(acc) else nan,
        "accuracy_mean": float(np.mean(acc[np.isfinite(acc)])) if np.isfinite(acc).any() else nan,
        "accuracy_p90": float(np.quantile(acc, 0.9)) if len(acc) else nan,
        "accurate_fraction": float(np.mean(acc <= threshold)) if len(acc) else nan,
        "completeness": float(np.mean(comp <= threshold)) if len(comp) else nan,
        "completeness_median": float(np.median(comp)) if len(comp) else nan,
        "vertices": int(len(vertices)), "triangles": int(len(triangles)),
    }
