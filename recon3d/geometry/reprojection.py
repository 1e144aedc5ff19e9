"""The one reprojection error: every observation of every 3D point of a model projected through
its image's camera and compared with the measured keypoint (pixels).
"""

from __future__ import annotations

import numpy as np

from recon3d import geometry


# --------------------------------------------------------------------------- reprojection
def reprojection_errors(model) -> dict[str, np.ndarray]:
    """Reprojection error of every observation, recomputed from the model.

    Args:
        model: a :class:`recon3d.colmap_io.Model`.
    Returns:
        image name -> ``(M,)`` pixel distances between each keypoint with a 3D point and the
        projection of that point through the image's pose and camera (any COLMAP model).
    """
    import pycolmap

    index = {int(pid): i for i, pid in enumerate(model.point_ids)}
    cams = {cid: pycolmap.Camera(model=name, width=w, height=h, params=params)
            for cid, (name, w, h, params) in model.cameras.items()}
    out = {}
    for im in model.images.values():
        has = im.point3D_ids >= 0
        if not has.any():
            out[im.name] = np.zeros(0)
            continue
        X = model.points[[index[int(p)] for p in im.point3D_ids[has]]]
        Xc = geometry.transform_points(im.cam_from_world, X)
        proj = cams[im.camera_id].img_from_cam(Xc, check_cheirality=False)
        err = np.linalg.norm(np.asarray(proj) - im.points2D[has], axis=1)
        err[Xc[:, 2] <= 0] = np.inf
        out[im.name] = err
    return out


def reprojection_summary(errors: dict[str, np.ndarray]) -> dict:
    """Mean, median and 95th percentile over all observations, and the mean per image."""
    allerr = np.concatenate([e for e in errors.values()]) if errors else np.zeros(0)
    if len(allerr) == 0:
        return {"observations": 0, "mean": None, "median": None, "p95": None, "per_image": {}}
    return {
        "observations": int(len(allerr)),
        "mean": float(np.mean(allerr)),
        "median": float(np.median(allerr)),
        "p95": float(np.percentile(allerr, 95)),
        "per_image": {n: (float(np.mean(e)) if len(e) else None) for n, e in sorted(errors.items())},
    }
