"""Export trained splats: the standard 3DGS ``point_cloud.ply`` (SH degree 3 by default), SuperSplat's
compressed PLY and the compact ``.splat`` format.

``.splat`` (the format of antimatter15's web viewer and the many viewers that read it) has no header;
each splat takes 32 bytes, little endian::

    position  float32 x3     scale  float32 x3 (linear, not log)
    colour    uint8 x4       (r, g, b from the degree-0 SH term, a = opacity), 0..255
    rotation  uint8 x4       quaternion w, x, y, z normalised, stored as q * 128 + 128

sorted by decreasing ``volume x opacity``; view-dependent colour (higher SH) is dropped. Both
writers are atomic. Used by ``recon3d export WS --format splat-ply|ply-compressed|splat [-o PATH]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon3d.core.atomic import atomic_write_bytes
from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.io.gaussians_ply import (
    Splats,
    read_splat_ply,
    sh_degree_of,
    with_sh_degree,
    write_splat_ply,
)

SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
"""One record of the ``.splat`` format (32 bytes)."""


def _trained_ply(ws: Workspace) -> Path:
    ply = ws.splat / "point_cloud.ply"
    if not ply.is_file():
        raise UserError(f"{ply}: no trained splats in this workspace; run `recon3d train {ws.root} --method splat` first")
    return ply


def splat_records(splats: Splats) -> np.ndarray:
    """``(N,)`` records of :data:`SPLAT_DTYPE`, sorted by decreasing volume x opacity."""
    order = np.argsort(-np.exp(splats.scales.sum(1)) * splats.opacity, kind="stable")
    rec = np.zeros(len(splats), SPLAT_DTYPE)
    rec["position"] = splats.means[order]
    rec["scale"] = np.exp(splats.scales[order])
    rgba = np.concatenate([splats.rgb[order], splats.opacity[order, None]], 1)
    rec["rgba"] = np.clip(np.round(rgba * 255), 0, 255)
    q = splats.quats[order] / np.maximum(np.linalg.norm(splats.quats[order], axis=1, keepdims=True), 1e-12)
    rec["rot"] = np.clip(np.round(q * 128 + 128), 0, 255)
    return rec


def read_splat_file(path: Path | str) -> np.ndarray:
    """``(N,)`` records of a ``.splat`` file (see :data:`SPLAT_DTYPE`)."""
    data = Path(path).read_bytes()
    if len(data) % SPLAT_DTYPE.itemsize:
        raise UserError(f"{path}: size {len(data)} is not a multiple of 32 bytes; not a .splat file")
    return np.frombuffer(data, SPLAT_DTYPE)


DEFAULT_SH_DEGREE = 3
"""SH degree of ``--format splat-ply`` unless told otherwise: INRIA's 3DGS loader asserts the 45 ``f_rest``
fields of degree 3 at its default setting, so a degree-1 model (the CPU preset) is zero-padded to it."""


def _sh_degree(splats: Splats, sh_degree: int | str | None) -> int:
    if sh_degree is None:
        return DEFAULT_SH_DEGREE
    if str(sh_degree) == "trained":
        return sh_degree_of(splats)
    try:
        return int(sh_degree)
    except ValueError:
        raise UserError(f"--sh-degree {sh_degree}: give 0, 1, 2, 3 or 'trained'") from None


def export_ply(workspace: Workspace, output: Path | None = None, sh_degree: int | str | None = None) -> Path:
    """The trained splats as a standard 3DGS PLY with SH degree ``sh_degree`` (default 3, zero-padded;
    ``"trained"``: the trained degree).

    Without ``output``: ``WS/splat/point_cloud.ply`` itself when it has that degree, else
    ``WS/splat/point_cloud_sh{D}.ply``.
    """
    ply = _trained_ply(workspace)
    splats = read_splat_ply(ply)
    degree = _sh_degree(splats, sh_degree)
    same = degree == sh_degree_of(splats)
    if output is None:
        output = ply if same else ply.with_name(f"point_cloud_sh{degree}.ply")
    output = Path(output)
    if output.is_dir():
        output = output / "point_cloud.ply"
    if same and output.resolve() == ply.resolve():
        return ply
    return write_splat_ply(output, with_sh_degree(splats, degree))


def export_compressed_ply(workspace: Workspace, output: Path | None = None) -> Path:
    """The trained splats as SuperSplat's compressed PLY (default ``WS/splat/point_cloud.compressed.ply``),
    written by gsplat's ``export_splats``; :func:`recon3d.io.compressed_ply.read_compressed_ply` reads it.

    About 16 bytes a splat plus one byte per higher SH coefficient; splats of opacity below 1/255 are left out.
    """
    import torch
    from gsplat import export_splats

    splats = read_splat_ply(_trained_ply(workspace))
    output = Path(output) if output is not None else workspace.splat / "point_cloud.compressed.ply"
    if output.is_dir():
        output = output / "point_cloud.compressed.ply"

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32))

    with np.errstate(all="ignore"):  # a chunk whose bounds coincide packs 0/0; any value decodes to the bound
        data = export_splats(t(splats.means), t(splats.scales), t(splats.quats), t(splats.opacities),
                             t(splats.sh0), t(splats.shN.reshape(len(splats), -1, 3)), format="ply_compressed")
    return atomic_write_bytes(output, data)


def export_splat(workspace: Workspace, output: Path | None = None) -> Path:
    """The trained splats as a ``.splat`` file (default ``WS/splat/scene.splat``)."""
    splats = read_splat_ply(_trained_ply(workspace))
    output = Path(output) if output is not None else workspace.splat / "scene.splat"
    if output.is_dir():
        output = output / "scene.splat"
    return atomic_write_bytes(output, splat_records(splats).tobytes())
