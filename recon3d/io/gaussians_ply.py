"""Gaussian splats in the standard 3DGS PLY layout (read by common splat viewers).

Binary little-endian PLY with float32 properties, in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3K-1)  opacity  scale_0..2  rot_0..3

``f_dc`` are the degree-0 SH coefficients; ``f_rest`` the higher ones stored channel-major
(``f_rest[c * K + k]`` is coefficient ``k + 1`` of colour channel ``c``), ``opacity`` is a logit,
``scale_*`` are log scales and ``rot_*`` a quaternion in **wxyz** order (not necessarily unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.core.errors import UserError
from recon3d.io.compressed_ply import decode_compressed_ply, is_compressed_ply

SH_C0 = 0.28209479177387814
"""Degree-0 real spherical harmonic: colour = SH_C0 * f_dc + 0.5."""


@dataclass
class Splats:
    """Gaussian parameters as numpy arrays (activations not applied)."""

    means: np.ndarray
    """(N, 3) centres, world coordinates."""
    scales: np.ndarray
    """(N, 3) log scales."""
    quats: np.ndarray
    """(N, 4) rotations, wxyz."""
    opacities: np.ndarray
    """(N,) opacity logits."""
    sh0: np.ndarray
    """(N, 1, 3) degree-0 SH coefficients."""
    shN: np.ndarray
    """(N, K, 3) higher SH coefficients (K = (degree + 1)^2 - 1; may be 0)."""

    def __len__(self) -> int:
        return len(self.means)

    @property
    def rgb(self) -> np.ndarray:
        """(N, 3) base colour in [0, 1] from the degree-0 coefficients."""
        return np.clip(self.sh0[:, 0] * SH_C0 + 0.5, 0.0, 1.0)

    @property
    def opacity(self) -> np.ndarray:
        """(N,) opacity in [0, 1]."""
        return 1.0 / (1.0 + np.exp(-self.opacities))


def sh_degree_of(splats: Splats) -> int:
    """The SH degree ``d`` of ``splats``: ``shN`` holds ``(d + 1)^2 - 1`` coefficients per channel."""
    k = splats.shN.shape[1] if splats.shN.ndim == 3 else 0
    d = int(round(np.sqrt(k + 1))) - 1
    if (d + 1) ** 2 - 1 != k:
        raise UserError(f"{k} higher SH coefficients per channel is no SH degree ((d + 1)^2 - 1)")
    return d


def with_sh_degree(splats: Splats, degree: int) -> Splats:
    """``splats`` with SH degree ``degree``: higher coefficients zero-padded or dropped (a zero
    coefficient adds nothing, so a padded model renders the same image)."""
    if not 0 <= degree <= 4:
        raise UserError(f"SH degree {degree}: use 0 to 4")
    n, k = len(splats), (degree + 1) ** 2 - 1
    have = splats.shN.reshape(n, -1, 3)
    shN = np.zeros((n, k, 3), np.float32)
    shN[:, : min(k, have.shape[1])] = have[:, :k]
    return Splats(splats.means, splats.scales, splats.quats, splats.opacities, splats.sh0, shN)


def _names(k: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * k)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_splat_ply(path: Path | str, splats: Splats) -> Path:
    """Write splats as a standard 3DGS PLY, atomically; returns the path."""
    from recon3d.core.atomic import atomic_path

    n = len(splats)
    k = splats.shN.shape[1] if splats.shN.ndim == 3 else 0
    cols = [
        splats.means, np.zeros((n, 3)), splats.sh0.reshape(n, 3),
        np.transpose(splats.shN.reshape(n, k, 3), (0, 2, 1)).reshape(n, 3 * k),
        splats.opacities.reshape(n, 1), splats.scales, splats.quats,
    ]
    data = np.concatenate([np.asarray(c, dtype=np.float32).reshape(n, -1) for c in cols], axis=1)
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n"
    header += "".join(f"property float {name}\n" for name in _names(k)) + "end_header\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(data.astype("<f4").tobytes())
    return Path(path)


def read_compressed_ply(path: Path | str) -> Splats:
    """Read SuperSplat's compressed PLY (:mod:`recon3d.io.compressed_ply`) as :class:`Splats`."""
    d = decode_compressed_ply(path)
    n = len(d["means"])
    return Splats(means=d["means"], scales=d["scales"], quats=d["quats"], opacities=d["opacities"],
                  sh0=((d["rgb"] - 0.5) / SH_C0).reshape(n, 1, 3).astype(np.float32), shN=d["shN"])


def read_splat_ply(path: Path | str) -> Splats:
    """Read a standard 3DGS PLY (binary little-endian, float properties), or a compressed one
    (:mod:`recon3d.io.compressed_ply`, decoded)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such splat file; train one with `recon3d train WS --method splat`")
    if is_compressed_ply(path):
        return read_compressed_ply(path)
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise UserError(f"{path}: not a PLY file")
        names, n, fmt = [], 0, b""
        while True:
            line = f.readline()
            if not line:
                raise UserError(f"{path}: truncated PLY header")
            line = line.strip()
            if line.startswith(b"format"):
                fmt = line.split()[1]
            elif line.startswith(b"element vertex"):
                n = int(line.split()[2])
            elif line.startswith(b"property"):
                parts = line.split()
                if parts[1] not in (b"float", b"float32"):
                    raise UserError(f"{path}: property {parts[-1].decode()} is not float; not a 3DGS PLY")
                names.append(parts[-1].decode())
            elif line == b"end_header":
                break
        if fmt != b"binary_little_endian":
            raise UserError(f"{path}: PLY format {fmt.decode()} is not supported (need binary_little_endian)")
        raw = f.read()
    if len(raw) < n * len(names) * 4:
        fix = (f"rerun `recon3d train {path.parent.parent} --method splat --overwrite`" if path.parent.name == "splat"
               else "export it again")
        raise UserError(f"{path}: truncated PLY ({len(raw)} bytes for {n} splats); {fix}")
    data = np.frombuffer(raw[: n * len(names) * 4], dtype="<f4").reshape(n, len(names))
    col = {name: i for i, name in enumerate(names)}
    required = ["x", "y", "z", "f_dc_0", "opacity", "scale_0", "rot_0"]
    missing = [r for r in required if r not in col]
    if missing:
        raise UserError(f"{path}: missing properties {', '.join(missing)}; not a 3DGS PLY")

    def get(*keys: str) -> np.ndarray:
        return data[:, [col[k] for k in keys]].astype(np.float32)

    rest = sorted((k for k in col if k.startswith("f_rest_")), key=lambda s: int(s.split("_")[-1]))
    k = len(rest) // 3
    shN = get(*rest).reshape(n, 3, k).transpose(0, 2, 1) if k else np.zeros((n, 0, 3), np.float32)
    return Splats(
        means=get("x", "y", "z"),
        scales=get("scale_0", "scale_1", "scale_2"),
        quats=get("rot_0", "rot_1", "rot_2", "rot_3"),
        opacities=get("opacity")[:, 0],
        sh0=get("f_dc_0", "f_dc_1", "f_dc_2").reshape(n, 1, 3),
        shN=np.ascontiguousarray(shN),
    )
