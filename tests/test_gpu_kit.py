"""The GPU kit without a GPU: scripts/gpu_check.sh's plan and syntax, gsplat's GPU settings on the CPU path
(what the torch twin honours, ignores or refuses), and, opt-in, the dry run that downloads the bundles.

The dry run needs the package index, so CI does not run it: ``RECON3D_GPU_BUNDLE_TEST=1 pytest
tests/test_gpu_kit.py -k dry_run`` (a few minutes: it installs a fresh venv).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from recon3d.cli import main

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["scripts/gpu_check.sh", "scripts/gpu_bundle.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_plan_fits_in_nine_minutes():
    """Every step of gpu_check.sh has its own limit; the limits plus the kill grace add up to < 540 s."""
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), "--print-plan"], capture_output=True,
                          text=True, check=True)
    rows = [line.split() for line in proc.stdout.splitlines()]
    grace = int(dict((r[0], r[1]) for r in rows)["kill_grace"])
    steps = {r[0]: int(r[1]) for r in rows if r[0] != "kill_grace"}
    assert set(steps) == {"install", "compile", "tests", "run", "splat", "nerf"}
    assert all(limit > 0 for limit in steps.values())
    total = sum(steps.values()) + grace * len(steps)
    assert total < 540, steps


def test_bad_arguments_are_one_line():
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), "--frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--frobnicate" in proc.stderr
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), "--bundle", "/nonexistent"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "gpu_bundle.sh" in proc.stderr


def test_antialiased_twin_is_the_classic_one_with_compensated_opacities():
    """rasterize_mode='antialiased' on the torch twin = classic with each opacity times gsplat's own
    compensation sqrt(det(cov2d) / det(cov2d + eps2d I)) (gsplat's torch reference computes it)."""
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _quat_scale_to_covar_preci,
    )

    from recon3d.splat.rasterize import rasterize

    g = torch.Generator().manual_seed(2)
    n, w, h = 300, 40, 30
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([2.0, 1.5, 1.0]) + torch.tensor([0, 0, 4.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.002  # small ones: strong compensation
    opacities = torch.rand(n, generator=g) * 0.98 + 0.01
    colors = torch.rand(n, 3, generator=g)
    view = torch.eye(4)[None]
    K = torch.tensor([[35.0, 0, w / 2], [0, 35.0, h / 2], [0, 0, 1]])[None]
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    comp = _fully_fused_projection(means, covars, view, K, w, h, 0.3, 0.01, 1e10, calc_compensations=True)[4][0]
    assert float(comp.min()) < 0.5  # the test means something
    aa = rasterize(means, quats, scales, opacities, colors, view, K, w, h, backend="torch", rasterize_mode="antialiased")
    cl = rasterize(means, quats, scales, opacities * comp, colors, view, K, w, h, backend="torch")
    torch.testing.assert_close(aa[0], cl[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(aa[1], cl[1], atol=1e-5, rtol=1e-4)


TINY = ["--method", "splat-cpu", "--device", "cpu", "--steps", "4", "--set", "max_image_side=40",
        "--set", "report_views=0", "--set", "sky_points=0"]


def test_cpu_refuses_absgrad_and_ignores_memory_layouts(orbit_ws, capsys):
    """On the torch rasterizer: absgrad (changes the result) is refused with one line before any work;
    packed and sparse_grad (memory layouts, same images) are ignored with a note; metrics.json has the
    speed and (on CPU: no) peak GPU memory."""
    assert main(["train", str(orbit_ws.root), *TINY, "--set", "absgrad=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert "absgrad=true needs gsplat's CUDA rasterizer" in err and "\n" not in err
    assert main(["train", str(orbit_ws.root), *TINY, "--set", "sparse_grad=true"]) == 2
    assert "needs packed=true" in capsys.readouterr().err
    assert not (orbit_ws.splat / "metrics.json").exists()

    assert main(["train", str(orbit_ws.root), *TINY, "--set", "packed=true", "--set", "sparse_grad=true",
                 "--set", "rasterize_mode=antialiased"]) == 0
    assert "packed and sparse_grad: CUDA-only memory settings, ignored" in capsys.readouterr().err
    m = json.loads((orbit_ws.splat / "metrics.json").read_text())
    assert m["steps_per_s"] > 0 and m["peak_memory_bytes"] is None and m["rasterizer"] == "torch"


@pytest.mark.skipif(os.environ.get("RECON3D_GPU_BUNDLE_TEST") != "1",
                    reason="downloads the bundles from the package index: set RECON3D_GPU_BUNDLE_TEST=1")
def test_dry_run_bundles_install_and_fit():
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), "--dry-run"], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gpu_check --dry-run: ok" in proc.stdout
