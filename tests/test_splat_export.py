"""SuperSplat's compressed PLY (gsplat writes it, recon3d.io.compressed_ply reads it) and SH padding,
on splats with known values (no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon3d.core.errors import UserError
from recon3d.io.compressed_ply import unpack_rotation
from recon3d.io.gaussians_ply import (
    Splats,
    read_compressed_ply,
    read_splat_ply,
    sh_degree_of,
    with_sh_degree,
    write_splat_ply,
)


def _random_splats(n: int, degree: int, seed: int = 0) -> Splats:
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2 - 1
    return Splats(means=rng.uniform(-2, 3, (n, 3)).astype(np.float32),
                  scales=rng.uniform(-6, -1, (n, 3)).astype(np.float32),
                  quats=rng.normal(size=(n, 4)).astype(np.float32),
                  opacities=rng.uniform(-3, 4, n).astype(np.float32),
                  sh0=rng.uniform(-1.5, 1.5, (n, 1, 3)).astype(np.float32),
                  shN=rng.uniform(-0.5, 0.5, (n, k, 3)).astype(np.float32))


def test_compressed_ply_round_trip(tmp_path):
    """Each value comes back within its quantisation step: 11/10/11 bits of the chunk's bounds for
    positions and log scales, 8 bits for colour and opacity, 10 bits for rotations, 8/256 for SH."""
    from gsplat import export_splats

    s = _random_splats(1000, 1)
    path = tmp_path / "x.compressed.ply"
    t = torch.as_tensor
    path.write_bytes(export_splats(t(s.means), t(s.scales), t(s.quats), t(s.opacities), t(s.sh0), t(s.shN),
                                   format="ply_compressed"))
    back = read_splat_ply(path)  # read_splat_ply recognises the compressed layout
    assert len(back) == 1000 and back.shN.shape == (1000, 3, 3)
    # gsplat sorts the splats (Morton order): match them by position
    d = np.linalg.norm(back.means[:, None] - s.means[None], axis=2)
    idx = d.argmin(1)
    assert sorted(idx.tolist()) == list(range(1000))
    src = Splats(*(a[idx] for a in (s.means, s.scales, s.quats, s.opacities, s.sh0, s.shN)))
    assert np.abs(back.means - src.means).max() < 5.0 / 1023  # extent 5 over 10 bits (coarsest axis)
    assert np.abs(back.scales - src.scales).max() < 5.0 / 1023
    q = src.quats / np.linalg.norm(src.quats, axis=1, keepdims=True)
    assert np.abs(np.abs((back.quats * q).sum(1)) - 1).max() < 1e-4  # the same rotation (q or -q)
    assert np.allclose(back.opacity, src.opacity, atol=1 / 255 + 1e-6)
    assert np.allclose(back.rgb, src.rgb, atol=1 / 255 + 1e-6)
    assert np.abs(back.shN - src.shN).max() <= 8 / 256 / 2 + 1e-6


def test_unpack_rotation_codes():
    # largest w (index 0), others zero: code 0 << 30 | 512 each (0.5 -> 0)
    code = np.array([(0 << 30) | (512 << 20) | (512 << 10) | 512, (3 << 30) | (512 << 20) | (512 << 10) | 512],
                    np.uint32)
    q = unpack_rotation(code)
    np.testing.assert_allclose(q, [[1, 0, 0, 0], [0, 0, 0, 1]], atol=2e-3)


def test_sh_padding(tmp_path):
    s = _random_splats(5, 1)
    assert sh_degree_of(s) == 1
    padded = with_sh_degree(s, 3)
    assert padded.shN.shape == (5, 15, 3) and np.array_equal(padded.shN[:, :3], s.shN) and not padded.shN[:, 3:].any()
    assert sh_degree_of(with_sh_degree(padded, 0)) == 0
    back = read_splat_ply(write_splat_ply(tmp_path / "p.ply", padded))
    assert np.array_equal(back.shN, padded.shN)
    with pytest.raises(UserError):
        with_sh_degree(s, 5)


def test_export_options_on_bad_input(tmp_path, capsys):
    from recon3d.cli import main

    (tmp_path / "ws" / "splat").mkdir(parents=True)
    write_splat_ply(tmp_path / "ws" / "splat" / "point_cloud.ply", _random_splats(300, 1))
    assert main(["export", str(tmp_path / "ws"), "--format", "splat", "--sh-degree", "3"]) == 2
    assert "--sh-degree applies to --format splat-ply" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "ws"), "--format", "splat-ply"]) == 0
    assert sh_degree_of(read_splat_ply(tmp_path / "ws" / "splat" / "point_cloud_sh3.ply")) == 3
    assert main(["export", str(tmp_path / "ws"), "--format", "ply-compressed"]) == 0
    assert len(read_compressed_ply(tmp_path / "ws" / "splat" / "point_cloud.compressed.ply")) <= 300
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement chunk 1\nproperty float min_x\n"
                                       b"element vertex 300\nproperty uint packed_position\nend_header\n")
    with pytest.raises(UserError, match="truncated"):
        read_compressed_ply(tmp_path / "bad.ply")
