"""Two-view geometry: F, E and H, relative pose with the cheirality check, triangulation, errors.

Conventions (see :mod:`recon3d.geometry`): pixels use COLMAP pixel centres; ``K`` is COLMAP
convention; the relative pose ``(R, t)`` is ``cam2_from_cam1``, ``X2 = R @ X1 + t``. With it,
``E = [t]x R`` and ``F = K2^-T E K1^-1`` satisfy ``x2^T F x1 = 0`` for homogeneous pixels
``x = (u, v, 1)`` (Hartley & Zisserman, ch. 9).

The geometric functions are pure numpy and batched over leading dimensions ``*``; the robust
estimators (:func:`estimate_fundamental`, :func:`estimate_essential`,
:func:`estimate_homography`, :func:`estimate_relative_pose`) take one image pair and run either
OpenCV's USAC with MAGSAC++ scoring (``method="magsac"``) or pycolmap's LO-RANSAC
(``method="colmap"``). Too few correspondences, an unknown method or no model found raise
``ValueError`` (the command turns it into a one-line error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from recon3d.geometry.transforms import check_last

METHODS = ("magsac", "colmap")
"""Robust estimators: OpenCV USAC/MAGSAC++ or pycolmap LO-RANSAC."""


# --------------------------------------------------------------------------- pure geometry
def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices ``[v]x`` with ``[v]x @ w = v x w``, ``(*, 3) -> (*, 3, 3)``."""
    v = check_last(v, (3,), "v")
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([z, -w, y, w, z, -x, -y, x, z], axis=-1).reshape(v.shape[:-1] + (3, 3))


def essential_from_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Essential matrices ``E = [t]x R`` of relative poses ``cam2_from_cam1``.

    Args:
        R: ``(*, 3, 3)`` rotations.
        t: ``(*, 3)`` translations.
    Returns:
        ``(*, 3, 3)`` essential matrices (scale of ``t`` kept).
    """
    R = check_last(R, (3, 3), "R")
    return skew(t) @ R


def fundamental_from_essential(E: np.ndarray, K1: np.ndarray, K2: np.ndarray) -> np.ndarray:
    """``F = K2^-T E K1^-1``, ``(*, 3, 3)`` each -> ``(*, 3, 3)`` (pixels in K's convention)."""
    E, K1, K2 = (check_last(a, (3, 3), n) for a, n in ((E, "E"), (K1, "K1"), (K2, "K2")))
    return np.swapaxes(np.linalg.inv(K2), -1, -2) @ E @ np.linalg.inv(K1)


def essential_from_fundamental(F: np.ndarray, K1: np.ndarray, K2: np.ndarray) -> np.ndarray:
    """``E = K2^T F K1``, ``(*, 3, 3)`` each -> ``(*, 3, 3)``."""
    F, K1, K2 = (check_last(a, (3, 3), n) for a, n in ((F, "F"), (K1, "K1"), (K2, "K2")))
    return np.swapaxes(K2, -1, -2) @ F @ K1


def fundamental_from_pose(R: np.ndarray, t: np.ndarray, K1: np.ndarray, K2: np.ndarray) -> np.ndarray:
    """Fundamental matrices of ``cam2_from_cam1`` poses, ``(*, 3, 3), (*, 3), (*, 3, 3), (*, 3, 3) -> (*, 3, 3)``."""
    return fundamental_from_essential(essential_from_pose(R, t), K1, K2)


def _homogeneous(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones_like(x[..., :1])], axis=-1)


def epipolar_lines(F: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Epipolar lines ``l2 = F x1`` in image 2, normalised so ``a^2 + b^2 = 1``.

    Args:
        F: ``(*, 3, 3)``.
        x1: ``(*, N, 2)`` pixels in image 1.
    Returns:
        ``(*, N, 3)`` lines ``(a, b, c)`` with ``a u + b v + c = 0``; the distance of a pixel
        ``(u, v)`` to the line is ``|a u + b v + c|``. (Lines in image 1: pass ``F^T`` and ``x2``.)
    """
    F = check_last(F, (3, 3), "F")
    x1 = check_last(x1, (2,), "x1")
    lines = _homogeneous(x1) @ np.swapaxes(F, -1, -2)
    return lines / np.maximum(np.linalg.norm(lines[..., :2], axis=-1, keepdims=True), 1e-300)


def epipolar_line_distances(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances of ``x2`` to ``F x1`` and of ``x1`` to ``F^T x2`` in pixels, each ``(*, N)``."""
    F = check_last(F, (3, 3), "F")
    l2 = epipolar_lines(F, x1)
    l1 = epipolar_lines(np.swapaxes(F, -1, -2), x2)
    d2 = np.abs(np.sum(l2 * _homogeneous(check_last(x2, (2,), "x2")), axis=-1))
    d1 = np.abs(np.sum(l1 * _homogeneous(x1), axis=-1))
    return d2, d1


def symmetric_epipolar_distance(F: np.ndarray, x1: np.ndarray, x2: np.ndarray, squared: bool = True) -> np.ndarray:
    """Symmetric epipolar distance ``d(x2, F x1)^2 + d(x1, F^T x2)^2`` (Hartley & Zisserman eq. 11.10).

    Args:
        F: ``(*, 3, 3)``.
        x1, x2: ``(*, N, 2)`` corresponding pixels.
        squared: return the sum of squares (px^2); else its square root (px).
    Returns:
        ``(*, N)``.
    """
    d2, d1 = epipolar_line_distances(F, x1, x2)
    s = d1 ** 2 + d2 ** 2
    return s if squared else np.sqrt(s)


def sampson_distance(F: np.ndarray, x1: np.ndarray, x2: np.ndarray, squared: bool = True) -> np.ndarray:
    """Sampson distance, the first-order geometric error of ``x2^T F x1 = 0`` (H&Z eq. 11.9).

    Args:
        F: ``(*, 3, 3)``.
        x1, x2: ``(*, N, 2)`` corresponding pixels.
        squared: return the squared error (px^2, as in H&Z); else its square root (px).
    Returns:
        ``(*, N)``.
    """
    F = check_last(F, (3, 3), "F")
    h1 = _homogeneous(check_last(x1, (2,), "x1"))
    h2 = _homogeneous(check_last(x2, (2,), "x2"))
    Fx1 = h1 @ np.swapaxes(F, -1, -2)  # (*, N, 3)
    Ftx2 = h2 @ F
    num = np.sum(h2 * Fx1, axis=-1) ** 2
    den = Fx1[..., 0] ** 2 + Fx1[..., 1] ** 2 + Ftx2[..., 0] ** 2 + Ftx2[..., 1] ** 2
    s = num / np.maximum(den, 1e-300)
    return s if squared else np.sqrt(s)


def decompose_essential(E: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two rotations and the translation direction of essential matrices.

    Args:
        E: ``(*, 3, 3)``.
    Returns:
        ``(R1 (*, 3, 3), R2 (*, 3, 3), t (*, 3))`` with unit ``t``; the four candidate poses are
        ``(R1, t), (R1, -t), (R2, t), (R2, -t)`` (H&Z result 9.19).
    """
    E = check_last(E, (3, 3), "E")
    U, _, Vt = np.linalg.svd(E)
    U = U * np.where(np.linalg.det(U) < 0, -1.0, 1.0)[..., None, None]
    Vt = Vt * np.where(np.linalg.det(Vt) < 0, -1.0, 1.0)[..., None, None]
    W = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    R1 = U @ W @ Vt
    R2 = U @ W.T @ Vt
    t = U[..., :, 2]
    return R1, R2, t / np.linalg.norm(t, axis=-1, keepdims=True)


def triangulate(P1: np.ndarray, P2: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of corresponding points (H&Z section 12.2).

    Args:
        P1, P2: ``(*, 3, 4)`` projection matrices (``K [R | t]`` for pixels, ``[R | t]`` for
            normalised coordinates).
        x1, x2: ``(*, N, 2)`` corresponding points.
    Returns:
        ``(*, N, 3)`` points (exact for noise-free input).
    """
    P1 = check_last(P1, (3, 4), "P1")
    P2 = check_last(P2, (3, 4), "P2")
    x1 = check_last(x1, (2,), "x1")
    x2 = check_last(x2, (2,), "x2")
    P1 = P1[..., None, :, :]
    P2 = P2[..., None, :, :]
    rows = [x1[..., 0:1] * P1[..., 2, :] - P1[..., 0, :], x1[..., 1:2] * P1[..., 2, :] - P1[..., 1, :],
            x2[..., 0:1] * P2[..., 2, :] - P2[..., 0, :], x2[..., 1:2] * P2[..., 2, :] - P2[..., 1, :]]
    A = np.stack(rows, axis=-2)  # (*, N, 4, 4)
    A = A / np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-300)
    _, _, Vt = np.linalg.svd(A)
    X = Vt[..., -1, :]
    return X[..., :3] / X[..., 3:4]


def pose_from_essential(E: np.ndarray, x1n: np.ndarray, x2n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The relative pose an essential matrix encodes, chosen by the cheirality check.

    Of the four decompositions, the one that puts the most triangulated points in front of
    both cameras wins.

    Args:
        E: ``(3, 3)`` essential matrix.
        x1n, x2n: ``(N, 2)`` normalised coordinates ``(x/z, y/z)`` of corresponding points.
    Returns:
        ``(R (3, 3), t (3,) unit, in_front (N,) bool)`` with ``X2 = R X1 + t`` (up to scale).
    """
    R1, R2, t = decompose_essential(E)
    P1 = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    best = None
    for R, tt in ((R1, t), (R1, -t), (R2, t), (R2, -t)):
        X = triangulate(P1, np.concatenate([R, tt[:, None]], axis=1), x1n, x2n)
        z1 = X[:, 2]
        z2 = X @ R[2] + tt[2]
        front = (z1 > 0) & (z2 > 0) & np.isfinite(z1)
        if best is None or front.sum() > best[2].sum():
            best = (R, tt, front)
    return best


def normalized_from_pixels(K: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Normalised coordinates ``(x/z, y/z)`` of pixels, ``(3, 3), (*, 2) -> (*, 2)`` (no distortion)."""
    x = check_last(x, (2,), "x")
    return (_homogeneous(x) @ np.linalg.inv(K).T)[..., :2]


# ------------------------------------------------------------------------ robust estimation
def _check_pair(x1: np.ndarray, x2: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x1 = np.ascontiguousarray(x1, dtype=np.float64).reshape(-1, 2)
    x2 = np.ascontiguousarray(x2, dtype=np.float64).reshape(-1, 2)
    if len(x1) != len(x2):
        raise ValueError(f"x1 and x2 must have the same length, got {len(x1)} and {len(x2)}")
    if len(x1) < minimum:
        raise ValueError(f"only {len(x1)} correspondences; at least {minimum} are needed for this estimate")
    return x1, x2


def _ransac_options(threshold: float, confidence: float, seed: int):
    import pycolmap

    o = pycolmap.RANSACOptions()
    o.max_error = threshold
    o.confidence = confidence
    o.random_seed = seed
    return o


def _pinhole(K: np.ndarray):
    import pycolmap

    w, h = max(1, int(round(2 * K[0, 2]))), max(1, int(round(2 * K[1, 2])))
    return pycolmap.Camera(model="PINHOLE", width=w, height=h, params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown robust estimator {method!r}; use one of {', '.join(METHODS)}")


def _robust_fit(method: str, threshold: float, confidence: float, seed: int, key: str,
                colmap: Callable, opencv: Callable, failure: str) -> tuple[np.ndarray, np.ndarray]:
    """One robust two-view fit: pycolmap's LO-RANSAC (``method='colmap'``) or OpenCV's USAC with MAGSAC++.

    Args:
        method: a checked entry of :data:`METHODS`.
        threshold, confidence, seed: RANSAC settings (OpenCV's calls use threshold and confidence themselves).
        key: name of the model in pycolmap's result ('F', 'E', 'H').
        colmap: ``(pycolmap, options) -> dict | None``, the pycolmap estimator called with
            :func:`_ransac_options`; the dict holds the model under ``key`` and ``inlier_mask``.
        opencv: ``(cv2) -> (model | None, mask)``, the OpenCV estimator (run after seeding OpenCV's RNG
            with ``seed``); the model is None when none was found.
        failure: message of the ``ValueError`` raised when no model is found.
    Returns:
        ``(model (3, 3) as estimated, inliers (N,) bool)``.
    """
    if method == "colmap":
        import pycolmap

        res = colmap(pycolmap, _ransac_options(threshold, confidence, seed))
        if res is None:
            raise ValueError(failure)
        return np.asarray(res[key]), np.asarray(res["inlier_mask"], dtype=bool)
    import cv2

    cv2.setRNGSeed(seed)
    model, mask = opencv(cv2)
    if model is None:
        raise ValueError(failure)
    return model, mask.ravel().astype(bool)


def estimate_fundamental(x1: np.ndarray, x2: np.ndarray, method: str = "magsac", threshold: float = 1.0,
                         confidence: float = 0.9999, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Robust fundamental matrix of one image pair.

    Args:
        x1, x2: ``(N, 2)`` matched pixels (N >= 8).
        method: 'magsac' (OpenCV USAC MAGSAC++) or 'colmap' (pycolmap LO-RANSAC, Sampson refinement).
        threshold: inlier threshold in pixels (Sampson distance for OpenCV, epipolar error for pycolmap).
        confidence: RANSAC confidence.
        seed: random seed.
    Returns:
        ``(F (3, 3) with ||F|| = 1, inliers (N,) bool)``.
    """
    _check_method(method)
    x1, x2 = _check_pair(x1, x2, 8)

    def opencv(cv2):
        F, mask = cv2.findFundamentalMat(x1, x2, cv2.USAC_MAGSAC, threshold, confidence, 10000)
        return (F if F is not None and F.shape == (3, 3) else None), mask

    F, inl = _robust_fit(method, threshold, confidence, seed, "F",
                         lambda pycolmap, options: pycolmap.estimate_fundamental_matrix(x1, x2, options), opencv,
                         "no fundamental matrix found; the matches may be wrong or the views identical")
    return F / np.linalg.norm(F), inl


def estimate_homography(x1: np.ndarray, x2: np.ndarray, method: str = "magsac", threshold: float = 2.0,
                        confidence: float = 0.9999, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Robust homography ``x2 ~ H x1`` of one image pair.

    Args:
        x1, x2: ``(N, 2)`` matched pixels (N >= 4).
        method: 'magsac' or 'colmap'.
        threshold: inlier threshold in pixels (transfer error).
    Returns:
        ``(H (3, 3) with H[2, 2] = 1, inliers (N,) bool)``.
    """
    _check_method(method)
    x1, x2 = _check_pair(x1, x2, 4)
    H, inl = _robust_fit(
        method, threshold, confidence, seed, "H",
        lambda pycolmap, options: pycolmap.estimate_homography_matrix(x1, x2, options),
        lambda cv2: cv2.findHomography(x1, x2, cv2.USAC_MAGSAC, threshold, maxIters=10000, confidence=confidence),
        "no homography found; the matches may be wrong")
    if method != "colmap" and inl.sum() >= 4:  # OpenCV: least squares + Levenberg-Marquardt over the inliers
        import cv2

        H_ls, _ = cv2.findHomography(x1[inl], x2[inl], 0)
        H = H_ls if H_ls is not None else H
    return H / H[2, 2], inl


@dataclass
class RelativePose:
    """Result of :func:`estimate_relative_pose`."""

    R: np.ndarray
    """(3, 3) rotation of ``cam2_from_cam1``."""
    t: np.ndarray
    """(3,) unit translation of ``cam2_from_cam1`` (the scale is unknown from two views)."""
    E: np.ndarray
    """(3, 3) essential matrix, ``||E|| = 1``."""
    inliers: np.ndarray
    """(N,) matches consistent with E."""
    in_front: np.ndarray
    """(N,) inliers that triangulate in front of both cameras (the cheirality check)."""


def estimate_essential(x1: np.ndarray, x2: np.ndarray, K1: np.ndarray, K2: np.ndarray, method: str = "magsac",
                       threshold: float = 1.0, confidence: float = 0.9999, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Robust essential matrix of one image pair with known intrinsics.

    Args:
        x1, x2: ``(N, 2)`` matched pixels (N >= 5, COLMAP pixel centres, undistorted).
        K1, K2: ``(3, 3)`` intrinsics (COLMAP convention).
        method: 'magsac' or 'colmap'.
        threshold: inlier threshold in pixels.
    Returns:
        ``(E (3, 3) with ||E|| = 1, inliers (N,) bool)``.
    """
    return _essential(x1, x2, K1, K2, method, threshold, confidence, seed)[:2]


def _essential(x1, x2, K1, K2, method, threshold, confidence, seed):
    _check_method(method)
    x1, x2 = _check_pair(x1, x2, 5)
    K1 = np.asarray(K1, dtype=np.float64)
    K2 = np.asarray(K2, dtype=np.float64)
    n1, n2 = normalized_from_pixels(K1, x1), normalized_from_pixels(K2, x2)

    def opencv(cv2):
        f = 0.25 * (K1[0, 0] + K1[1, 1] + K2[0, 0] + K2[1, 1])
        E, mask = cv2.findEssentialMat(n1, n2, np.eye(3), cv2.USAC_MAGSAC, confidence, threshold / f)
        if E is not None and E.shape != (3, 3):
            E = E[:3] if E.shape[0] > 3 else None  # several solutions: keep the first
        return E, mask

    E, inl = _robust_fit(
        method, threshold, confidence, seed, "E",
        lambda pycolmap, options: pycolmap.estimate_essential_matrix(x1, x2, _pinhole(K1), _pinhole(K2), options),
        opencv, "no essential matrix found; check the intrinsics and the matches")
    return E / np.linalg.norm(E), inl, n1, n2


def estimate_relative_pose(x1: np.ndarray, x2: np.ndarray, K1: np.ndarray, K2: np.ndarray, method: str = "magsac",
                           threshold: float = 1.0, confidence: float = 0.9999, seed: int = 0,
                           refine: bool = True) -> RelativePose:
    """Relative pose of two calibrated views: robust E, decomposition with the cheirality check, refinement.

    The pose of the cheirality check is refined over the inliers in front of both cameras by
    Levenberg-Marquardt on the Sampson error (pycolmap), and E is recomputed from it.

    Args:
        x1, x2: ``(N, 2)`` matched pixels (COLMAP pixel centres, undistorted).
        K1, K2: ``(3, 3)`` intrinsics.
        method, threshold, confidence, seed: as :func:`estimate_essential`.
        refine: refine the pose over the inliers (non-linear, Sampson error).
    Returns:
        :class:`RelativePose` (``cam2_from_cam1``, unit translation).
    """
    E, inl, n1, n2 = _essential(x1, x2, K1, K2, method, threshold, confidence, seed)
    R, t, front = pose_from_essential(E, n1[inl], n2[inl])
    in_front = np.zeros(len(inl), dtype=bool)
    in_front[np.flatnonzero(inl)[front]] = True
    if refine and in_front.sum() >= 6:
        import pycolmap

        x1a = np.ascontiguousarray(x1, dtype=np.float64).reshape(-1, 2)
        x2a = np.ascontiguousarray(x2, dtype=np.float64).reshape(-1, 2)
        res = pycolmap.refine_relative_pose(pycolmap.Rigid3d(np.concatenate([R, t[:, None]], axis=1)),
                                            _pinhole(np.asarray(K1, float)), x1a, _pinhole(np.asarray(K2, float)),
                                            x2a, in_front)
        if res is not None:
            M = np.asarray(res["cam2_from_cam1"].matrix())
            R, t = M[:, :3], M[:, 3] / np.linalg.norm(M[:, 3])
            E = essential_from_pose(R, t)
            E = E / np.linalg.norm(E)
    return RelativePose(R, t, E, inl, in_front)
