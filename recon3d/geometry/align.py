"""Aligning two sets of cameras or points: Umeyama similarity, a RANSAC Sim(3) over camera
triplets, and the robust rotation that best maps one set of orientations onto another.

Shapes: points ``(N, 3)``, rotations ``(N, 3, 3)``. Pure numpy; bad input raises ``ValueError``.
"""

from __future__ import annotations

import itertools

import numpy as np

from recon3d import geometry


# ------------------------------------------------------------------------------- alignment
def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s R src + t`` (Umeyama 1991).

    Args:
        src: ``(N, 3)`` points, N >= 3 (not all on a line).
        dst: ``(N, 3)`` corresponding points.
        with_scale: estimate ``s`` (else ``s = 1``).
    Returns:
        ``(s, R (3, 3), t (3,))``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"src and dst must both be (N, 3), got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def robust_sim3(src: np.ndarray, dst: np.ndarray, threshold: float, max_trials: int = 2000,
                seed: int = 0) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity ``dst ≈ s R src + t`` by RANSAC over point triplets, refit on the inliers.

    Args:
        src, dst: ``(N, 3)`` corresponding points (N >= 3).
        threshold: inlier distance in ``dst`` units.
        max_trials: triplets tried (all of them when there are fewer).
        seed: random seed for the triplet sample.
    Returns:
        ``(s, R (3, 3), t (3,), inliers (N,) bool)``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = len(src)
    if n < 3:
        raise ValueError("a similarity needs at least 3 point pairs")
    combos = list(itertools.combinations(range(n), 3)) if n <= 24 else None
    rng = np.random.default_rng(seed)
    trials = combos if combos is not None and len(combos) <= max_trials else (
        [tuple(rng.choice(n, 3, replace=False)) for _ in range(max_trials)])
    best = (-1, np.inf, None)
    for idx in trials:
        idx = list(idx)
        s, R, t = umeyama(src[idx], dst[idx])
        if not np.isfinite(s) or s <= 0:
            continue
        err = np.linalg.norm(src @ (s * R).T + t - dst, axis=1)
        inl = err < threshold
        score = (int(inl.sum()), float(np.sum(np.minimum(err, threshold))))
        if score[0] > best[0] or (score[0] == best[0] and score[1] < best[1]):
            best = (score[0], score[1], inl)
    inliers = best[2] if best[2] is not None and best[0] >= 3 else np.ones(n, dtype=bool)
    for _ in range(3):  # refit on inliers, re-classify
        s, R, t = umeyama(src[inliers], dst[inliers])
        err = np.linalg.norm(src @ (s * R).T + t - dst, axis=1)
        new = err < threshold
        if new.sum() < 3 or np.array_equal(new, inliers):
            break
        inliers = new
    return s, R, t, inliers


def rotation_mean(R: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations, ``(N, 3, 3) -> (3, 3)``."""
    U, _, Vt = np.linalg.svd(np.sum(R, axis=0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def robust_rotation_alignment(R_gt: np.ndarray, R_est: np.ndarray, R_init: np.ndarray | None = None) -> np.ndarray:
    """Global rotation ``A`` with ``R_est ≈ R_gt @ A``, robust to a few wrong cameras.

    Args:
        R_gt: ``(N, 3, 3)`` ground-truth ``cam_from_world`` rotations.
        R_est: ``(N, 3, 3)`` estimated ones.
        R_init: optional starting estimate (e.g. the Sim(3) rotation).
    Returns:
        ``(3, 3)`` rotation ``A`` (est world from gt world, rotation part).
    """
    per_cam = np.swapaxes(R_gt, -1, -2) @ R_est  # each camera's view of A
    A = R_init if R_init is not None else per_cam[0]
    for _ in range(5):
        dev = geometry.rotation_angle_deg(per_cam, np.broadcast_to(A, per_cam.shape))
        keep = dev <= max(3.0 * float(np.median(dev)), 0.5)
        A = rotation_mean(per_cam[keep] if keep.sum() else per_cam)
    return A
