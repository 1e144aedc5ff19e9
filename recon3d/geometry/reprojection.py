"""The one reprojection error: every observation of every 3D point of a model projected through
its image's camera and compared with the measured keypoint (pixels).

It is computed once per model state: the last few results are kept, keyed on a hash of everything
they depend on (cameras, poses, keypoints, point ids and positions), so the SfM report, the
refinement's residual statistics and the evaluation of one ``recon3d run`` share one computation
when they look at the same model (in memory or read back from ``sparse/0``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from recon3d import geometry

_CACHE: OrderedDict[bytes, dict[str, np.ndarray]] = OrderedDict()
_CACHE_SIZE = 4
_STATS = {"hits": 0, "misses": 0}


def model_key(model) -> bytes:
    """A digest of what :func:`reprojection_errors` depends on; equal models (bit for bit) share it."""
    h = hashlib.blake2b(digest_size=20)
    for cid, (name, width, height, params) in sorted(model.cameras.items()):
        h.update(repr((int(cid), name, int(width), int(height), [float(p) for p in params])).encode())
    h.update(np.ascontiguousarray(model.point_ids, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(model.points, dtype=np.float64).tobytes())
    for image_id, im in sorted(model.images.items()):  # a model in memory may list its images in another order
        h.update(f"\0{int(image_id)}\0{im.name}\0{int(im.camera_id)}\0".encode())
        for array, dtype in ((im.cam_from_world, np.float64), (im.points2D, np.float64), (im.point3D_ids, np.int64)):
            a = np.ascontiguousarray(array, dtype=dtype)
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
    return h.digest()


def clear_cache() -> None:
    """Forget the kept results and reset :func:`cache_info` (tests; or to free their memory)."""
    _CACHE.clear()
    _STATS.update(hits=0, misses=0)


def cache_info() -> dict[str, int]:
    """``{"hits", "misses", "size"}``: how often :func:`reprojection_errors` reused a result or computed one."""
    return {**_STATS, "size": len(_CACHE)}


# --------------------------------------------------------------------------- reprojection
def observation_errors(model) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Reprojection error of every observation, recomputed from the model, with the point it observes.

    Args:
        model: a :class:`recon3d.io.colmap.Model`.
    Returns:
        image id -> ``(points (M,), errors (M,))``: for each keypoint with a 3D point (in keypoint
        order; ids missing from ``model.point_ids`` are skipped), the index of that point in
        ``model.points`` and the pixel distance between the keypoint and the projection of the point
        through the image's pose and camera (any COLMAP model); ``inf`` for points behind the camera.
    """
    import pycolmap

    P = len(model.point_ids)
    order = np.argsort(model.point_ids)
    sorted_ids = np.asarray(model.point_ids)[order]
    cams = {cid: pycolmap.Camera(model=name, width=w, height=h, params=params)
            for cid, (name, w, h, params) in model.cameras.items()}
    out = {}
    for image_id, im in model.images.items():
        obs = np.flatnonzero(im.point3D_ids >= 0)
        if len(obs) == 0 or P == 0:
            out[image_id] = (np.zeros(0, np.int64), np.zeros(0))
            continue
        ids = im.point3D_ids[obs]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, P - 1)
        known = sorted_ids[pos] == ids
        obs, idx = obs[known], order[pos[known]]
        if len(idx) == 0:
            out[image_id] = (np.zeros(0, np.int64), np.zeros(0))
            continue
        Xc = geometry.transform_points(im.cam_from_world, model.points[idx])
        proj = np.asarray(cams[im.camera_id].img_from_cam(Xc, check_cheirality=False)).reshape(-1, 2)
        err = np.linalg.norm(proj - im.points2D[obs], axis=1)
        err[Xc[:, 2] <= 0] = np.inf
        out[image_id] = (idx, err)
    return out


def reprojection_errors(model) -> dict[str, np.ndarray]:
    """Reprojection error of every observation, recomputed from the model.

    Args:
        model: a :class:`recon3d.io.colmap.Model`.
    Returns:
        image name -> ``(M,)`` pixel distances between each keypoint with a 3D point and the
        projection of that point through the image's pose and camera (see :func:`observation_errors`). The
        arrays are read-only: they may be shared with earlier calls on the same model state.
    """
    key = model_key(model)
    if key in _CACHE:
        _STATS["hits"] += 1
        _CACHE.move_to_end(key)
        cached = _CACHE[key]
        return {im.name: cached[im.name] for im in model.images.values()}  # in this model's order, as computed
    _STATS["misses"] += 1
    out = _compute(model)
    for err in out.values():
        err.flags.writeable = False
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return dict(out)


def _compute(model) -> dict[str, np.ndarray]:
    return {model.images[image_id].name: err for image_id, (_, err) in observation_errors(model).items()}


def point_errors(model) -> np.ndarray:
    """Mean reprojection error of each 3D point over its track (what COLMAP stores as a point's error).

    Args:
        model: a :class:`recon3d.io.colmap.Model`.
    Returns:
        ``(P,)`` pixels, in the order of ``model.points``; NaN for a point no image observes.
    """
    total = np.zeros(len(model.point_ids))
    count = np.zeros(len(model.point_ids))
    for idx, err in observation_errors(model).values():
        np.add.at(total, idx, err)
        np.add.at(count, idx, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def reprojection_summary(errors: dict[str, np.ndarray], per_point: np.ndarray | None = None) -> dict:
    """Mean, median and 95th percentile over all observations, and the mean per image.

    Two means differ when points have tracks of different lengths: ``mean`` (= ``mean_per_observation``)
    weighs every observation alike; ``mean_per_point`` (given the ``(P,)`` :func:`point_errors`) first
    averages each point's track, then the points, as COLMAP's ``model_analyzer`` reports its "Mean
    reprojection error".
    """
    allerr = np.concatenate([e for e in errors.values()]) if errors else np.zeros(0)
    if len(allerr) == 0:
        return {"observations": 0, "mean": None, "mean_per_observation": None, "mean_per_point": None,
                "median": None, "p95": None, "per_image": {}}
    seen = per_point[np.isfinite(per_point)] if per_point is not None else np.zeros(0)
    return {
        "observations": int(len(allerr)),
        "mean": float(np.mean(allerr)),
        "mean_per_observation": float(np.mean(allerr)),
        "mean_per_point": float(np.mean(seen)) if len(seen) else None,
        "median": float(np.median(allerr)),
        "p95": float(np.percentile(allerr, 95)),
        "per_image": {n: (float(np.mean(e)) if len(e) else None) for n, e in sorted(errors.items())},
    }
