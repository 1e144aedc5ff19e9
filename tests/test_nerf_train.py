"""NeRF training on the synthetic orbit scene (80x60, true poses), checked against its ground truth.

One CPU training run (module fixture, ~350 steps of the nerf-fast preset) serves the PSNR, depth,
output, monitor and render checks. Small separate runs check resume and bad input.
"""

from __future__ import annotations

import dataclasses
import json
import time

import cv2
import numpy as np
import pytest
import torch

from recon3d.cli import main
from recon3d.core.errors import UserError
from recon3d.nerf.checkpoint import stage_key
from recon3d.nerf.config import preset_nerf_fast
from recon3d.nerf.train import train
from recon3d.scenes import scene_workspace

STEPS = 350


def _config(**kw):
    # one thread: on a busy 2-core machine torch's second thread mostly spins (10x the CPU per step)
    return dataclasses.replace(preset_nerf_fast(), downscale=8.0, device="cpu", cpu_threads=1, **kw)


@pytest.fixture(scope="module")
def trained(orbit_scene, tmp_path_factory):
    ws = scene_workspace(orbit_scene, tmp_path_factory.mktemp("nerf") / "ws")
    events = []
    config = _config(steps=STEPS, monitor_every=25)
    t0 = time.perf_counter()
    train(config, ws, monitor=events.append)
    return ws, config, events, time.perf_counter() - t0


@pytest.mark.slow
def test_heldout_psnr(trained):
    ws, config, _, seconds = trained
    m = json.loads((ws.nerf / "metrics.json").read_text())
    print(f"held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f} after {m['steps']} steps, {seconds:.0f} s")
    assert m["split"] == "test" and m["num_test_views"] == 3 and m["num_train_views"] == 21
    assert [r["name"] for r in m["per_view"]] == ["view_000.png", "view_008.png", "view_016.png"]
    assert m["image_size"] == [80, 60] and m["steps"] == STEPS
    assert m["psnr"] >= 20.0
    assert min(r["psnr"] for r in m["per_view"]) >= 18.5
    assert m["ssim"] > 0.6
    assert m["history"][-1]["step"] == STEPS and m["rays_per_s"] > 0


@pytest.mark.slow
def test_outputs_marker_and_rerun_skips(trained, capsys):
    ws, config, _, _ = trained
    for p in (ws.nerf / "model.pt", ws.nerf / "config.yaml", ws.nerf / "metrics.json",
              ws.reports / "nerf_test_views.png", ws.reports / "nerf_depth.png"):
        assert p.is_file(), p
    assert cv2.imread(str(ws.reports / "nerf_test_views.png")).shape[0] >= 3 * 60
    assert ws.is_done("nerf", stage_key(config)) and ws.stage_info("nerf")["info"] == {"steps": STEPS}
    assert "steps: 350" in (ws.nerf / "config.yaml").read_text().replace("{", "").replace("}", "")
    mtime = (ws.nerf / "model.pt").stat().st_mtime_ns
    t0 = time.perf_counter()
    result = train(config, ws)
    assert time.perf_counter() - t0 < 10
    assert result.skipped and "already trained" in result.summary
    assert result.outputs["model"] == ws.nerf / "model.pt"
    assert (ws.nerf / "model.pt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_depth_matches_ground_truth(trained):
    """Weights of rays through the true surfaces peak at the true depth.

    Per 80x60 pixel the true z-depth is read from gt/depth (640x480) around the pixel centre; pixels
    whose 8x8 footprint spans a depth edge or sky are skipped. The peak of the final weights must lie
    within one first-level sample interval of the truth, and the median depth within 5 %.
    """
    from recon3d.io.dataset import load_scene
    from recon3d.nerf import sampling
    from recon3d.nerf.rays import image_rays
    from recon3d.nerf.train import load_trained

    ws, config, _, _ = trained
    model = load_trained(ws)
    view = load_scene(ws, 8.0).test[0]
    H, W = view.camera.height, view.camera.width
    gt = np.load(ws.gt / "depth" / "view_000.npy").reshape(H, 8, W, 8).transpose(0, 2, 1, 3)
    centre = gt[:, :, 3:5, 3:5].reshape(H, W, 4).mean(-1)
    block = gt.reshape(H, W, 64)
    finite = np.isfinite(block).all(-1)
    surface = finite & (np.ptp(np.where(finite[..., None], block, 0), axis=-1) < 0.05 * np.where(finite, centre, 1))
    assert surface.sum() > 0.5 * H * W
    o, d, zscale = image_rays(view.camera.K, view.cam_from_world, W, H)
    with torch.no_grad():
        outs = [model(o[i:i + 4096], d[i:i + 4096]) for i in range(0, len(o), 4096)]
    w = torch.cat([x["weights"] for x in outs])
    tb = torch.cat([x["t_bins"] for x in outs])
    k = w.argmax(-1, keepdim=True)
    t_peak = 0.5 * (tb.gather(-1, k) + tb.gather(-1, k + 1))[:, 0]
    # first-level (uniform) bins of each ray, and the one holding the true depth
    near, far = model.ray_bounds((o - model.center) / model.radius, d)
    s0 = sampling.uniform_bins(len(o), config.proposal_samples[0], False)
    t0 = sampling.t_from_s(s0, near, far, model.spacing) * model.radius
    t_true = torch.from_numpy(np.where(surface, centre, 1.0).reshape(-1)).float() / zscale
    j = torch.searchsorted(t0, t_true[:, None].contiguous()).clamp(1, t0.shape[1] - 1)
    interval = (t0.gather(-1, j) - t0.gather(-1, j - 1))[:, 0]
    peak_ok = ((t_peak - t_true).abs() <= interval).view(H, W).numpy()[surface]
    depth = (torch.cat([x["depth"] for x in outs]) * zscale).view(H, W).numpy()
    rel = np.abs(depth - centre)[surface] / centre[surface]
    print(f"peak within one interval: {peak_ok.mean():.3f} of {surface.sum()} pixels; "
          f"median depth error {np.median(rel):.4f} (relative), within 5 %: {(rel < 0.05).mean():.3f}")
    assert peak_ok.mean() > 0.75
    assert np.median(rel) < 0.03 and (rel < 0.05).mean() > 0.8


@pytest.mark.slow
def test_monitor_events(trained):
    _, _, events, _ = trained
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[0] == 25 and events[-1].done and events[-1].step == STEPS
    assert all(e.backend == "nerf" and e.total_steps == STEPS for e in events)
    assert {"loss", "psnr", "rays_per_s"} <= set(events[-2].metrics)
    K = np.array([[65.0, 0, 40.0], [0, 65.0, 30.0], [0, 0, 1]])
    from recon3d.geometry import cam_from_world_look_at

    pose = cam_from_world_look_at(np.array([4.0, 3.0, 3.0]), np.array([0.0, 0.0, 0.5]))  # a novel view
    img = events[-1].render(pose, K, 40, 30)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8


@pytest.mark.slow
def test_render_cli_orbit_and_interp(trained, tmp_path, capsys):
    ws = trained[0]
    rc = main(["render", str(ws.root), "--method", "nerf", "--frames", "4", "--downscale", "16",
               "--device", "cpu", "-o", str(tmp_path / "orbit.mp4")])
    assert rc == 0, capsys.readouterr().err
    cap = cv2.VideoCapture(str(tmp_path / "orbit.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 40
    cap.release()
    rc = main(["render", str(ws.root), "--path", "interp", "--frames", "3", "--downscale", "16",
               "--device", "cpu", "-o", str(tmp_path / "frames")])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:04d}.png" for i in range(3)]


def test_render_cli_without_model(orbit_ws, capsys):
    rc = main(["render", str(orbit_ws.root), "--frames", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "no trained NeRF" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------- resume and bad input
def _tiny(**kw):
    return _config(batch_rays=64, proposal_samples=[8, 8], nerf_samples=8, monitor_every=1, **kw)


class _StopAt:
    def __init__(self, step):
        self.step = step

    def __call__(self, event):
        if event.step == self.step:
            raise KeyboardInterrupt


def test_interrupt_resume_extend(orbit_ws, capsys):
    ws = orbit_ws
    with pytest.raises(KeyboardInterrupt):
        train(_tiny(steps=6), ws, monitor=_StopAt(3))
    assert (ws.nerf / "checkpoints" / "step_000003.pt").is_file()
    assert not (ws.nerf / "model.pt").exists() and not ws.is_done("nerf")
    result = train(_tiny(steps=6), ws)
    assert "resuming from step 3" in capsys.readouterr().err
    assert not result.skipped and result.outputs["folder"] == ws.nerf and "resumed from" in result.summary
    assert json.loads((ws.nerf / "metrics.json").read_text())["steps"] == 6
    assert ws.is_done("nerf", stage_key(_tiny(steps=6)))
    assert train(_tiny(steps=6), ws).skipped
    with pytest.raises(UserError, match="--overwrite"):
        train(_tiny(steps=4), ws)  # fewer steps than the finished run: refused
    with pytest.raises(UserError, match="--overwrite"):
        train(_tiny(steps=8, num_levels=4), ws)  # another architecture cannot resume
    assert ws.is_done("nerf")  # refusals leave the finished run as it was


def test_resumed_run_ends_where_an_uninterrupted_one_does(orbit_scene, orbit_ws, tmp_path):
    """Resume is exact: the per-step draws are seeded by the step, the optimiser and schedule restored."""
    config = _tiny(steps=6, checkpoint_every=2)
    train(config, orbit_ws)
    other = scene_workspace(orbit_scene, tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(config, other, monitor=_StopAt(3))
    assert not train(config, other).skipped
    a = torch.load(orbit_ws.nerf / "model.pt", weights_only=False)["model"]
    b = torch.load(other.nerf / "model.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), \
        [k for k in a if not torch.equal(a[k], b[k])]
    ma, mb = (json.loads((w.nerf / "metrics.json").read_text()) for w in (orbit_ws, other))
    assert (ma["psnr"], ma["ssim"]) == (mb["psnr"], mb["ssim"])


def test_more_steps_after_a_finished_run_train_on(orbit_ws, capsys):
    """The rule both backends share: a finished run asked for more steps resumes from its last checkpoint."""
    ws = orbit_ws
    assert not train(_tiny(steps=4), ws).skipped
    capsys.readouterr()
    result = train(_tiny(steps=7), ws)  # more steps: continues from the step-4 checkpoint
    assert "resuming from step 4" in capsys.readouterr().err and not result.skipped
    metrics = json.loads((ws.nerf / "metrics.json").read_text())
    assert metrics["steps"] == 7 and ws.stage_info("nerf")["info"] == {"steps": 7}

    def curve() -> list[int]:  # nerf/log.jsonl: every 25 steps and the last; a resumed run appends
        return [json.loads(line)["step"] for line in (ws.nerf / "log.jsonl").read_text().splitlines()]

    assert curve() == [4, 7]
    assert train(_tiny(steps=7), ws).skipped
    train(_tiny(steps=2, num_levels=4), ws, overwrite=True)
    assert [p.name for p in (ws.nerf / "checkpoints").iterdir()] == ["step_000002.pt"]
    assert curve() == [2]


def _cli_error(argv, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_input(orbit_ws, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no COLMAP model" in _cli_error(["train", str(empty), "--method", "nerf-fast"], capsys)
    assert "steps: 0 is out of range" in _cli_error(["train", str(orbit_ws.root), "--method", "nerf-fast", "--steps", "0",
                                          "--device", "cpu"], capsys)
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in _cli_error(["train", str(orbit_ws.root), "--method", "nerf-fast", "--device", "cuda"],
                                           capsys)
    (orbit_ws.images / "view_005.png").unlink()
    err = _cli_error(["train", str(orbit_ws.root), "--method", "nerf-fast", "--device", "cpu"], capsys)
    assert "view_005.png" in err and "missing" in err
    assert not orbit_ws.nerf.exists() and not orbit_ws.is_done("nerf")


@pytest.mark.cuda
def test_cuda_compiled_fields_match_eager():
    """The torch.compile'd fields (CUDA fast path) give the eager values and gradients."""
    from recon3d.nerf.model import NerfModel
    from recon3d.nerf.scene import SceneFrame

    frame = SceneFrame(np.zeros(3), 1.0, 0.05, 100.0, "unbounded", np.array([[-2.0] * 3, [2.0] * 3]))
    model = NerfModel(preset_nerf_fast(), frame, 4).cuda()
    u = torch.rand(4096, 3, device="cuda")
    dirs = torch.nn.functional.normalize(torch.randn(4096, 3, device="cuda"), dim=-1)
    idx = torch.randint(0, 4, (4096,), device="cuda")
    eager = model.field(u, dirs, idx)
    g_eager = torch.autograd.grad(eager[0].sum() + eager[1].sum(), list(model.field.parameters()))
    model.enable_compile()
    comp = model._compiled["field"](u, dirs, idx)
    g_comp = torch.autograd.grad(comp[0].sum() + comp[1].sum(), list(model.field.parameters()))
    for a, b in zip(eager, comp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_eager, g_comp):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
