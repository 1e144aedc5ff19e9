"""Geometry conventions and pure, batched transforms. The one place conventions are stated.

Conventions used everywhere in recon3d:

* **Camera frame** (OpenCV/COLMAP): x right, y down, z forward (the viewing direction).
* **Transforms** are named by what they map: ``cam_from_world`` takes world points into
  the camera frame, ``X_cam = R @ X_world + t``; ``world_from_cam`` is its inverse. As
  matrices they are ``(*, 3, 4)`` ``[R | t]`` (or ``(*, 4, 4)``), so compositions read right
  to left: ``a_from_c = a_from_b @ b_from_c``.
* **Quaternions** are stored **wxyz** (scalar first), as COLMAP and gsplat do.
* **Pixel centres** follow COLMAP: continuous image coordinates put the top-left corner of
  the image at (0, 0), so the centre of pixel (row i, column j) is at (j + 0.5, i + 0.5),
  and a centred principal point is (W / 2, H / 2). OpenCV puts pixel centres on integers;
  :func:`K_opencv_from_colmap` / :func:`K_colmap_from_opencv` convert at OpenCV call sites.
  Every ``K`` stored by recon3d (camera.json, COLMAP models) is in the COLMAP convention.
* **Depth** means z in the camera frame (not distance along the ray).

All functions are pure numpy and batched over leading dimensions ``*``.
"""

from __future__ import annotations

import numpy as np

PIXEL_CENTER_OFFSET = 0.5
"""Continuous coordinate of the centre of pixel 0 (COLMAP convention)."""


def check_last(x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"{name} must have shape (*, {', '.join(map(str, shape))}), got {x.shape}")
    return x


# ----------------------------------------------------------------------------------- rotations
def rotmat_from_quat_wxyz(q: np.ndarray) -> np.ndarray:
    """Rotation matrices from unit quaternions.

    Args:
        q: ``(*, 4)`` quaternions, scalar first (w, x, y, z); normalised here.
    Returns:
        ``(*, 3, 3)`` rotation matrices.
    """
    q = check_last(q, (4,), "q")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    R = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def quat_wxyz_from_rotmat(R: np.ndarray) -> np.ndarray:
    """Unit quaternions (w >= 0) from rotation matrices (Shepperd's method via eigen-decomposition).

    Args:
        R: ``(*, 3, 3)`` rotation matrices.
    Returns:
        ``(*, 4)`` quaternions, scalar first.
    """
    R = check_last(R, (3, 3), "R")
    batch = R.shape[:-2]
    R = R.reshape(-1, 3, 3)
    # Bar-Itzhack: the quaternion is the eigenvector of K with the largest eigenvalue.
    m = R
    K = np.empty((len(R), 4, 4))
    K[:, 0, 0] = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    K[:, 0, 1] = K[:, 1, 0] = m[:, 2, 1] - m[:, 1, 2]
    K[:, 0, 2] = K[:, 2, 0] = m[:, 0, 2] - m[:, 2, 0]
    K[:, 0, 3] = K[:, 3, 0] = m[:, 1, 0] - m[:, 0, 1]
    K[:, 1, 1] = m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2]
    K[:, 1, 2] = K[:, 2, 1] = m[:, 0, 1] + m[:, 1, 0]
    K[:, 1, 3] = K[:, 3, 1] = m[:, 0, 2] + m[:, 2, 0]
    K[:, 2, 2] = m[:, 1, 1] - m[:, 0, 0] - m[:, 2, 2]
    K[:, 2, 3] = K[:, 3, 2] = m[:, 1, 2] + m[:, 2, 1]
    K[:, 3, 3] = m[:, 2, 2] - m[:, 0, 0] - m[:, 1, 1]
    _, vecs = np.linalg.eigh(K / 3.0)
    q = vecs[:, :, -1]
    q = q * np.where(q[:, :1] < 0, -1.0, 1.0)
    return q.reshape(batch + (4,))


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> np.ndarray:
    """Angle of the rotation ``R_a^T R_b`` in degrees, accurate for tiny and for large angles.

    With ``R = R_a^T R_b``, ``trace(R) = 1 + 2 cos(theta)`` and the skew part
    ``R - R^T = 2 sin(theta) [axis]_x``, so ``theta = atan2(|skew vector|, trace - 1)``.
    ``arccos((trace - 1) / 2)`` is not used: its derivative blows up at 0 and 180 deg, so a
    rounding error of 1e-16 in the trace becomes ~1e-6 deg, and which value comes out depends
    on the BLAS build (summation order).

    Args:
        R_a, R_b: ``(*, 3, 3)`` rotation matrices (broadcast against each other).
    Returns:
        ``(*,)`` angles in [0, 180]; 0 for identical inputs.
    """
    R_a = check_last(R_a, (3, 3), "R_a")
    R_b = check_last(R_b, (3, 3), "R_b")
    R = np.einsum("...ki,...kj->...ij", R_a, R_b)  # R_a^T R_b, summed in a fixed order
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    cos2 = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0  # 2 cos(theta)
    return np.degrees(np.arctan2(np.linalg.norm(skew, axis=-1), cos2))


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between vectors in degrees, ``atan2(|a x b|, a . b)`` (accurate for tiny angles too).

    Args:
        a, b: ``(*, 3)`` vectors (broadcast against each other; need not be unit length).
    Returns:
        ``(*,)`` angles in [0, 180]; 0 when either vector is zero.
    """
    a = check_last(a, (3,), "a")
    b = check_last(b, (3,), "b")
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, -1)))


# ---------------------------------------------------------------------------------- transforms
def invert_rigid(a_from_b: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``(*, 3, 4)`` -> ``(*, 3, 4)`` (``b_from_a``)."""
    a_from_b = check_last(a_from_b, (3, 4), "a_from_b")
    R = a_from_b[..., :3, :3]
    t = a_from_b[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    return np.concatenate([Rt, -(Rt @ t[..., None])], axis=-1)


def compose_rigid(a_from_b: np.ndarray, b_from_c: np.ndarray) -> np.ndarray:
    """Composition ``a_from_c = a_from_b ∘ b_from_c`` of ``(*, 3, 4)`` transforms."""
    a_from_b = check_last(a_from_b, (3, 4), "a_from_b")
    b_from_c = check_last(b_from_c, (3, 4), "b_from_c")
    R = a_from_b[..., :3, :3] @ b_from_c[..., :3, :3]
    t = (a_from_b[..., :3, :3] @ b_from_c[..., :3, 3:4])[..., 0] + a_from_b[..., :3, 3]
    return np.concatenate([R, t[..., None]], axis=-1)


def transform_points(a_from_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Apply ``(*, 3, 4)`` transforms to points ``(*, N, 3)`` -> ``(*, N, 3)``."""
    a_from_b = check_last(a_from_b, (3, 4), "a_from_b")
    points_b = check_last(points_b, (3,), "points_b")
    return points_b @ np.swapaxes(a_from_b[..., :3, :3], -1, -2) + a_from_b[..., None, :3, 3]


def camera_centers(cam_from_world: np.ndarray) -> np.ndarray:
    """Camera centres in world coordinates, ``(*, 3, 4)`` -> ``(*, 3)``."""
    return invert_rigid(cam_from_world)[..., :3, 3]


def cam_from_world_look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Cameras at ``eye`` looking at ``target`` with image-up along ``up`` (OpenCV frame).

    Args:
        eye: ``(*, 3)`` camera centres in world coordinates.
        target: ``(*, 3)`` points the optical axis goes through.
        up: ``(3,)`` or ``(*, 3)`` world direction that appears upward in the image.
    Returns:
        ``(*, 3, 4)`` ``cam_from_world`` transforms.
    """
    eye = check_last(eye, (3,), "eye")
    target = check_last(target, (3,), "target")
    up = np.broadcast_to(check_last(up, (3,), "up"), eye.shape)
    z = target - eye
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=-2)  # rows are the camera axes in world coordinates
    t = -(R @ eye[..., None])[..., 0]
    return np.concatenate([R, t[..., None]], axis=-1)


# ---------------------------------------------------------------------------------- intrinsics
def K_opencv_from_colmap(K: np.ndarray) -> np.ndarray:
    """Shift a ``(*, 3, 3)`` intrinsic matrix from COLMAP to OpenCV pixel centres (cx, cy - 0.5)."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[..., 0, 2] -= PIXEL_CENTER_OFFSET
    K[..., 1, 2] -= PIXEL_CENTER_OFFSET
    return K


def K_colmap_from_opencv(K: np.ndarray) -> np.ndarray:
    """Shift a ``(*, 3, 3)`` intrinsic matrix from OpenCV to COLMAP pixel centres (cx, cy + 0.5)."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[..., 0, 2] += PIXEL_CENTER_OFFSET
    K[..., 1, 2] += PIXEL_CENTER_OFFSET
    return K


def pixels_from_cam(K: np.ndarray, points_cam: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (no distortion).

    Args:
        K: ``(3, 3)`` or ``(*, 3, 3)`` intrinsics (COLMAP pixel centres).
        points_cam: ``(*, N, 3)`` points in the camera frame.
    Returns:
        ``(*, N, 2)`` pixel coordinates.
    """
    points_cam = check_last(points_cam, (3,), "points_cam")
    K = check_last(K, (3, 3), "K")
    uvw = points_cam @ np.swapaxes(K, -1, -2)
    return uvw[..., :2] / uvw[..., 2:3]


def rays_cam_from_pixels(K: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Camera-frame ray directions with z = 1 through pixels (no distortion).

    Args:
        K: ``(3, 3)`` intrinsics (COLMAP pixel centres).
        pixels: ``(*, 2)`` pixel coordinates.
    Returns:
        ``(*, 3)`` directions ``(x, y, 1)``.
    """
    pixels = check_last(pixels, (2,), "pixels")
    K = check_last(K, (3, 3), "K")
    x = (pixels[..., 0] - K[0, 2] - K[0, 1] * (pixels[..., 1] - K[1, 2]) / K[1, 1]) / K[0, 0]
    y = (pixels[..., 1] - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def pixel_grid(width: int, height: int) -> np.ndarray:
    """Centres of all pixels, ``(H, W, 2)`` as (x, y) in COLMAP convention."""
    xs = np.arange(width, dtype=np.float64) + PIXEL_CENTER_OFFSET
    ys = np.arange(height, dtype=np.float64) + PIXEL_CENTER_OFFSET
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], axis=-1)


# ---------------------------------------------------------------------------------- distortion
def distort_normalized(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Apply OpenCV radial-tangential distortion to normalized image points.

    Args:
        xy: ``(*, 2)`` normalized coordinates (x/z, y/z).
        dist: ``(k)`` coefficients in OpenCV order ``k1, k2, p1, p2[, k3]`` (missing ones are 0).
    Returns:
        ``(*, 2)`` distorted normalized coordinates.
    """
    xy = check_last(xy, (2,), "xy")
    d = np.zeros(5)
    d[: min(5, len(dist))] = np.asarray(dist, dtype=np.float64)[:5]
    k1, k2, p1, p2, k3 = d
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def undistort_normalized(xy_d: np.ndarray, dist: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Invert :func:`distort_normalized` by Gauss-Newton (exact to ~1e-12 for mild distortion).

    Args:
        xy_d: ``(*, 2)`` distorted normalized coordinates.
        dist: ``(k)`` OpenCV coefficients ``k1, k2, p1, p2[, k3]``.
    Returns:
        ``(*, 2)`` undistorted normalized coordinates.
    """
    xy_d = check_last(xy_d, (2,), "xy_d")
    xy = xy_d.copy()
    eps = 1e-7
    for _ in range(iterations):
        f = distort_normalized(xy, dist) - xy_d
        jx = (distort_normalized(xy + [eps, 0], dist) - distort_normalized(xy - [eps, 0], dist)) / (2 * eps)
        jy = (distort_normalized(xy + [0, eps], dist) - distort_normalized(xy - [0, eps], dist)) / (2 * eps)
        a, c = jx[..., 0], jx[..., 1]
        b, d = jy[..., 0], jy[..., 1]
        det = a * d - b * c
        dx = (d * f[..., 0] - b * f[..., 1]) / det
        dy = (-c * f[..., 0] + a * f[..., 1]) / det
        xy = xy - np.stack([dx, dy], axis=-1)
        if np.max(np.abs(f)) < 1e-13:
            break
    return xy


def pixels_from_cam_distorted(K: np.ndarray, dist: np.ndarray, points_cam: np.ndarray) -> np.ndarray:
    """Projection with OpenCV distortion, ``(3, 3), (k), (*, 3) -> (*, 2)`` (COLMAP pixel centres)."""
    points_cam = check_last(points_cam, (3,), "points_cam")
    xy = distort_normalized(points_cam[..., :2] / points_cam[..., 2:3], dist)
    return pixels_from_cam(K, np.concatenate([xy, np.ones_like(xy[..., :1])], axis=-1))


def rays_cam_from_pixels_distorted(K: np.ndarray, dist: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Rays ``(x, y, 1)`` through distorted pixels, ``(3, 3), (k), (*, 2) -> (*, 3)``."""
    rays = rays_cam_from_pixels(K, pixels)
    xy = undistort_normalized(rays[..., :2], dist)
    return np.concatenate([xy, np.ones_like(xy[..., :1])], axis=-1)
