"""Test clips: the ``orbit`` scene rendered along a circle into an mp4 (exact pose per frame),
blurred and held frames put in, and phone-style rotation metadata written into the file."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from recon3d import geometry
from recon3d.geometry.camera import Camera

WIDTH, HEIGHT, FOCAL = 320, 240, 260.0
"""Frame size and focal length of the test clips (the orbit scene's field of view at half size)."""


def orbit_clip_poses(num_frames: int, turns: float = 1.0) -> np.ndarray:
    """``(N, 3, 4)`` cam_from_world on a circle (radius 5.5 m, 2.6 m up) round the orbit scene's objects."""
    target = np.array([0.0, 0.0, 0.4])
    ang = 2 * np.pi * turns * np.arange(num_frames) / num_frames
    eyes = target + np.stack([5.5 * np.cos(ang), 5.5 * np.sin(ang), np.full_like(ang, 2.6)], axis=1)
    return geometry.cam_from_world_look_at(eyes, np.broadcast_to(target, eyes.shape))


def render_orbit_frames(num_frames: int, cache: Path | None = None, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The orbit scene along :func:`orbit_clip_poses`: ``(N, H, W, 3)`` uint8 BGR frames and ``(N, 3, 4)`` poses.

    Rendered at ``supersample`` times the size and shrunk (anti-aliased, as a camera's optics and
    sensor are). Cached as ``cache/orbit_clip_*.npz`` when ``cache`` is given (a frame takes ~0.5 s).
    """
    poses = orbit_clip_poses(num_frames)
    path = None if cache is None else Path(cache) / f"orbit_clip_{num_frames}_{WIDTH}x{HEIGHT}_ss{supersample}.npz"
    if path is not None and path.is_file():
        data = np.load(path)
        if np.allclose(data["poses"], poses):
            return data["frames"], poses
    import cv2

    from recon3d.scenes import load_spec
    from recon3d.scenes.raycast import RayScene
    from recon3d.scenes.render import render_view, to_uint8

    scene = RayScene.from_spec(load_spec("orbit"))
    s = supersample
    camera = Camera(WIDTH * s, HEIGHT * s, [[FOCAL * s, 0, WIDTH * s / 2], [0, FOCAL * s, HEIGHT * s / 2], [0, 0, 1]], [])
    frames = np.stack([cv2.resize(to_uint8(render_view(scene, camera, P, supersample=1).rgb)[:, :, ::-1], (WIDTH, HEIGHT),
                                  interpolation=cv2.INTER_AREA) for P in poses])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(tmp, frames=frames, poses=poses)
        os.replace(tmp, path)
    return frames, poses


def write_clip(path: Path, frames: np.ndarray, fps: float = 30.0) -> Path:
    """Write BGR frames ``(N, H, W, 3)`` uint8 as an mp4 (MPEG-4 part 2, OpenCV's own encoder)."""
    import cv2

    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4v"
    for f in frames:
        writer.write(np.ascontiguousarray(f))
    writer.release()
    return path


def _boxes(data: bytes, start: int, end: int):
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size < 8:
            return
        yield i, size, kind.decode("latin1")
        i += size


def set_mp4_rotation(path: Path, degrees: int) -> None:
    """Write a display rotation into an mp4's video track, as phones do (the ``tkhd`` matrix).

    ``degrees`` clockwise (90, 180, 270) is how a player turns the stored frames for display.
    """
    data = bytearray(Path(path).read_bytes())
    matrices = {0: (1, 0, 0, 1), 90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}
    a, b, c, d = (v * 65536 for v in matrices[degrees])
    for i, size, kind in _boxes(data, 0, len(data)):
        if kind != "moov":
            continue
        for j, tsize, tkind in _boxes(data, i + 8, i + size):
            if tkind != "trak":
                continue
            for k, _, hkind in _boxes(data, j + 8, j + tsize):
                if hkind == "tkhd":
                    version = data[k + 8]
                    off = k + 12 + (20 if version == 0 else 32) + 16
                    data[off:off + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 1 << 30)
    Path(path).write_bytes(bytes(data))


def gt_of_frames(frames_json: Path, poses: np.ndarray) -> dict[str, np.ndarray]:
    """Name -> true ``(3, 4)`` cam_from_world of every kept frame of a ``frames.json``."""
    report = json.loads(Path(frames_json).read_text())
    return {row["file"]: poses[row["index"]] for row in report["kept"]}
