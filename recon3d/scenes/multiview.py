"""Multi-view scenes (``orbit``, ``facade``): photos, exact cameras, depth and 3D points.

Output of :func:`render_multiview` in ``OUT``::

    images/<view>.png          the photos
    gt/sparse/0/*.txt          true cameras and points as a COLMAP text model
    gt/depth/<view>.npy        float32 (H, W) z-depth, inf where no surface
    scene.yaml                 the resolved scene spec

Ground-truth points lie on visible surfaces; each observation is where the point projects
in a view where a ray cast confirms it is visible, at least one pixel inside its surface
(away from silhouettes), so depth maps and points agree exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from recon3d import geometry
from recon3d.core.atomic import atomic_dir
from recon3d.geometry.camera import Camera
from recon3d.io.cameras import save_camera
from recon3d.io.colmap import Model, ModelImage, write_text_model
from recon3d.scenes.raycast import RayScene
from recon3d.scenes.render import cast_from_camera, render_views, write_image
from recon3d.scenes.spec import IntrinsicsSpec, SceneSpec, ViewsSpec


def camera_from_spec(spec: IntrinsicsSpec) -> Camera:
    """The :class:`Camera` of an intrinsics spec (principal point defaults to the image centre)."""
    cx = spec.width / 2 if spec.cx is None else spec.cx
    cy = spec.height / 2 if spec.cy is None else spec.cy
    return Camera(spec.width, spec.height, [[spec.fx, 0, cx], [0, spec.fy, cy], [0, 0, 1]], spec.dist)


def small_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random rotation ``(3, 3)`` about a random axis, angle uniform in [-max_deg, max_deg]."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = np.radians(rng.uniform(-max_deg, max_deg))
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx


def view_poses(views: ViewsSpec, seed: int) -> np.ndarray:
    """``(V, 3, 4)`` ``cam_from_world`` of a ring or grid of views."""
    rng = np.random.default_rng(seed)
    target = np.asarray(views.target, dtype=np.float64)
    if views.type == "ring":
        if views.arc_deg >= 360.0:
            ang = 2 * np.pi * np.arange(views.count) / views.count
        else:
            ang = np.radians(views.arc_deg) * (np.arange(views.count) / max(1, views.count - 1) - 0.5)
        eyes = target + np.stack([views.radius * np.cos(ang), views.radius * np.sin(ang),
                                  np.full_like(ang, views.height)], axis=1)
        targets = np.broadcast_to(target, eyes.shape)
    elif views.type == "grid":
        cols = views.count // views.rows
        if cols * views.rows != views.count:
            raise ValueError("grid views: count must be a multiple of rows")
        xs = (np.arange(cols) - (cols - 1) / 2) * views.spacing
        zs = (np.arange(views.rows) - (views.rows - 1) / 2) * views.height
        gx, gz = np.meshgrid(xs, zs)
        eyes = target + np.stack([gx.ravel(), np.full(gx.size, -views.radius), gz.ravel()], axis=1)
        targets = target + np.stack([gx.ravel() * 0.35, np.zeros(gx.size), gz.ravel() * 0.35], axis=1)
    else:
        raise ValueError(f"views of type {views.type} are not multi-view")
    poses = []
    for eye, tgt in zip(eyes, targets):
        eye = eye + rng.normal(scale=views.jitter_m, size=3)
        P = geometry.cam_from_world_look_at(eye, tgt)
        R = small_rotation(rng, views.jitter_deg) @ P[:, :3]
        poses.append(np.concatenate([R, (-R @ eye)[:, None]], axis=1))
    return np.stack(poses)


def sample_points(
    scene: RayScene,
    camera: Camera,
    poses: np.ndarray,
    surfaces: np.ndarray,
    count: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Sample surface points and their exact observations.

    Args:
        scene: the scene.
        camera: the shared camera (no distortion assumed for observations' visibility test).
        poses: ``(V, 3, 4)`` cam_from_world.
        surfaces: ``(V, H, W)`` surface-id maps at pixel centres.
        count: number of points to keep (at most).
    Returns:
        points ``(P, 3)``, colours ``(P, 3)`` float, and per view ``(point index (M,), pixels (M, 2))``.
    """
    V, H, W = surfaces.shape
    per_view = int(np.ceil(3 * count / V))
    pts, surf = [], []
    for v in range(V):
        pix = rng.uniform([2, 2], [W - 2, H - 2], size=(per_view, 2))
        hits = cast_from_camera(scene, camera, poses[v], camera.rays(pix))
        ok = hits.surface >= 0
        R, t = poses[v][:, :3], poses[v][:, 3]
        rays_world = camera.rays(pix[ok]) @ R
        pts.append(-R.T @ t + hits.t[ok, None] * rays_world)
        surf.append(hits.surface[ok])
    X = np.concatenate(pts)
    S = np.concatenate(surf)
    order = rng.permutation(len(X))
    X, S = X[order], S[order]

    obs = []
    n_obs = np.zeros(len(X), dtype=np.int64)
    for v in range(V):
        Xc = geometry.transform_points(poses[v], X)
        front = Xc[:, 2] > 1e-6
        uv = np.full((len(X), 2), -1.0)
        uv[front] = camera.project(Xc[front])
        inside = front & (uv[:, 0] >= 2) & (uv[:, 0] < W - 2) & (uv[:, 1] >= 2) & (uv[:, 1] < H - 2)
        idx = np.nonzero(inside)[0]
        # visible: the ray from this camera towards the point hits it first, on the same surface
        R, t = poses[v][:, :3], poses[v][:, 3]
        center = -R.T @ t
        hits = scene.cast(center, X[idx] - center)
        vis = (np.abs(hits.t - 1.0) < 1e-7) & (hits.surface == S[idx])
        idx = idx[vis]
        # interior: the 4x4 pixel block around the bilinear footprint lies on the same surface
        x0 = np.floor(uv[idx, 0] - 0.5).astype(np.int64)
        y0 = np.floor(uv[idx, 1] - 0.5).astype(np.int64)
        interior = np.ones(len(idx), dtype=bool)
        for dy in (-1, 0, 1, 2):
            for dx in (-1, 0, 1, 2):
                yy = np.clip(y0 + dy, 0, H - 1)
                xx = np.clip(x0 + dx, 0, W - 1)
                interior &= surfaces[v][yy, xx] == S[idx]
        idx = idx[interior]
        obs.append((idx, uv[idx]))
        n_obs[idx] += 1
    keep = np.nonzero(n_obs >= 2)[0][:count]
    remap = np.full(len(X), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    # colour: shade each point as seen along a ray from the first camera that observes it
    first_view = np.full(len(X), -1)
    for v in reversed(range(V)):
        first_view[obs[v][0]] = v
    centers = geometry.camera_centers(poses)[first_view[keep]]
    colors = scene.shade(scene.cast(centers, X[keep] - centers))
    obs = [(remap[i][remap[i] >= 0], uv[remap[i] >= 0]) for i, uv in obs]
    return X[keep], colors, obs


def render_multiview(spec: SceneSpec, out: Path, progress: Callable | None = None) -> dict:
    """Render a multi-view scene into ``out`` (see the module docstring); returns a summary."""
    scene = RayScene.from_spec(spec)
    camera = camera_from_spec(spec.camera)
    poses = view_poses(spec.views, spec.seed)
    names = [f"view_{i:03d}.{spec.image_format}" for i in range(len(poses))]
    depths, surfaces = [], []
    it = progress(range(len(poses)), desc=f"render {spec.name}", unit="view") if progress else range(len(poses))
    with atomic_dir(out / "images") as img_dir:
        for i, view in zip(it, render_views(scene, camera, poses, spec.supersample)):
            rgb = view.rgb
            if spec.noise > 0:
                rgb = rgb + np.random.default_rng([spec.seed, 1000 + i]).normal(scale=spec.noise, size=rgb.shape)
            write_image(img_dir / names[i], rgb)
            depths.append(view.depth)
            surfaces.append(view.surface)
    rng = np.random.default_rng(spec.seed + 1)
    X, colors, obs = sample_points(scene, camera, poses, np.stack(surfaces), spec.points, rng)

    model_name, params = camera.colmap_model()
    images = {}
    for v, name in enumerate(names):
        idx, uv = obs[v]
        images[v + 1] = ModelImage(name=name, camera_id=1, cam_from_world=poses[v], points2D=uv,
                                   point3D_ids=idx + 1)
    model = Model(
        cameras={1: (model_name, camera.width, camera.height, params)},
        images=images,
        point_ids=np.arange(1, len(X) + 1),
        points=X,
        colors=np.clip(np.round(colors * 255), 0, 255).astype(np.uint8),
    )
    with atomic_dir(out / "gt") as gt:
        write_text_model(model, gt / "sparse" / "0")
        (gt / "depth").mkdir()
        for name, depth in zip(names, depths):
            np.save(gt / "depth" / f"{Path(name).stem}.npy", depth)
        save_camera(camera, gt / "camera.json")
    n_obs = sum(len(o[0]) for o in obs)
    return {"images": len(names), "points": int(len(X)), "observations": int(n_obs),
            "image_size": [camera.width, camera.height]}
