"""Two-view consistency: does a model agree with the verified matches of its own photos?

A photo can be registered with a wrong pose and a small reprojection error: on a scene with repeated
or symmetric structure its 2D-3D correspondences can all be false matches that agree with each other
(measured on the ``lowtex`` ring without EXIF and without SIFT affine shapes: one photo registered
117 deg off at 0.7 px). The verified two-view geometries of the database are independent evidence:
each pair of photos holds matches that passed geometric verification on their own. For every pair
of registered photos the model's poses and cameras give an essential matrix; a verified match
*agrees* with the model when its Sampson distance under it is within ``threshold_px`` (in pixels:
the distance in normalized coordinates times the focal lengths' geometric mean).

:func:`check_model` deregisters, worst first, each photo whose verified matches with the other
registered photos mostly disagree with the model (agreeing share under ``min_agreement`` with at
least ``min_matches`` verified matches): the model contradicts most of the evidence that photo has,
so its pose is not trusted. A photo rightly placed agrees with nearly all of its verified matches
(measured: 0.9-1.0 on the synthetic scenes and the real sets); a false pair (matches between two
similar but different surfaces) lowers a rightly placed photo's share only by that pair's weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon3d import geometry
from recon3d.geometry.epipolar import essential_from_pose, sampson_distance


@dataclass
class Agreement:
    """Verified matches of one registered photo with the other registered photos of a model."""

    verified: int = 0
    """Verified inlier matches with the other registered photos."""
    agreeing: int = 0
    """Those within the threshold of the model's epipolar geometry."""
    pairs: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Other image id -> (verified, agreeing)."""

    @property
    def share(self) -> float:
        """Agreeing share (1.0 when there is nothing to check)."""
        return self.agreeing / self.verified if self.verified else 1.0


def read_verified(database: Path) -> dict[tuple[int, int], np.ndarray]:
    """Verified inlier matches of every pair: ``{(image id 1, image id 2): (M, 2) keypoint indices}``."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        pair_ids, geoms = db.read_two_view_geometries()
    finally:
        db.close()
    out = {}
    for pair_id, g in zip(pair_ids, geoms):
        m = np.asarray(g.inlier_matches)
        if len(m):
            out[tuple(int(i) for i in pycolmap.pair_id_to_image_pair(pair_id))] = m
    return out


def epipolar_errors_px(rec, id1: int, id2: int, matches: np.ndarray, keypoints: dict[int, np.ndarray]) -> np.ndarray:
    """Sampson distances (px) of the matches ``(M, 2)`` between registered images ``id1`` and ``id2``
    of ``rec`` under the model's relative pose and cameras (distortion removed); ``(M,)``."""
    ims = rec.images[id1], rec.images[id2]
    cams = rec.cameras[ims[0].camera_id], rec.cameras[ims[1].camera_id]
    n1 = cams[0].cam_from_img(np.ascontiguousarray(keypoints[id1][matches[:, 0], :2], dtype=np.float64))
    n2 = cams[1].cam_from_img(np.ascontiguousarray(keypoints[id2][matches[:, 1], :2], dtype=np.float64))
    rel = geometry.compose_rigid(np.asarray(ims[1].cam_from_world().matrix()),
                                 geometry.invert_rigid(np.asarray(ims[0].cam_from_world().matrix())))
    R, t = rel[:, :3], rel[:, 3]
    f = np.sqrt(np.mean([cams[0].params[i] for i in cams[0].focal_length_idxs()]) *
                np.mean([cams[1].params[i] for i in cams[1].focal_length_idxs()]))
    if np.linalg.norm(t) < 1e-12:  # no baseline: the rays must agree through the rotation alone
        r1 = np.concatenate([n1, np.ones((len(n1), 1))], axis=1) @ R.T
        return f * np.linalg.norm(r1[:, :2] / r1[:, 2:3] - n2, axis=1)
    return f * sampson_distance(essential_from_pose(R, t / np.linalg.norm(t)), n1, n2, squared=False)


def agreement(rec, verified: dict[tuple[int, int], np.ndarray], keypoints: dict[int, np.ndarray],
              threshold_px: float) -> dict[int, Agreement]:
    """:class:`Agreement` of every registered image of ``rec`` (by image id)."""
    reg = set(int(i) for i in rec.reg_image_ids())
    out = {i: Agreement() for i in reg}
    for (a, b), m in verified.items():
        if a not in reg or b not in reg:
            continue
        ok = int(np.count_nonzero(epipolar_errors_px(rec, a, b, m, keypoints) <= threshold_px))
        for i, j in ((a, b), (b, a)):
            out[i].verified += len(m)
            out[i].agreeing += ok
            out[i].pairs[j] = (len(m), ok)
    return out


class Evidence:
    """A database's verified matches (read once) and its keypoints (read when first needed): what
    :func:`check_model` checks a model against, shared by the several models one run checks."""

    def __init__(self, database: Path):
        self.database = Path(database)
        self.verified = read_verified(self.database)
        self._keypoints: dict[int, np.ndarray] = {}

    def keypoints(self, image_ids) -> dict[int, np.ndarray]:
        """``{image id: (K, >= 2) keypoints}`` of ``image_ids``."""
        import pycolmap

        missing = [int(i) for i in image_ids if int(i) not in self._keypoints]
        if missing:
            db = pycolmap.Database.open(self.database)
            try:
                self._keypoints.update({i: np.asarray(db.read_keypoints(i)) for i in missing})
            finally:
                db.close()
        return {int(i): self._keypoints[int(i)] for i in image_ids}


def check_model(rec, evidence: Evidence | Path, threshold_px: float, min_agreement: float,
                min_matches: int) -> dict[str, str]:
    """Deregister from ``rec`` (modified) the photos whose verified matches mostly disagree with it, worst
    first (a removed photo's pairs no longer count for its partners); returns ``{name: reason}`` of those
    deregistered. ``evidence``: an :class:`Evidence`, or the database to read one from."""
    evidence = evidence if isinstance(evidence, Evidence) else Evidence(evidence)
    keypoints = evidence.keypoints(rec.reg_image_ids())
    agree = agreement(rec, evidence.verified, keypoints, threshold_px)  # poses do not change below: computed once
    rejected: dict[str, str] = {}
    while len(agree) > 2:
        bad = [(a.share, i) for i, a in agree.items() if a.verified >= min_matches and a.share < min_agreement]
        if not bad:
            break
        share, worst = min(bad)
        a = agree.pop(worst)
        for j, (v, ok) in a.pairs.items():
            if j in agree:
                agree[j].verified -= v
                agree[j].agreeing -= ok
                del agree[j].pairs[worst]
        name = rec.images[worst].name
        rejected[name] = (f"rejected: registered, but only {a.agreeing} of its {a.verified} verified matches with "
                          f"the registered photos agree with its pose ({100 * share:.0f} %, under "
                          f"{100 * min_agreement:.0f} %): the pose is not trusted")
        rec.deregister_frame(rec.images[worst].frame_id)
    return rejected
