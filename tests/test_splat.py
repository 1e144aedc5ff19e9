"""The splat stage end to end on the synthetic orbit scene (CPU): held-out PSNR, outputs, export,
reload, resume after kill -9, and bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from recon3d.cli import main
from recon3d.core.config import from_dict, load_yaml
from recon3d.core.workspace import Workspace
from recon3d.io.gaussians_ply import SH_C0, Splats, read_splat_ply
from recon3d.scenes import scene_workspace
from recon3d.splat.checkpoint import stage_key

REPO = Path(__file__).resolve().parents[1]

# The CPU acceptance run: orbit at 1/4 resolution (160 x 120), ground-truth poses and points, the
# `splat-cpu` preset as it is (500 steps, see recon3d.splat.config.preset_splat_cpu).
ORBIT = ["--method", "splat-cpu"]
# A small run for the resume test: orbit at 1/8 resolution (80 x 60), checkpoints every 20 steps.
SMALL = ["--method", "splat-cpu", "--steps", "120"] + [x for s in [
    "max_image_side=80", "resolution_schedule=40", "sh_degree_interval=40", "refine_start=20", "refine_every=20",
    "refine_stop=80", "sky_points=200", "checkpoint_every=20", "report_views=1"] for x in ("--set", s)]


def _args(ws: Path, options: list[str]) -> list[str]:
    return ["train", str(ws), "--device", "cpu", *options]


def _cli(args: list[str], **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "recon3d", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)


def _config(ws: Workspace):
    from recon3d.splat.config import SplatConfig

    data = load_yaml(ws.splat / "config.yaml")
    return from_dict(SplatConfig, data)


@pytest.fixture(scope="module")
def trained(splat_cpu_ws) -> Workspace:
    """orbit (160 x 120) trained on CPU by `python -m recon3d train` (the acceptance run, once per session:
    ``splat_cpu_ws`` in conftest.py, shared with the browser tests)."""
    return splat_cpu_ws


@pytest.mark.slow
def test_orbit_cpu_reaches_25db_on_held_out_views(trained):
    metrics = json.loads((trained.splat / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["resolution"] == [160, 120]
    assert [v["name"] for v in metrics["views"]] == ["view_000.png", "view_008.png", "view_016.png"]
    assert metrics["psnr"] >= 25.0, metrics
    assert metrics["ssim"] > 0.9
    assert metrics["num_gaussians"] > 3000  # densification ran on the torch rasterizer
    # the end-of-training cleanup ran and says what it removed (Gaussians fewer than 2 training cameras see ...)
    assert metrics["cleanup_removed"] == metrics["cleanup"]["unseen"] + metrics["cleanup"]["huge_faint"] > 0
    for name in ("point_cloud.ply", "config.yaml", "metrics.json"):
        assert (trained.splat / name).is_file()
    # the last checkpoint stays, so that more --steps train on from it
    assert [p.name for p in (trained.splat / "ckpt").glob("step_*.pt")] == ["step_0000500.pt"]
    for name in ("000", "008", "016"):
        pic = cv2.imread(str(trained.reports / f"splat_test_view_{name}.png"))
        assert pic.shape == (120, 2 * 160 + 4, 3)
    assert trained.is_done("splat", stage_key(_config(trained)))
    assert trained.stage_info("splat")["info"] == {"steps": 500}


@pytest.mark.slow
def test_exported_ply_reloads_and_renders_the_same_image(trained):
    from recon3d.evaluate.images import psnr
    from recon3d.io.dataset import load_scene
    from recon3d.splat.evaluate import render_view
    from recon3d.splat.model import params_from_splats

    config = _config(trained)
    out = trained.root / "copy.ply"
    assert main(["export", str(trained.root), "--format", "splat-ply", "-o", str(out)]) == 0
    splats = read_splat_ply(out)
    original = read_splat_ply(trained.splat / "point_cloud.ply")
    assert len(splats) == json.loads((trained.splat / "metrics.json").read_text())["num_gaussians"]
    np.testing.assert_array_equal(splats.means, original.means)

    scene = load_scene(trained, downscale=4)
    view = scene.test[0]
    sh = min(config.steps // config.sh_degree_interval, config.sh_degree)
    params = params_from_splats(splats, "cpu")
    img = render_view(params, view, sh, torch.zeros(3), "torch", 16)
    # the render the training run saved (left half of the side-by-side picture, 8-bit)
    saved = cv2.cvtColor(cv2.imread(str(trained.reports / "splat_test_view_000.png")), cv2.COLOR_BGR2RGB)
    saved = torch.as_tensor(saved[:, :160].astype(np.float32) / 255)
    assert float(psnr(img, saved)) > 50
    # and it scores exactly what metrics.json says
    expect = json.loads((trained.splat / "metrics.json").read_text())["views"][0]["psnr"]
    assert float(psnr(img, torch.as_tensor(view.image))) == pytest.approx(expect, abs=1e-3)


@pytest.mark.slow
def test_splat_file_export(trained):
    from recon3d.splat.export import read_splat_file

    assert main(["export", str(trained.root), "--format", "splat"]) == 0
    path = trained.splat / "scene.splat"
    splats = read_splat_ply(trained.splat / "point_cloud.ply")
    assert path.stat().st_size == 32 * len(splats)
    rec = read_splat_file(path)
    top = int(np.argmax(np.exp(splats.scales.sum(1)) * splats.opacity))
    np.testing.assert_allclose(rec["position"][0], splats.means[top])
    np.testing.assert_allclose(rec["scale"][0], np.exp(splats.scales[top]), rtol=1e-6)


@pytest.mark.slow
def test_compressed_and_padded_exports_render_like_the_trained_model(trained, tmp_path):
    """`--format ply-compressed` (gsplat's writer, recon3d's reader) renders within 1 dB of the full PLY;
    `--format splat-ply` pads the degree-1 CPU model to degree 3 (45 f_rest, as INRIA's loader asserts)
    and renders the same image; `--sh-degree trained` keeps 9."""
    from recon3d.evaluate.images import psnr
    from recon3d.io.compressed_ply import read_ply_elements
    from recon3d.io.dataset import load_scene
    from recon3d.io.gaussians_ply import read_compressed_ply
    from recon3d.splat.evaluate import render_view
    from recon3d.splat.model import params_from_splats

    assert main(["export", str(trained.root), "--format", "ply-compressed", "-o", str(tmp_path / "c.ply")]) == 0
    assert main(["export", str(trained.root), "--format", "splat-ply", "-o", str(tmp_path / "sh3.ply")]) == 0
    assert main(["export", str(trained.root), "--format", "splat-ply", "--sh-degree", "trained",
                 "-o", str(tmp_path / "sh1.ply")]) == 0
    full = read_splat_ply(trained.splat / "point_cloud.ply")
    compressed = read_compressed_ply(tmp_path / "c.ply")
    assert (tmp_path / "c.ply").stat().st_size < (trained.splat / "point_cloud.ply").stat().st_size / 3
    assert len(full) - 100 < len(compressed) <= len(full)  # splats of opacity < 1/255 are left out
    fields = lambda path: [n for n in read_ply_elements(path)["vertex"].dtype.names if n.startswith("f_rest_")]  # noqa: E731
    assert len(fields(tmp_path / "sh3.ply")) == 45 and len(fields(tmp_path / "sh1.ply")) == 9

    view = load_scene(trained, downscale=4).test[0]
    gt = torch.as_tensor(view.image)

    def render(splats, degree):
        return render_view(params_from_splats(splats, "cpu"), view, degree, torch.zeros(3), "torch", 16)

    reference = render(full, 1)
    assert float(psnr(render(compressed, 1), gt)) > float(psnr(reference, gt)) - 1.0
    assert float(psnr(render(compressed, 1), reference)) > 35
    padded = read_splat_ply(tmp_path / "sh3.ply")
    assert float((render(padded, 3) - reference).abs().max()) < 1e-5


@pytest.mark.slow
def test_rerun_skips_a_finished_stage(trained, capsys):
    before = (trained.splat / "point_cloud.ply").stat().st_mtime_ns
    assert main(_args(trained.root, ORBIT)) == 0
    assert "already trained" in capsys.readouterr().out
    assert (trained.splat / "point_cloud.ply").stat().st_mtime_ns == before
    # other settings, or fewer steps, without --overwrite: refused, nothing touched
    for more in (["--set", "ssim_lambda=0.3"], ["--steps", "499"]):
        assert main(_args(trained.root, ORBIT + more)) == 2
        assert "--overwrite" in capsys.readouterr().err
    assert (trained.splat / "point_cloud.ply").stat().st_mtime_ns == before and trained.is_done("splat")


def test_splat_records_layout():
    from recon3d.splat.export import SPLAT_DTYPE, splat_records

    q = np.array([[1.0, 0, 0, 0], [0.0, 0, 0, 2.0]], np.float32)  # second: 180 deg about z, not unit
    splats = Splats(
        means=np.array([[1, 2, 3], [4, 5, 6]], np.float32),
        scales=np.log(np.array([[0.1, 0.1, 0.1], [1.0, 2.0, 0.5]], np.float32)),
        quats=q, opacities=np.array([0.0, 2.0], np.float32),
        sh0=((np.array([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]]) - 0.5) / SH_C0).reshape(2, 1, 3).astype(np.float32),
        shN=np.zeros((2, 0, 3), np.float32),
    )
    rec = splat_records(splats)
    assert SPLAT_DTYPE.itemsize == 32 and len(rec.tobytes()) == 64
    # sorted by volume x opacity: the second splat (volume 1, opacity 0.88) first
    np.testing.assert_allclose(rec["position"], [[4, 5, 6], [1, 2, 3]])
    np.testing.assert_allclose(rec["scale"][0], [1.0, 2.0, 0.5], rtol=1e-6)
    assert rec["rgba"][0].tolist() == [255, 0, 128, round(255 / (1 + math.exp(-2.0)))]
    assert rec["rgba"][1].tolist() == [51, 102, 153, 128]
    assert rec["rot"][0].tolist() == [128, 128, 128, 255] and rec["rot"][1].tolist() == [255, 128, 128, 128]


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(orbit_scene, tmp_path):
    """kill -9 a real `recon3d train` after a checkpoint, rerun, compare with a run never interrupted."""
    ref = scene_workspace(orbit_scene, tmp_path / "ref")
    proc = _cli(_args(ref.root, SMALL), timeout=600)  # a process like the others
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref_metrics = json.loads((ref.splat / "metrics.json").read_text())

    ws = scene_workspace(orbit_scene, tmp_path / "killed")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "recon3d", *_args(ws.root, SMALL)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = ws.splat / "ckpt"
    deadline = time.monotonic() + 300
    while not list(ckpt.glob("step_*.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = sorted(ckpt.glob("step_*.pt"))
    assert saved and not (ws.splat / "metrics.json").exists()

    proc = _cli(_args(ws.root, SMALL), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resuming from {saved[-1].name}" in proc.stderr and f"resumed from  {saved[-1].name}" in proc.stdout
    metrics = json.loads((ws.splat / "metrics.json").read_text())
    assert metrics["resumed_from"] == int(saved[-1].stem.split("_")[1]) > 0
    assert abs(metrics["psnr"] - ref_metrics["psnr"]) < 0.1, (metrics["psnr"], ref_metrics["psnr"])
    assert metrics["num_gaussians"] == ref_metrics["num_gaussians"]


def test_more_steps_after_a_finished_run_train_on(orbit_ws):
    """The rule both backends share: a finished run asked for more steps resumes from its last
    checkpoint; the same steps are skipped; fewer steps or other settings need --overwrite."""
    import dataclasses

    from recon3d.core.errors import UserError
    from recon3d.core.registry import make_config
    from recon3d.splat.train import train

    base = dataclasses.replace(make_config("splat-fast"), device="cpu", downscale=16, init_num_points=300,
                               report_views=0, refine_start=1000)

    def run(**kw):
        return train(dataclasses.replace(base, **kw), orbit_ws)

    first = run(steps=6)
    assert not first.skipped and first.outputs["ply"] == orbit_ws.splat / "point_cloud.ply"
    assert "resumed from" not in first.summary
    more = run(steps=10)
    assert not more.skipped and "resumed from  step_0000006.pt (step 6)" in more.summary
    metrics = json.loads((orbit_ws.splat / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["resumed_from"] == 6
    assert [p.name for p in (orbit_ws.splat / "ckpt").glob("step_*.pt")] == ["step_0000010.pt"]
    again = run(steps=10, device="auto")  # device and threads do not identify a run
    assert again.skipped and "already trained" in again.summary and again.outputs == more.outputs
    for other in ({"steps": 8}, {"steps": 12, "ssim_lambda": 0.5}):
        with pytest.raises(UserError, match="--overwrite"):
            run(**other)
    assert orbit_ws.is_done("splat") and orbit_ws.stage_info("splat")["info"] == {"steps": 10}
    assert not train(dataclasses.replace(base, steps=4), orbit_ws, overwrite=True).skipped


# ------------------------------------------------------------------------------------ bad input
def test_workspace_without_model(tmp_path, capsys):
    (tmp_path / "ws" / "images").mkdir(parents=True)
    assert main(["train", str(tmp_path / "ws"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no COLMAP model" in err and "Traceback" not in err
    assert main(["train", str(tmp_path / "missing")]) == 2
    assert "no such workspace" in capsys.readouterr().err


def test_export_before_training(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "splat"]) == 2
    assert "no trained splats" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_but_absent(orbit_ws, capsys):
    assert main(["train", str(orbit_ws.root), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA GPU" in err
    assert not orbit_ws.splat.exists()


def test_model_without_points_falls_back_to_random_init(orbit_ws, capsys):
    """A model with no 3D points: a warning, random initialisation, and a trained model anyway;
    also checks the monitor events a live viewer receives."""
    from recon3d.core.registry import make_config
    from recon3d.io.colmap import read_model, write_text_model
    from recon3d.splat.train import train

    model = read_model(orbit_ws.model)
    model.points, model.colors, model.point_ids = np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64)
    for im in model.images.values():
        im.points2D, im.point3D_ids = np.zeros((0, 2)), np.zeros(0, np.int64)
    shutil.rmtree(orbit_ws.model)
    write_text_model(model, orbit_ws.model)

    import dataclasses

    config = dataclasses.replace(make_config("splat-fast"), device="cpu", steps=20, downscale=16,
                                 init_num_points=500, log_every=5, report_views=0)
    events = []
    ply = train(config, orbit_ws, monitor=events.append).outputs["ply"]
    captured = capsys.readouterr()
    assert "warning: the model has no 3D points" in captured.err
    removed = json.loads((orbit_ws.splat / "metrics.json").read_text())["cleanup_removed"]
    assert 0 < removed < 250  # the random Gaussians that fewer than 2 training cameras see go at the end
    assert read_splat_ply(ply).means.shape == (500 - removed, 3)
    assert [e.step for e in events] == [5, 10, 15, 20, 20] and events[-1].done
    ev = events[1]
    assert set(ev.metrics) >= {"loss", "psnr", "num_gaussians", "steps_per_s"}
    img = ev.render(np.hstack([np.eye(3), [[0], [0], [6.0]]]), np.array([[30.0, 0, 16], [0, 30, 12], [0, 0, 1]]), 32, 24)
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    s = ev.splats()
    assert s["means"].shape == (500, 3) and s["rgbs"].shape == (500, 3) and s["quats_wxyz"].shape == (500, 4)


def test_config_fields_are_documented():
    import dataclasses

    from recon3d.core.config import field_docs
    from recon3d.core.registry import make_config
    from recon3d.splat.config import SplatConfig

    docs = field_docs(SplatConfig)
    assert {f.name for f in dataclasses.fields(SplatConfig)} <= set(docs)
    assert make_config("splat").strategy == "default" and make_config("splat-mcmc").strategy == "mcmc"
    assert make_config("splat-cpu").steps < make_config("splat-fast").steps < make_config("splat").steps


@pytest.mark.slow
def test_sigterm_keeps_a_checkpoint_and_the_rerun_resumes(orbit_ws, tmp_path):
    """`kill`/`timeout`/`docker stop` is handled like Ctrl-C: the step reached is saved, one line,
    exit 143 and no native stack trace; the same command then resumes from that checkpoint."""
    args = _args(orbit_ws.root, SMALL + ["--steps", "200", "--set", "checkpoint_every=1000"])  # later ones win
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "recon3d", *args], env=dict(os.environ, PYTHONPATH=str(REPO)),
                                stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        while "steps 0..200" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # some steps done, no checkpoint yet (every 1000)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    text = log.read_text()
    assert proc.returncode == 143, text[-2000:]
    assert "*** Aborted" not in text and "SIGTERM received" not in text and "Traceback" not in text
    assert text.strip().splitlines()[-1] == "recon3d train: stopped (SIGTERM); rerun the same command to resume"
    saved = sorted((orbit_ws.splat / "ckpt").glob("step_*.pt"))
    assert len(saved) == 1 and 0 < int(saved[0].stem.split("_")[1]) < 200
    assert not (orbit_ws.splat / "metrics.json").exists()

    proc = _cli(args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resuming from {saved[0].name}" in proc.stderr
    assert json.loads((orbit_ws.splat / "metrics.json").read_text())["resumed_from"] == int(saved[0].stem.split("_")[1])


def test_train_picks_its_method_like_run_and_forgets_a_deleted_model(orbit_ws, capsys):
    """`recon3d train WS` without --method picks what `recon3d run` picks (splat-cpu without a GPU); after
    WS/splat is deleted by hand, training with other settings starts afresh (the stale marker is cleared)."""
    from recon3d.pipeline import resolve_method
    from recon3d.splat.config import preset_splat_cpu

    tiny = ["--steps", "2", "--set", "report_views=1", "--set", "sky_points=0"]
    assert main(["train", str(orbit_ws.root), *tiny, "--set", "max_image_side=40"]) == 0
    expect = resolve_method("auto")
    assert expect == ("splat" if torch.cuda.is_available() else "splat-cpu")
    assert f"train: method {expect} " in capsys.readouterr().err
    if expect == "splat-cpu":
        assert _config(orbit_ws).lr_means == preset_splat_cpu().lr_means
    assert resolve_method("auto", "cpu") == "splat-cpu"

    shutil.rmtree(orbit_ws.splat)
    assert orbit_ws.stage_info("splat") is not None  # the marker of the deleted model is still there
    assert main(["train", str(orbit_ws.root), *tiny, "--set", "max_image_side=48"]) == 0
    captured = capsys.readouterr()
    assert "other settings" not in captured.err and "splat: done" in captured.out
    assert _config(orbit_ws).max_image_side == 48 and orbit_ws.stage_info("splat")["info"] == {"steps": 2}
