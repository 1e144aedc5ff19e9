"""Unit tests of the NeRF pieces against direct evaluations and closed forms (fast, CPU)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from recon3d import geometry
from recon3d.nerf import renderer, sampling
from recon3d.nerf.config import NerfConfig, preset_nerf, preset_nerf_fast
from recon3d.nerf.contraction import contract, ray_box_intersection, unit_cube_from_box
from recon3d.nerf.encoding import HASH_PRIMES, HashGrid, sh_basis
from recon3d.nerf.rays import image_rays, rays_from_pixels
from recon3d.nerf.scene import SceneFrame, focus_point, scene_frame

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------- hash grid
def _grid_loop(grid: HashGrid, u: torch.Tensor) -> torch.Tensor:
    """Direct evaluation: per point, per level, per corner, with Python-int hashing."""
    T = grid.table_size
    out = []
    for p in u.tolist():
        feats = []
        for level, res in enumerate(grid.resolutions):
            acc = torch.zeros(grid.features_per_level, dtype=torch.float64)
            base, frac = [], []
            for a in range(3):
                pos = p[a] * res
                i0 = min(int(math.floor(pos)), res - 1)
                base.append(i0)
                frac.append(pos - i0)
            for dx in (0, 1):
                for dy in (0, 1):
                    for dz in (0, 1):
                        i, j, k = base[0] + dx, base[1] + dy, base[2] + dz
                        w = ((frac[0] if dx else 1 - frac[0]) * (frac[1] if dy else 1 - frac[1])
                             * (frac[2] if dz else 1 - frac[2]))
                        if level < grid.num_dense:
                            f = grid.dense[level][0, :, k, j, i]
                        else:
                            h = ((i * HASH_PRIMES[0]) ^ (j * HASH_PRIMES[1]) ^ (k * HASH_PRIMES[2])) % T
                            f = grid.hashed[(level - grid.num_dense) * T + h]
                        acc = acc + w * f.double()
            feats.append(acc)
        out.append(torch.cat(feats))
    return torch.stack(out)


class TestHashGrid:
    def _grid(self):
        torch.manual_seed(0)
        grid = HashGrid(num_levels=5, features_per_level=2, log2_hashmap_size=10, base_resolution=3, max_resolution=40)
        with torch.no_grad():
            for p in grid.parameters():
                p.normal_()
        return grid

    def test_levels_dense_and_hashed(self):
        grid = self._grid()
        assert grid.resolutions[0] == 3 and grid.resolutions[-1] == 40
        assert 0 < grid.num_dense < grid.num_levels  # both storage kinds are exercised below

    def test_matches_loop_values_and_grads(self):
        grid = self._grid()
        u = torch.rand(40, 3, generator=torch.Generator().manual_seed(1))
        u[0] = torch.tensor([0.0, 1.0, 0.5])  # cube faces
        u[1] = torch.tensor([1.0, 1.0, 1.0])
        fast = grid(u)
        ref = _grid_loop(grid, u)
        assert fast.shape == (40, grid.output_dim)
        torch.testing.assert_close(fast.double(), ref, atol=1e-5, rtol=1e-5)
        weights = torch.randn(fast.shape, dtype=torch.float64)
        g_fast = torch.autograd.grad((fast.double() * weights).sum(), list(grid.parameters()))
        g_ref = torch.autograd.grad((ref * weights).sum(), list(grid.parameters()))
        for a, b in zip(g_fast, g_ref):
            torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=1e-5)

    def test_continuous_across_cells(self):
        grid = self._grid()
        u = torch.rand(100, 3, generator=torch.Generator().manual_seed(2))
        d = grid(u + 1e-6) - grid(u)
        assert d.abs().max() < 1e-2


def test_sh_basis_orthonormal():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    Y = sh_basis(d, 4)
    assert Y.shape == (len(d), 16)
    gram = 4 * math.pi * (Y.T @ Y) / len(d)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)
    assert sh_basis(d[:5], 2).shape == (5, 4)


# ------------------------------------------------------------------------------ contraction
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_contraction_identity_inside_bounded_outside(norm):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 3, generator=g, dtype=torch.float64)
    mag = x.norm(dim=-1) if norm == "l2" else x.abs().amax(-1)
    inside = x / mag[:, None] * torch.rand(5000, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(contract(inside, norm), inside)
    far = x * 10.0 ** torch.linspace(0, 8, 5000, dtype=torch.float64)[:, None]
    c = contract(far, norm)
    cm = c.norm(dim=-1) if norm == "l2" else c.abs().amax(-1)
    assert (cm < 2.0).all() and (cm >= 1.0 - 1e-12)[mag * 10 ** torch.linspace(0, 8, 5000, dtype=torch.float64) > 1].all()
    # continuous at the unit sphere, radially monotone, direction kept
    unit = x / mag[:, None]
    torch.testing.assert_close(contract(unit * (1 + 1e-9), norm), unit, atol=1e-8, rtol=0)
    r = torch.tensor([1.5, 3.0, 10.0, 1e6], dtype=torch.float64)
    cr = contract(unit[:1] * r[:, None], norm)
    crm = cr.norm(dim=-1) if norm == "l2" else cr.abs().amax(-1)
    assert (crm.diff() > 0).all() and abs(float(crm[-1]) - 2.0) < 1e-5
    torch.testing.assert_close(cr / crm[:, None], unit[:1].expand(4, 3))


def test_box_helpers():
    aabb = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 4.0]])
    u, inside = unit_cube_from_box(torch.tensor([[0.0, 0.0, 2.0], [2.0, 0.0, 1.0]]), aabb)
    torch.testing.assert_close(u[0], torch.tensor([0.5, 0.5, 0.5]))
    assert inside.tolist() == [True, False]
    t_in, t_out = ray_box_intersection(torch.tensor([[-5.0, 0.0, 2.0], [-5.0, 5.0, 2.0]]),
                                       torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), aabb)
    assert float(t_in[0]) == pytest.approx(4.0) and float(t_out[0]) == pytest.approx(6.0)
    assert float(t_out[1]) <= float(t_in[1])  # misses


# ------------------------------------------------------------------------------- rendering
def test_compositing_of_density_step_gives_analytic_transmittance():
    """Density 0 before t0 and sigma after: T(t) = exp(-sigma (t - t0)) past t0, 1 before."""
    t = torch.linspace(0.0, 4.0, 401, dtype=torch.float64)[None]  # edges; t0 = 1.5 is an edge
    sigma, t0 = 2.5, 1.5
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    density = torch.where(mid > t0, sigma, 0.0)
    w, trans = renderer.compositing_weights(density, t.diff(dim=-1))
    expected = torch.exp(-sigma * (t - t0).clamp_min(0))
    torch.testing.assert_close(trans, expected, atol=1e-12, rtol=1e-10)
    assert float(w.sum()) == pytest.approx(1 - math.exp(-sigma * (4.0 - t0)), abs=1e-12)
    # the first bin past the step carries the largest weight
    assert int(w.argmax()) == int((mid <= t0).sum())
    # compositing a constant colour over a black background scales it by the opacity
    rgb = renderer.composite(w, torch.full((1, 400, 3), 0.5, dtype=torch.float64))
    torch.testing.assert_close(rgb, torch.full((1, 3), 0.5 * float(w.sum()), dtype=torch.float64))


def test_pdf_bins_follow_weights():
    bins = torch.linspace(0, 1, 11).expand(3, -1).contiguous()
    w = torch.zeros(3, 10)
    w[:, 6] = 1.0
    for stratified in (False, True):
        new = sampling.pdf_bins(bins, w, 32, stratified, padding=1e-3, generator=torch.Generator().manual_seed(0))
        assert new.shape == (3, 33)
        assert (new.diff(dim=-1) >= 0).all()
        assert (new[:, 0] == 0).all() and (new[:, -1] == 1).all()
        mid = 0.5 * (new[:, 1:] + new[:, :-1])
        assert ((mid > 0.6) & (mid < 0.7)).float().mean() > 0.8


def test_spacing_roundtrip():
    t = torch.tensor([0.01, 0.5, 0.99, 1.0, 3.0, 1000.0])
    for kind in ("linear", "lindisp"):
        torch.testing.assert_close(sampling.spacing_inv(sampling.spacing_fn(t, kind), kind), t, rtol=1e-4, atol=1e-6)  # float32 near 1 - 1/2000
    s = torch.tensor([[0.0, 0.5, 1.0]])
    tt = sampling.t_from_s(s, torch.tensor([0.1]), torch.tensor([100.0]), "lindisp")
    torch.testing.assert_close(tt[:, [0, 2]], torch.tensor([[0.1, 100.0]]), rtol=1e-4, atol=1e-5)


def test_interlevel_loss():
    bins = torch.linspace(0, 1, 9).expand(2, -1).contiguous()
    w = torch.rand(2, 8, generator=torch.Generator().manual_seed(0))
    w = w / w.sum(-1, keepdim=True)
    assert float(renderer.interlevel_loss(bins, w, [(bins, w)])) == pytest.approx(0.0, abs=1e-7)
    coarse = bins[:, ::2].contiguous()  # 4 bins, each the union of two fine ones
    w_coarse = w.view(2, 4, 2).sum(-1)
    torch.testing.assert_close(renderer.outer_weights(bins, coarse, w_coarse), w_coarse.repeat_interleave(2, dim=1))
    assert float(renderer.interlevel_loss(bins, w, [(coarse, w_coarse)])) == pytest.approx(0.0, abs=1e-7)
    assert float(renderer.interlevel_loss(bins, w, [(coarse, 0.5 * w_coarse)])) > 0.01


def test_distortion_loss_matches_bruteforce():
    g = torch.Generator().manual_seed(0)
    bins = torch.sort(torch.rand(4, 13, generator=g, dtype=torch.float64), dim=-1).values
    w = torch.rand(4, 12, generator=g, dtype=torch.float64) / 6
    mid = 0.5 * (bins[:, 1:] + bins[:, :-1])
    brute = (w[:, :, None] * w[:, None, :] * (mid[:, :, None] - mid[:, None, :]).abs()).sum((1, 2))
    brute = brute + (w**2 * bins.diff(dim=-1)).sum(-1) / 3
    torch.testing.assert_close(renderer.distortion_loss(bins, w), brute.mean())
    # a compact weight distribution costs less than a spread one of equal mass
    one = torch.zeros(1, 12, dtype=torch.float64)
    one[0, 5] = 1.0
    spread = torch.full((1, 12), 1 / 12, dtype=torch.float64)
    assert renderer.distortion_loss(bins[:1], one) < renderer.distortion_loss(bins[:1], spread)


# ------------------------------------------------------------------------------------- rays
def test_rays_through_projected_points():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 161.3], [0, 310.0, 119.7], [0, 0, 1]])
    pose = geometry.cam_from_world_look_at(np.array([4.0, -3.0, 2.0]), np.zeros(3))
    X = rng.normal(size=(50, 3))
    uv = geometry.pixels_from_cam(K, geometry.transform_points(pose, X))
    o, d, zscale = rays_from_pixels(torch.tensor(K), torch.tensor(pose), torch.tensor(uv))
    o, d = o.numpy(), d.numpy()
    t = np.einsum("ij,ij->i", X - o, d)
    np.testing.assert_allclose(o + t[:, None] * d, X, atol=1e-9)
    z = geometry.transform_points(pose, X)[:, 2]
    np.testing.assert_allclose(t * zscale.numpy(), z, rtol=1e-9)
    # pixel (row 0, column 0) is sampled at its centre (0.5, 0.5)
    o2, d2, _ = image_rays(K, pose, 4, 3)
    assert d2.shape == (12, 3)
    c = geometry.transform_points(pose, (o2[0] + d2[0]).double().numpy()[None])[0]
    np.testing.assert_allclose(geometry.pixels_from_cam(K, c[None])[0], [0.5, 0.5], atol=1e-4)


# ------------------------------------------------------------------------------- scene frame
def _ring(n=12, radius=5.0, height=2.0, target=(0.0, 0.0, 0.5)):
    ang = 2 * np.pi * np.arange(n) / n
    eyes = np.stack([radius * np.cos(ang), radius * np.sin(ang), np.full(n, height)], 1)
    return geometry.cam_from_world_look_at(eyes, np.broadcast_to(np.array(target), eyes.shape))


def test_scene_frame_from_points_and_without():
    poses = _ring()
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, size=(500, 3)) + [0, 0, 0.5]
    f = scene_frame(poses, pts)
    assert f.mode == "unbounded" and np.linalg.norm(f.center - [0, 0, 0.5]) < 0.2
    assert 1.0 < f.radius < 1.8 and 0.5 < f.near < 4.0
    box = scene_frame(poses, pts, mode="object")
    assert (box.aabb[0] < (np.array([-1, -1, -0.5]) - box.center) / box.radius).all()
    # no points: the focus point of the optical axes
    np.testing.assert_allclose(focus_point(poses, np.zeros(3)), [0, 0, 0.5], atol=1e-2)
    nf = scene_frame(poses, np.zeros((0, 3)))
    np.testing.assert_allclose(nf.center, [0, 0, 0.5], atol=1e-2)
    assert nf.near > 0 and nf.far > nf.near
    assert SceneFrame.from_dict(nf.to_dict()).radius == nf.radius


# ---------------------------------------------------------------------- constructed surface
class _Slab(torch.nn.Module):
    """Density ``sigma`` where ``z_lo < z_world < z_hi`` inside the unit cube, as a field of grid coordinates."""

    def __init__(self, model, z_lo: float, z_hi: float, sigma: float):
        super().__init__()
        self.model, self.z_lo, self.z_hi, self.sigma = model, z_lo, z_hi, sigma

    def forward(self, u, dirs=None, image_idx=None):
        x = 4.0 * u - 2.0  # contracted model space = model space inside the unit cube
        z = x[:, 2] * self.model.radius + float(self.model.center[2])
        sigma = torch.where((z > self.z_lo) & (z < self.z_hi) & (x.abs().amax(-1) <= 1.0), self.sigma, 0.0)
        return sigma if dirs is None else (sigma, torch.full((len(u), 3), 0.3))


def test_weights_peak_at_known_surface():
    """Proposal sampling + compositing put the largest final weight on the bin holding the true depth.

    The final field is solid below the plane z = 0.3 (a known surface). The proposal fields are, as trained
    proposal fields are, a blurred version of it: a half-transparent 40 cm slab around the plane.
    """
    from recon3d.nerf.model import NerfModel

    cfg = preset_nerf_fast()
    frame = SceneFrame(center=np.zeros(3), radius=4.0, near=0.1, far=50.0, mode="unbounded",
                       aabb=np.array([[-2.0] * 3, [2.0] * 3]))
    model = NerfModel(cfg, frame, num_images=0)
    model.proposals = torch.nn.ModuleList([_Slab(model, 0.1, 0.5, 10.0), _Slab(model, 0.1, 0.5, 10.0)])
    model.field = _Slab(model, -100.0, 0.3, 1e5)
    K = np.array([[60.0, 0, 40.0], [0, 60.0, 30.0], [0, 0, 1]])
    pose = geometry.cam_from_world_look_at(np.array([3.0, 1.0, 2.5]), np.array([0.0, 0.0, 0.0]))
    o, d, zs = image_rays(K, pose, 80, 60)
    with torch.no_grad():
        out = model(o, d)
    t_true = (o[:, 2] - 0.3) / (-d[:, 2])
    p_hit = o + t_true[:, None] * d
    hit = (d[:, 2] < 0) & (p_hit.abs().amax(-1) < 0.8 * frame.radius)  # meeting the plane well inside the unit cube
    w, tb = out["weights"][hit], out["t_bins"][hit]
    k = w.argmax(-1, keepdim=True)
    lo, hi = tb.gather(-1, k)[:, 0], tb.gather(-1, k + 1)[:, 0]
    width = hi - lo
    tt = t_true[hit]
    assert hit.sum() > 1000
    assert (out["acc"][hit] > 0.99).all()
    assert ((tt >= lo - width) & (tt <= hi + width)).all()
    rel = ((out["depth"][hit] - tt) / tt).abs()
    assert float(rel.median()) < 0.01 and float(rel.max()) < 0.05


# ----------------------------------------------------------------------------------- config
def test_config_fields_documented_and_presets():
    from recon3d.core.config import field_docs
    from recon3d.core.registry import make_config

    docs = field_docs(NerfConfig)
    import dataclasses

    missing = [f.name for f in dataclasses.fields(NerfConfig) if not docs.get(f.name)]
    assert not missing
    for cfg in (preset_nerf(), preset_nerf_fast(), make_config("nerf"), make_config("nerf-fast")):
        assert isinstance(cfg.steps, int) and cfg.device == "auto"


def test_cli_modules_import_without_torch():
    code = ("import sys, recon3d.cli as c; c.build_parser(); import recon3d.cli.render, recon3d.cli.import_nerfstudio; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
