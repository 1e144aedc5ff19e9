"""Decoder of SuperSplat's compressed PLY (``*.compressed.ply``), the layout gsplat's ``export_splats(...,
format="ply_compressed")`` writes; ``recon3d export WS --format ply-compressed`` makes one.

Binary little-endian PLY with three elements::

    element chunk C      float min_x min_y min_z max_x max_y max_z
                               min_scale_x.. max_scale_z (log scales)  min_r.. max_b (base colour, 0..1)
    element vertex N     uint packed_position packed_rotation packed_scale packed_color
    element sh N         uchar f_rest_0 .. f_rest_(3K-1)           (optional; channel-major as in 3DGS)

Splat ``i`` belongs to chunk ``i // 256`` and is quantised within that chunk's bounds:

* position and log scale: 11, 10, 11 bits (x in bits 21..31, y 11..20, z 0..10), ``min + t * (max - min)``;
* colour: r, g, b, opacity as 8 bits each (r highest); r, g, b within the chunk's colour bounds
  (``colour = 0.5 + SH_C0 * f_dc``), opacity as the sigmoid itself in 0..1;
* rotation: "smallest three": bits 30..31 index the largest component of the unit quaternion (wxyz,
  made positive), the other three in bits 20..29, 10..19, 0..9 as ``v * sqrt(2) / 2 + 0.5`` in 10 bits;
* higher SH: ``(f_rest / 8 + 0.5) * 256`` truncated to a byte.

Decoding follows SuperSplat's reader (a byte ``b`` of SH is read back as ``((b + 0.5) / 256 - 0.5) * 8``).
About 16 bytes a splat plus the SH bytes, against 62 floats for a degree-3 standard PLY.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon3d.core.errors import UserError

CHUNK_SIZE = 256
"""Splats per chunk."""

_TYPES = {b"float": "<f4", b"float32": "<f4", b"uint": "<u4", b"uint32": "<u4", b"uchar": "u1", b"uint8": "u1",
          b"int": "<i4", b"int32": "<i4", b"double": "<f8", b"float64": "<f8", b"ushort": "<u2", b"short": "<i2",
          b"char": "i1", b"int8": "i1"}


def read_ply_elements(path: Path | str) -> dict[str, np.ndarray]:
    """All elements of a binary little-endian PLY with scalar properties, as structured arrays.

    Returns:
        element name -> ``(count,)`` structured array with one field per property, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such PLY file")
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise UserError(f"{path}: not a PLY file")
        elements: list[tuple[str, int, list[tuple[str, str]]]] = []
        fmt = b""
        while True:
            line = f.readline()
            if not line:
                raise UserError(f"{path}: truncated PLY header")
            parts = line.split()
            if not parts:
                continue
            if parts[0] == b"format":
                fmt = parts[1]
            elif parts[0] == b"element":
                elements.append((parts[1].decode(), int(parts[2]), []))
            elif parts[0] == b"property":
                if parts[1] == b"list" or parts[1] not in _TYPES or not elements:
                    raise UserError(f"{path}: unsupported PLY property {line.strip().decode(errors='replace')}")
                elements[-1][2].append((parts[2].decode(), _TYPES[parts[1]]))
            elif parts[0] == b"end_header":
                break
        if fmt != b"binary_little_endian":
            raise UserError(f"{path}: PLY format {fmt.decode()} is not supported (need binary_little_endian)")
        raw = f.read()
    out, offset = {}, 0
    for name, count, props in elements:
        dtype = np.dtype(props)
        size = dtype.itemsize * count
        if offset + size > len(raw):
            raise UserError(f"{path}: truncated PLY ({len(raw)} bytes of data; element {name} needs more); export it again")
        out[name] = np.frombuffer(raw, dtype, count, offset)
        offset += size
    return out


def is_compressed_ply(path: Path | str) -> bool:
    """Whether ``path`` starts like a compressed PLY (a ``chunk`` element in its header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"ply") and b"\nelement chunk " in head.split(b"end_header")[0]


def _unorm(packed: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((packed >> np.uint32(shift)) & np.uint32((1 << bits) - 1)).astype(np.float64) / ((1 << bits) - 1)


def _lerp(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + t * (hi - lo)


def unpack_111011(packed: np.ndarray) -> np.ndarray:
    """``(N,)`` uint32 -> ``(N, 3)`` values in [0, 1] (11, 10 and 11 bits)."""
    return np.stack([_unorm(packed, 21, 11), _unorm(packed, 11, 10), _unorm(packed, 0, 11)], axis=1)


def unpack_rotation(packed: np.ndarray) -> np.ndarray:
    """``(N,)`` uint32 -> ``(N, 4)`` unit quaternions, wxyz (the smallest-three code above)."""
    norm = 1.0 / (np.sqrt(2.0) * 0.5)
    small = np.stack([(_unorm(packed, s, 10) - 0.5) * norm for s in (20, 10, 0)], axis=1)
    largest = (packed >> np.uint32(30)).astype(np.int64)
    m = np.sqrt(np.clip(1.0 - (small ** 2).sum(1), 0.0, None))
    q = np.zeros((len(packed), 4))
    rows = np.arange(len(packed))
    q[rows, largest] = m
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    q[rows[:, None], others] = small
    return q


def decode_compressed_ply(path: Path | str) -> dict[str, np.ndarray]:
    """Decode a compressed PLY (:func:`recon3d.io.gaussians_ply.read_compressed_ply` makes ``Splats`` of it).

    Returns:
        ``means (N, 3)``, ``scales (N, 3)`` (log), ``quats (N, 4)`` (unit, wxyz), ``opacities (N,)``
        (logits), ``rgb (N, 3)`` (base colour, ``0.5 + SH_C0 * f_dc``) and ``shN (N, K, 3)`` (``K = 0``
        without an ``sh`` element), float32, splats in file order.
    """
    el = read_ply_elements(path)
    if "chunk" not in el or "vertex" not in el:
        raise UserError(f"{path}: not a compressed PLY (no chunk and vertex elements)")
    chunk, vertex = el["chunk"], el["vertex"]
    need = {"packed_position", "packed_rotation", "packed_scale", "packed_color"}
    if not need <= set(vertex.dtype.names or ()):
        raise UserError(f"{path}: vertex element lacks {', '.join(sorted(need - set(vertex.dtype.names or ())))}")
    n = len(vertex)
    if len(chunk) * CHUNK_SIZE < n:
        raise UserError(f"{path}: {len(chunk)} chunks cannot hold {n} splats; not a compressed PLY")
    ci = np.arange(n) // CHUNK_SIZE

    def bounds(*names: str) -> np.ndarray:
        return np.stack([chunk[k].astype(np.float64) for k in names], axis=1)[ci]

    means = _lerp(unpack_111011(vertex["packed_position"]), bounds("min_x", "min_y", "min_z"),
                  bounds("max_x", "max_y", "max_z"))
    scales = _lerp(unpack_111011(vertex["packed_scale"]), bounds("min_scale_x", "min_scale_y", "min_scale_z"),
                   bounds("max_scale_x", "max_scale_y", "max_scale_z"))
    color = vertex["packed_color"]
    rgb = _lerp(np.stack([_unorm(color, s, 8) for s in (24, 16, 8)], axis=1),
                bounds("min_r", "min_g", "min_b"), bounds("max_r", "max_g", "max_b"))
    alpha = np.clip(_unorm(color, 0, 8), 1e-6, 1 - 1e-6)
    shN = np.zeros((n, 0, 3))
    if "sh" in el and el["sh"].dtype.names:
        sh = el["sh"]
        names = sorted(sh.dtype.names, key=lambda s: int(s.split("_")[-1]))
        k = len(names) // 3
        b = np.stack([sh[name] for name in names[: 3 * k]], axis=1).astype(np.float64)
        shN = (((b + 0.5) / 256 - 0.5) * 8).reshape(n, 3, k).transpose(0, 2, 1)
    out = {"means": means, "scales": scales, "quats": unpack_rotation(vertex["packed_rotation"]),
           "opacities": np.log(alpha / (1 - alpha)), "rgb": rgb, "shN": shN}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
