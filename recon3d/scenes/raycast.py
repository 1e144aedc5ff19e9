"""Vectorised ray casting of textured planes, boxes and spheres with Lambertian shading.

A :class:`RayScene` is built from a :class:`~recon3d.scenes.spec.SceneSpec`; :meth:`RayScene.cast`
returns, for ``(N, 3)`` rays, the hit distance ``t`` (``X = o + t d``), the surface id
(``object * 8 + face``, ``-1`` for no hit), the outward normal and the surface texture
coordinates. Exact to float64 round-off: the ground truth of every synthetic scene comes from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from recon3d.scenes.spec import LightSpec, ObjectSpec, SceneSpec
from recon3d.scenes.textures import make_texture, sample_texture

EPS = 1e-9
FACES = 8  # surface id = object index * FACES + face index


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _plane_axes(normal: np.ndarray, yaw_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Width and height axes of a plane: width horizontal when possible, rotated by yaw about n."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _unit(np.cross(ref, normal))
    v = np.cross(normal, u)
    a = np.radians(yaw_deg)
    return np.cos(a) * u + np.sin(a) * v, -np.sin(a) * u + np.cos(a) * v


def _rot_z(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Hits:
    """Result of casting ``N`` rays."""

    t: np.ndarray
    """(N,) distance along each ray direction (inf where nothing is hit)."""
    surface: np.ndarray
    """(N,) surface id ``object * 8 + face``; -1 where nothing is hit."""
    normal: np.ndarray
    """(N, 3) unit outward normal at the hit."""
    uv: np.ndarray
    """(N, 2) texture coordinates in metres on the hit surface."""


class RayScene:
    """Textured primitives of a scene spec, ready for ray casting."""

    def __init__(self, objects: list[ObjectSpec], light: LightSpec, background: list[float]):
        self.objects = objects
        self.textures = [make_texture(o.texture) for o in objects]
        self.light_dir = _unit(light.direction)
        self.ambient = light.ambient
        self.diffuse = light.diffuse
        self.background = np.asarray(background, dtype=np.float64)
        self.analytic: dict[int, Callable[[np.ndarray], np.ndarray]] = {}
        """Per-object albedo functions ``uv (N, 2) -> rgb (N, 3)`` that replace its texture image."""
        self._frames = []
        for o in objects:
            c = np.asarray(o.center, dtype=np.float64)
            if o.type == "plane":
                n = _unit(o.normal)
                u, v = _plane_axes(n, o.yaw_deg)
                self._frames.append((c, np.stack([u, v, n], axis=1)))
            elif o.type == "box":
                self._frames.append((c, _rot_z(o.yaw_deg)))
            else:
                self._frames.append((c, np.eye(3)))

    @classmethod
    def from_spec(cls, spec: SceneSpec) -> "RayScene":
        return cls(spec.objects, spec.light, spec.background)

    # ------------------------------------------------------------------ intersection
    def _bounding_candidates(self, i: int, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Indices of rays that pass through the object's bounding sphere (all rays for planes)."""
        obj = self.objects[i]
        if obj.type == "plane":
            return np.arange(len(o))
        c, _ = self._frames[i]
        r = obj.radius if obj.type == "sphere" else 0.5 * float(np.linalg.norm(obj.size))
        oc = o - c
        b = np.einsum("ij,ij->i", oc, d)
        aa = np.einsum("ij,ij->i", d, d)
        cc = np.einsum("ij,ij->i", oc, oc) - r * r
        return np.nonzero((b * b - aa * cc >= 0) & ((b <= 0) | (cc <= 0)))[0]

    def _intersect(self, i: int, o: np.ndarray, d: np.ndarray):
        """Hits of rays ``(N, 3)`` with object ``i``: (ray index, t, face, normal, uv) of hitting rays."""
        obj = self.objects[i]
        c, R = self._frames[i]
        idx = self._bounding_candidates(i, o, d)
        o, d = o[idx], d[idx]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if obj.type == "plane":
                n = R[:, 2]
                denom = d @ n
                t = ((c - o) @ n) / denom
                p = o + t[:, None] * d - c
                a, b = p @ R[:, 0], p @ R[:, 1]
                ok = (np.abs(denom) > EPS) & (t > EPS) & (np.abs(a) <= obj.size[0] / 2) & (np.abs(b) <= obj.size[1] / 2)
                back = denom[ok] > 0  # two-sided: the normal faces the ray
                normal = np.where(back[:, None], -n, n)
                return idx[ok], t[ok], back.astype(np.int64), normal, np.stack([a[ok], b[ok]], axis=1)
            if obj.type == "box":
                half = np.asarray(obj.size, dtype=np.float64) / 2
                ol = (o - c) @ R  # local frame
                dl = d @ R
                inv = 1.0 / dl
                t1 = (-half - ol) * inv
                t2 = (half - ol) * inv
                tmin_axes = np.fmin(t1, t2)
                tmin = np.max(tmin_axes, axis=1)
                tmax = np.min(np.fmax(t1, t2), axis=1)
                ok = (tmax >= tmin) & (tmin > EPS)
                ol, dl, t = ol[ok], dl[ok], tmin[ok]
                axis = np.argmax(tmin_axes[ok], axis=1)
                p = ol + t[:, None] * dl
                rows = np.arange(len(p))
                sign = np.sign(p[rows, axis])
                nl = np.zeros((len(p), 3))
                nl[rows, axis] = sign
                face = axis * 2 + (sign > 0)
                others = np.array([[1, 2], [0, 2], [0, 1]])[axis]
                uv = np.take_along_axis(p, others, 1) + (face * 0.731)[:, None]  # faces differ
                return idx[ok], t, face, nl @ R.T, uv
            # sphere
            r = obj.radius
            oc = o - c
            b = np.einsum("ij,ij->i", oc, d)
            aa = np.einsum("ij,ij->i", d, d)
            cc = np.einsum("ij,ij->i", oc, oc) - r * r
            disc = b * b - aa * cc
            t = (-b - np.sqrt(np.maximum(disc, 0.0))) / aa
            ok = (disc >= 0) & (t > EPS)
            t = t[ok]
            nrm = (oc[ok] + t[:, None] * d[ok]) / r
            lon = np.arctan2(nrm[:, 1], nrm[:, 0])
            lat = np.arcsin(np.clip(nrm[:, 2], -1, 1))
            return idx[ok], t, np.zeros(len(t), dtype=np.int64), nrm, np.stack([lon * r, lat * r], axis=1)

    def cast(self, origins: np.ndarray, dirs: np.ndarray, chunk: int = 1 << 19) -> Hits:
        """Cast rays ``X = o + t d``.

        Args:
            origins: ``(N, 3)`` or ``(3,)`` ray origins (world).
            dirs: ``(N, 3)`` directions (any length; ``t`` is in units of ``|d|``).
        Returns:
            :class:`Hits` for the nearest surface along each ray.
        """
        dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        origins = np.ascontiguousarray(np.broadcast_to(np.asarray(origins, dtype=np.float64), dirs.shape))
        n = len(dirs)
        out = Hits(np.full(n, np.inf), np.full(n, -1, dtype=np.int64), np.zeros((n, 3)), np.zeros((n, 2)))
        for s in range(0, n, chunk):
            o, d = origins[s:s + chunk], dirs[s:s + chunk]
            for i in range(len(self.objects)):
                idx, t, face, normal, uv = self._intersect(i, o, d)
                closer = t < out.t[s + idx]
                j = s + idx[closer]
                out.t[j] = t[closer]
                out.surface[j] = i * FACES + face[closer]
                out.normal[j] = normal[closer]
                out.uv[j] = uv[closer]
        return out

    # ------------------------------------------------------------------ shading
    def albedo(self, hits: Hits) -> np.ndarray:
        """``(N, 3)`` surface colour (texture) at hits; background colour where nothing is hit."""
        rgb = np.tile(self.background, (len(hits.t), 1))
        obj = np.where(hits.surface >= 0, hits.surface // FACES, -1)
        for i, (o, tex) in enumerate(zip(self.objects, self.textures)):
            m = obj == i
            if np.any(m):
                if i in self.analytic:
                    rgb[m] = self.analytic[i](hits.uv[m])
                else:
                    rgb[m] = sample_texture(tex, hits.uv[m] / o.texture.tile)
        return rgb

    def shade(self, hits: Hits) -> np.ndarray:
        """``(N, 3)`` Lambertian radiance in [0, 1] (view independent)."""
        rgb = self.albedo(hits)
        hit = hits.surface >= 0
        lambert = np.clip(hits.normal[hit] @ self.light_dir, 0.0, None)
        rgb[hit] *= (self.ambient + self.diffuse * lambert)[:, None]
        return np.clip(rgb, 0.0, 1.0)
