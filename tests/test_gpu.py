"""CUDA twins of the fast paths (all marked ``cuda``: skipped, with the reason, on a machine without a GPU).

Each checks a GPU code path against the CPU path that the rest of the suite proves on ground truth:
gsplat's MCMC relocation and strategy step against our torch twin, the default strategy's densification
on CUDA against the same step on the CPU, the NeRF field compiled and in bfloat16 against float32 eager,
short training runs of both backends reaching the CPU acceptance runs' held-out PSNR with the same steps,
the live viewer following a CUDA run, and ``recon3d run`` end to end on CUDA. (The rasterizer's twin test
is ``tests/test_splat_rasterize.py::test_cuda_matches_torch_twin``, the compiled-field one
``tests/test_nerf_train.py::test_cuda_compiled_fields_match_eager``.) Run them with
``pytest -m cuda`` or ``bash scripts/gpu_check.sh`` (which builds gsplat's kernels first).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
from contextlib import redirect_stdout

import pytest
import torch

pytestmark = pytest.mark.cuda


def _params(n: int, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    raw = {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.rand(n, 3, generator=g) * 3 - 5,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.rand(n, generator=g) * 8 - 6,  # some below the MCMC / prune threshold
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.randn(n, 3, 3, generator=g),
    }
    return {k: torch.nn.Parameter(v.to(device)) for k, v in raw.items()}


def _optimizers(params: dict) -> dict:
    opts = {k: torch.optim.Adam([{"params": [p], "lr": 1e-3, "name": k}], eps=1e-15) for k, p in params.items()}
    for p in params.values():  # one step, so that the optimizers hold state the strategies must edit
        p.grad = torch.ones_like(p) * 1e-3
    for o in opts.values():
        o.step()
        o.zero_grad(set_to_none=True)
    return opts


def test_mcmc_relocation_matches_gsplat_kernel():
    """Eq. 9 of 3DGS-MCMC: our torch twin against gsplat's CUDA ``compute_relocation``."""
    from gsplat.relocation import compute_relocation
    from gsplat.strategy import MCMCStrategy

    from recon3d.splat.strategy import _compute_relocation

    binoms = MCMCStrategy().initialize_state()["binoms"].cuda()
    g = torch.Generator().manual_seed(1)
    opacities = (torch.rand(5000, generator=g) * 0.98 + 0.01).cuda()
    scales = (torch.rand(5000, 3, generator=g) * 0.1 + 1e-3).cuda()
    ratios = torch.randint(1, binoms.shape[0] + 1, (5000,), generator=g).cuda()
    o_ref, s_ref = compute_relocation(opacities, scales, ratios.int(), binoms)
    o, s = _compute_relocation(opacities, scales, ratios, binoms)
    torch.testing.assert_close(o, o_ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(s, s_ref, rtol=1e-3, atol=1e-7)


def test_mcmc_strategy_step_matches_gsplat():
    """A whole refine step (relocate the dead, add 5 %, perturb the transparent) of TorchMCMCStrategy and
    gsplat's MCMCStrategy on CUDA, from the same seed: the same Gaussians and optimizer state."""
    from gsplat.strategy import MCMCStrategy

    from recon3d.splat.strategy import TorchMCMCStrategy

    out = []
    for cls in (MCMCStrategy, TorchMCMCStrategy):
        params = _params(3000, "cuda")
        opts = _optimizers(params)
        strategy = cls(cap_max=3100, refine_start_iter=0, refine_every=100, min_opacity=0.005)
        state = strategy.initialize_state()
        torch.manual_seed(7)
        strategy.step_post_backward(params, opts, state, 100, {}, lr=1e-4)
        out.append(({k: v.detach().clone() for k, v in params.items()},
                    {k: o.state[o.param_groups[0]["params"][0]]["exp_avg"].clone() for k, o in opts.items()}))
    (p_ref, m_ref), (p, m) = out
    assert len(p["means"]) == len(p_ref["means"]) == 3100  # capped
    for k in p_ref:
        torch.testing.assert_close(p[k], p_ref[k], rtol=1e-3, atol=1e-5, msg=k)
        torch.testing.assert_close(m[k], m_ref[k], msg=k)


def test_default_strategy_densification_on_cuda_matches_cpu():
    """gsplat's DefaultStrategy as recon3d drives it (clone, split, prune, our opacity reset), on CUDA and
    on the CPU from the same gradients: the same decisions and the same Gaussians (split ones' centres are
    random draws: only their count is compared)."""
    from recon3d.splat.config import SplatConfig
    from recon3d.splat.strategy import after_backward, make_strategy

    config = SplatConfig(refine_start=0, refine_every=100, reset_every=3000, grow_grad2d=0.0002)
    g = torch.Generator().manual_seed(3)
    n = 4000
    grad = torch.rand(1, n, 2, generator=g) * 2e-4
    radii = (torch.rand(1, n, 2, generator=g) * 10).int()
    out = []
    for device in ("cpu", "cuda"):
        params = _params(n, device, seed=4)
        opts = _optimizers(params)
        strategy, state = make_strategy(config, 1.0, torch.device(device))
        means2d = torch.zeros(1, n, 2, device=device, requires_grad=True)
        means2d.grad = grad.to(device)
        info = {"means2d": means2d, "radii": radii.to(device), "width": 64, "height": 48, "n_cameras": 1,
                "gaussian_ids": None}
        torch.manual_seed(0)
        after_backward(strategy, params, opts, state, 100, info, 1e-4)
        out.append({k: v.detach().cpu() for k, v in params.items()})
    cpu, cuda = out
    assert len(cpu["means"]) == len(cuda["means"]) != n  # it grew / pruned, identically
    for k in cpu:
        a, b = cpu[k], cuda[k]
        if k == "means":  # split children are appended at the end, at random positions
            same = torch.isclose(a, b, rtol=1e-5, atol=1e-6).all(-1)
            assert same.float().mean() > 0.5, "fewer than half of the centres agree"
            continue
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_nerf_field_compiled_bfloat16_matches_float32_eager():
    """The NeRF training fast path (torch.compile + bfloat16 autocast) against float32 eager: values within
    bfloat16's precision, gradients pointing the same way."""
    import numpy as np

    from recon3d.nerf.config import preset_nerf_fast
    from recon3d.nerf.model import NerfModel
    from recon3d.nerf.scene import SceneFrame

    frame = SceneFrame(np.zeros(3), 1.0, 0.05, 100.0, "unbounded", np.array([[-2.0] * 3, [2.0] * 3]))
    torch.manual_seed(0)
    model = NerfModel(preset_nerf_fast(), frame, 4).cuda()
    u = torch.rand(8192, 3, device="cuda")
    dirs = torch.nn.functional.normalize(torch.randn(8192, 3, device="cuda"), dim=-1)
    idx = torch.randint(0, 4, (8192,), device="cuda")
    params = list(model.field.parameters())
    eager = model.field(u, dirs, idx)
    g_eager = torch.autograd.grad(eager[0].float().sum() + eager[1].float().sum(), params)
    model.enable_compile()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast = model._compiled["field"](u, dirs, idx)
    g_fast = torch.autograd.grad(fast[0].float().sum() + fast[1].float().sum(), params, allow_unused=True)
    for a, b in zip(eager, fast):
        a, b = a.float(), b.float()
        assert float((a - b).abs().max()) <= 0.05 * float(a.abs().max()) + 1e-3
    for a, b in zip(g_eager, g_fast):
        if b is None or float(a.norm()) == 0:
            continue
        assert float(torch.nn.functional.cosine_similarity(a.flatten(), b.float().flatten(), dim=0)) > 0.98


def test_splat_training_on_cuda_reaches_the_cpu_runs_psnr(orbit_scene, tmp_path):
    """The CPU acceptance run (`--method splat-cpu`, 500 steps, >= 25 dB held-out) on CUDA with gsplat's
    rasterizer: the same steps reach the same bar; metrics.json records steps/s and peak GPU memory."""
    from recon3d.cli import main
    from recon3d.scenes import scene_workspace

    ws = scene_workspace(orbit_scene, tmp_path / "orbit")
    assert main(["train", str(ws.root), "--method", "splat-cpu", "--device", "cuda"]) == 0
    m = json.loads((ws.splat / "metrics.json").read_text())
    print(f"orbit 160x120 splat-cpu on CUDA: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, {m['train_seconds']:.1f} s, "
          f"{m['steps_per_s']:.0f} steps/s, peak {m['peak_memory_bytes'] / 2**20:.0f} MiB, {m['num_gaussians']} Gaussians")
    assert m["device"] == "cuda" and m["rasterizer"] == "cuda" and m["resolution"] == [160, 120]
    assert m["psnr"] >= 25.0 and m["ssim"] > 0.9, m
    assert m["steps_per_s"] > 0 and m["peak_memory_bytes"] > 0


@pytest.mark.parametrize("settings", [["packed=true", "sparse_grad=true"],
                                      ["rasterize_mode=antialiased", "absgrad=true", "grow_grad2d=0.0008"]])
def test_splat_gpu_settings_train(orbit_scene, tmp_path, settings):
    """gsplat's GPU settings (packed + sparse gradients with SparseAdam; antialiased + AbsGS) train the
    CPU acceptance run to a sound model (its bar is 25 dB with the defaults; these change the optimiser or
    the densification, so the bar here is looser), and renders after training use the same mode."""
    from recon3d.cli import main
    from recon3d.io.dataset import load_scene
    from recon3d.scenes import scene_workspace
    from recon3d.splat.render import load_renderer

    ws = scene_workspace(orbit_scene, tmp_path / "orbit")
    args = [x for s in settings for x in ("--set", s)]
    assert main(["train", str(ws.root), "--method", "splat-cpu", "--device", "cuda", *args]) == 0
    m = json.loads((ws.splat / "metrics.json").read_text())
    assert m["rasterizer"] == "cuda" and m["psnr"] >= 22.0, m
    view = m["views"][0]
    scene = load_scene(ws, downscale=4.0, test_every=8)
    test = next(v for v in scene.test if v.name == view["name"])
    img = load_renderer(ws, device="cuda")(test.cam_from_world, test.camera.K, test.camera.width, test.camera.height)
    mse = float(((img / 255.0 - test.image) ** 2).mean())
    assert -10 * math.log10(mse) == pytest.approx(view["psnr"], abs=0.1)


def test_nerf_training_on_cuda_reaches_the_cpu_runs_psnr(orbit_scene, tmp_path):
    """tests/test_nerf_train.py's CPU run (nerf-fast, 80x60, 350 steps, >= 20 dB held-out) on CUDA with the
    fast path on (torch.compile, bfloat16): the same steps reach the same bar."""
    from recon3d.nerf.config import preset_nerf_fast
    from recon3d.nerf.train import train
    from recon3d.scenes import scene_workspace

    ws = scene_workspace(orbit_scene, tmp_path / "orbit")
    config = dataclasses.replace(preset_nerf_fast(), downscale=8.0, device="cuda", steps=350)
    assert config.compile and config.mixed_precision
    train(config, ws)
    m = json.loads((ws.nerf / "metrics.json").read_text())
    print(f"orbit 80x60 nerf-fast on CUDA: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, {m['train_seconds']:.1f} s, "
          f"{m['steps_per_s']:.1f} steps/s, peak {(m['peak_memory_bytes'] or 0) / 2**20:.0f} MiB")
    assert m["device"].startswith("cuda") and m["image_size"] == [80, 60] and m["steps"] == 350
    assert m["psnr"] >= 20.0 and min(r["psnr"] for r in m["per_view"]) >= 18.5 and m["ssim"] > 0.6, m
    assert m["peak_memory_bytes"] > 0


@pytest.mark.parametrize("method", ["splat-cpu", "nerf-fast"])
def test_live_viewer_follows_a_cuda_training_run(orbit_ws, method):
    """`train --view` on CUDA: the run's events reach the live viewer (panel, curves, final splats)."""
    from recon3d.core import registry
    from recon3d.viewer.live import LiveViewer

    config = registry.make_config(method)
    if method == "splat-cpu":
        config = dataclasses.replace(config, device="cuda", steps=60, max_image_side=80, log_every=5, report_views=0)
    else:
        config = dataclasses.replace(config, device="cuda", steps=40, downscale=8.0, batch_rays=1024, monitor_every=5,
                                     report_views=0, compile=False)  # compiling is tested above; it takes a while
    events = []
    lv = LiveViewer(orbit_ws, port=0, quiet=True)
    try:
        registry.stage_function(method)(config, orbit_ws, monitor=lambda e: (events.append(e), lv(e)))
    finally:
        lv.close()
    backend = method.split("-")[0]
    metrics = json.loads((orbit_ws.root / backend / "metrics.json").read_text())
    assert events[-1].done and events[-1].step == config.steps
    assert f"**{backend}** finished: step {config.steps} / {config.steps}" in lv.status.content
    assert f"| held-out PSNR | {metrics['psnr']:.2f} dB |" in lv.status.content
    assert lv.errors == []
    if backend == "splat":
        assert lv.splat_uploads == 1 and lv.app.layers["splats"].shown == metrics["num_gaussians"]


def test_run_end_to_end_on_cuda(orbit_scene, tmp_path):
    """`recon3d run` (SfM, evaluation, splat training) with the training on CUDA."""
    from recon3d.cli import main

    root = tmp_path / "ws"
    shutil.copytree(orbit_scene, root)
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["run", "-o", str(root), "--train", "splat-cpu", "--train-device", "cuda",
                   "--max-image-size", "400", "--max-features", "2048"])
    out = buf.getvalue()
    assert rc == 0, out
    assert "sfm: 24/24 photos registered" in out and "splat: done" in out
    m = json.loads((root / "splat" / "metrics.json").read_text())
    assert m["device"] == "cuda" and m["rasterizer"] == "cuda"
    assert m["psnr"] >= 22.0, m  # SfM poses, not the true ones
