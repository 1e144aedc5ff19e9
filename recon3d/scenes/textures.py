"""Procedural, feature-rich textures (no downloads) and their bilinear sampling.

A texture is an ``(R, R, 3)`` float image in [0, 1] drawn deterministically from a
:class:`~recon3d.scenes.spec.TextureSpec`: multi-scale random shapes over smooth noise give
SIFT blobs and corners at many scales, without repeating patterns.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from recon3d.scenes.spec import TextureSpec


def _smooth_noise(rng: np.random.Generator, res: int, cells: int, channels: int = 3) -> np.ndarray:
    small = rng.random((cells, cells, channels)).astype(np.float32)
    return cv2.resize(small, (res, res), interpolation=cv2.INTER_CUBIC)


def _draw_shapes(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    res = img.shape[0]
    for _ in range(count):
        color = tuple(float(c) for c in rng.random(3))
        size = float(np.exp(rng.uniform(np.log(res * 0.006), np.log(res * 0.06))))
        cx, cy = rng.uniform(0, res, size=2)
        kind = rng.integers(0, 4)
        if kind == 0:
            cv2.circle(img, (int(cx), int(cy)), max(1, int(size)), color, -1, cv2.LINE_AA)
        elif kind == 1:
            ang = rng.uniform(0, 180)
            box = cv2.boxPoints(((cx, cy), (size * 2, size * rng.uniform(0.5, 2)), ang))
            cv2.fillPoly(img, [np.int32(box)], color, cv2.LINE_AA)
        elif kind == 2:
            pts = np.stack([cx + rng.uniform(-1.5, 1.5, 3) * size, cy + rng.uniform(-1.5, 1.5, 3) * size], 1)
            cv2.fillPoly(img, [np.int32(pts)], color, cv2.LINE_AA)
        else:
            p2 = (int(cx + rng.uniform(-3, 3) * size), int(cy + rng.uniform(-3, 3) * size))
            cv2.line(img, (int(cx), int(cy)), p2, color, max(1, int(size / 4)), cv2.LINE_AA)


@functools.lru_cache(maxsize=64)
def _make_texture_cached(seed: int, resolution: int, kind: str, color: tuple, density: float,
                         contrast: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    res = resolution
    base = np.asarray(color, dtype=np.float32)
    if kind == "plain":
        img = np.broadcast_to(base, (res, res, 3)).copy()
    elif kind == "checker":
        n = 16
        ij = (np.arange(res) * n // res)
        img = np.where(((ij[:, None] + ij[None, :]) % 2)[..., None] == 0, base, 1 - base).astype(np.float32)
    else:
        noise = 0.55 * _smooth_noise(rng, res, 6) + 0.3 * _smooth_noise(rng, res, 24) + 0.15 * _smooth_noise(rng, res, 96)
        img = (0.5 * base + 0.5 * noise).astype(np.float32)
        if kind == "shapes":
            _draw_shapes(img, rng, int(round(density * 900 * (res / 1024) ** 2)))
    if contrast != 1.0:
        img = base + contrast * (img - base)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    img.setflags(write=False)
    return img


def make_texture(spec: TextureSpec) -> np.ndarray:
    """The ``(R, R, 3)`` float32 texture image of a spec (cached, read-only)."""
    return _make_texture_cached(spec.seed, spec.resolution, spec.kind, tuple(spec.color), spec.density,
                                spec.contrast)


def sample_texture(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, wrapping lookup.

    Args:
        tex: ``(R, R, 3)`` texture.
        uv: ``(N, 2)`` coordinates in texture tiles (1.0 = one texture width).
    Returns:
        ``(N, 3)`` colours.
    """
    res = tex.shape[0]
    x = uv[:, 0] * res - 0.5
    y = uv[:, 1] * res - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x0 = x0.astype(np.int64) % res
    y0 = y0.astype(np.int64) % res
    x1 = (x0 + 1) % res
    y1 = (y0 + 1) % res
    return (
        tex[y0, x0] * (1 - fx) * (1 - fy)
        + tex[y0, x1] * fx * (1 - fy)
        + tex[y1, x0] * (1 - fx) * fy
        + tex[y1, x1] * fx * fy
    )
