"""Camera paths through a workspace's scene (any backend renders them).

* ``orbit``: a circle around the scene centre at the cameras' mean height and distance, looking at
  the centre. When the cameras do not surround the scene (forward-facing captures, e.g. LLFF)
  the circle instead runs through the camera cluster, LLFF-style, still looking at the centre.
* ``interp``: through the registered cameras in name order, slerping rotations and lerping centres.
"""

from __future__ import annotations

import numpy as np

from recon3d import geometry
from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.geometry.framing import focus_point, scene_center

PATHS = ("orbit", "interp")


def orbit_path(cam_from_world: np.ndarray, center: np.ndarray, num_frames: int) -> np.ndarray:
    """Poses on a circle around ``center`` (or through the cameras for forward-facing captures).

    Args:
        cam_from_world: ``(V, 3, 4)`` poses of the captured views.
        center: ``(3,)`` point the path looks at.
        num_frames: poses to return.
    Returns:
        ``(num_frames, 3, 4)`` ``cam_from_world``.
    """
    C = geometry.camera_centers(cam_from_world)
    up = -cam_from_world[:, 1, :3].mean(0)  # image up is -y of the OpenCV camera
    up /= np.linalg.norm(up)
    rel = C - center
    h = rel @ up
    horiz = rel - h[:, None] * up
    r = np.linalg.norm(horiz, axis=1)
    ang = np.arctan2(horiz @ np.cross(up, horiz[0] / max(r[0], 1e-12)), horiz @ (horiz[0] / max(r[0], 1e-12)))
    e1 = horiz[0] / max(r[0], 1e-12)
    e2 = np.cross(up, e1)
    theta = np.linspace(0, 2 * np.pi, num_frames, endpoint=False)
    coverage = np.ptp(np.unwrap(np.sort(ang))) if len(ang) > 1 else 0.0
    if coverage > np.radians(120):  # cameras surround the scene: orbit it
        sense = 1.0 if np.mean(np.diff(np.unwrap(ang))) >= 0 else -1.0
        eyes = center + h.mean() * up + r.mean() * (np.cos(sense * theta)[:, None] * e1 + np.sin(sense * theta)[:, None] * e2)
    else:  # forward-facing: a circle through the camera cluster
        mean_c = C.mean(0)
        fwd = center - mean_c
        fwd /= np.linalg.norm(fwd)
        a = np.cross(fwd, up)
        a /= np.linalg.norm(a)
        b = np.cross(a, fwd)
        spread = np.abs((C - mean_c) @ np.stack([a, b], 1))
        ra, rb = np.percentile(spread, 90, axis=0) + 1e-9
        eyes = mean_c + np.cos(theta)[:, None] * ra * a + np.sin(theta)[:, None] * rb * b
    return geometry.cam_from_world_look_at(eyes, np.broadcast_to(center, eyes.shape), up)


def _slerp(q0: np.ndarray, q1: np.ndarray, f: float) -> np.ndarray:
    if np.dot(q0, q1) < 0:
        q1 = -q1
    d = np.clip(np.dot(q0, q1), -1.0, 1.0)
    if d > 0.9995:
        q = q0 + f * (q1 - q0)
    else:
        a = np.arccos(d)
        q = (np.sin((1 - f) * a) * q0 + np.sin(f * a) * q1) / np.sin(a)
    return q / np.linalg.norm(q)


def interp_path(cam_from_world: np.ndarray, num_frames: int) -> np.ndarray:
    """Poses through the given cameras in order (slerp rotations, lerp centres).

    Args:
        cam_from_world: ``(V, 3, 4)`` poses, in path order (V >= 1).
        num_frames: poses to return.
    Returns:
        ``(num_frames, 3, 4)``.
    """
    V = len(cam_from_world)
    if V == 1:
        return np.repeat(cam_from_world[None], num_frames, axis=0)
    C = geometry.camera_centers(cam_from_world)
    q = geometry.quat_wxyz_from_rotmat(cam_from_world[:, :, :3])
    out = []
    for s in np.linspace(0.0, V - 1, num_frames):
        k = min(int(np.floor(s)), V - 2)
        f = s - k
        R = geometry.rotmat_from_quat_wxyz(_slerp(q[k], q[k + 1], f))
        c = (1 - f) * C[k] + f * C[k + 1]
        out.append(np.concatenate([R, (-R @ c)[:, None]], axis=1))
    return np.stack(out)


def workspace_path(ws: Workspace, kind: str, num_frames: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """A camera path for a workspace's registered cameras.

    Returns:
        poses ``(N, 3, 4)``, ``K`` ``(3, 3)`` (pinhole, undistorted first camera), width, height.
    """
    from recon3d.io.cameras import camera_from_colmap
    from recon3d.io.colmap import read_model
    from recon3d.io.dataset import undistort_view

    if kind not in PATHS:
        raise UserError(f"camera path {kind!r} is unknown; use one of {', '.join(PATHS)}")
    if num_frames < 1:
        raise UserError("--frames must be >= 1")
    model = read_model(ws.require_model())
    if not model.images:
        raise UserError(f"{ws.model}: the model has no registered images")
    ims = sorted(model.images.values(), key=lambda im: im.name)
    poses = np.stack([im.cam_from_world for im in ims])
    cam = camera_from_colmap(*model.cameras[ims[0].camera_id], where=ws.model)
    if cam.has_distortion:
        _, cam = undistort_view(np.zeros((cam.height, cam.width, 3), np.uint8), cam)
    if kind == "orbit":
        # look where the cameras look (their focus point), falling back to the scene centre along
        # directions the optical axes leave open (forward-facing captures)
        center = focus_point(poses, scene_center(poses, model.points))
        path = orbit_path(poses, center, num_frames)
    else:
        path = interp_path(poses, num_frames)
    return path, cam.K, cam.width, cam.height


def scaled_intrinsics(K: np.ndarray, width: int, height: int, downscale: float) -> tuple[np.ndarray, int, int]:
    """``K``, width and height of images ``downscale`` times smaller (at least 1 px a side)."""
    if downscale <= 0:
        raise UserError("--downscale must be > 0")
    if downscale == 1.0:
        return K, width, height
    w, h = max(1, round(width / downscale)), max(1, round(height / downscale))
    K = K.copy()
    K[0] *= w / width
    K[1] *= h / height
    return K, w, h
