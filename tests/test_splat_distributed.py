"""Data-parallel splat training over processes (torch.distributed, gloo on CPU) on the orbit scene.

Two processes with one view each per step must train the model a single process trains with
batches of two views: the same Gaussians on both ranks and the same held-out PSNR (within 0.3 dB;
on one machine it is the same to the last bit, the sums of two gradients being commutative).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recon3d.core.errors import UserError
from recon3d.core.registry import make_config
from recon3d.scenes import scene_workspace
from recon3d.splat.train import batch_views, train, view_order

REPO = Path(__file__).resolve().parents[1]

# splat-cpu at 80 x 60 px with the schedule compressed to 100 steps (densification every 20 until 70)
SHORT = {"steps": 100, "max_image_side": 80, "resolution_schedule": 40, "sh_degree_interval": 40,
         "refine_start": 20, "refine_every": 20, "refine_stop": 70, "sky_points": 200, "checkpoint_every": 1000,
         "report_views": 0}


def _config(**kw):
    return dataclasses.replace(make_config("splat-cpu"), device="cpu", **{**SHORT, **kw})


def _metrics(ws) -> dict:
    return json.loads((ws.splat / "metrics.json").read_text())


def test_batch_views_extend_the_single_view_order():
    assert [batch_views(s, 21, 0, 1)[0] for s in range(50)] == [view_order(s, 21, 0) for s in range(50)]
    assert batch_views(3, 21, 0, 2) == [view_order(6, 21, 0), view_order(7, 21, 0)]


def test_two_gloo_processes_match_one_process_with_the_same_batch(orbit_scene, tmp_path):
    """The acceptance check: 2 processes (1 view each per step) vs 1 process (batch of 2 views)."""
    single = scene_workspace(orbit_scene, tmp_path / "single")
    train(_config(batch_size=2), single)
    ref = _metrics(single)
    assert ref["processes"] == 1 and ref["batch_size"] == 2

    dp = scene_workspace(orbit_scene, tmp_path / "dp")
    result = train(_config(batch_size=2, procs=2), dp)
    got = _metrics(dp)
    assert got["processes"] == 2 and got["gaussians_per_process"] == [got["num_gaussians"] + got["cleanup_removed"]] * 2
    assert got["num_gaussians"] == ref["num_gaussians"] > 4000  # densification ran, the same way
    assert abs(got["psnr"] - ref["psnr"]) < 0.3, (got["psnr"], ref["psnr"])
    assert got["psnr"] > 18
    assert result.outputs["ply"].is_file() and not list(dp.splat.glob("*.tmp*"))
    # the process count does not identify the run: one process skips the finished run
    assert train(_config(batch_size=2), dp).skipped


def test_each_process_needs_a_view(orbit_ws):
    with pytest.raises(UserError, match="batch_size 1 is smaller than the 2 training processes"):
        train(_config(procs=2), orbit_ws)


@pytest.mark.slow
def test_sigterm_stops_every_process_and_the_rerun_resumes(orbit_ws, tmp_path):
    """SIGTERM to `recon3d train --procs 2`: rank 0 checkpoints the step reached, the worker goes too,
    exit 143; the same command resumes from the checkpoint."""
    args = [sys.executable, "-m", "recon3d", "train", str(orbit_ws.root), "--device", "cpu", "--method", "splat-cpu",
            "--procs", "2", *[x for k, v in {**SHORT, "steps": 60, "batch_size": 2}.items()
                              for x in ("--set", f"{k}={v}")]]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        while "2 processes), steps 0..60" not in log.read_text() and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    text = log.read_text()
    assert proc.returncode == 143, text[-2000:]
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1] == "recon3d train: stopped (SIGTERM); rerun the same command to resume"
    saved = sorted((orbit_ws.splat / "ckpt").glob("step_*.pt"))
    assert len(saved) == 1 and 0 < int(saved[0].stem.split("_")[1]) < 60
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert "recon3d-splat-rank" not in ps and str(orbit_ws.root) not in ps  # no worker left behind

    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resuming from {saved[0].name}" in proc.stderr
    metrics = _metrics(orbit_ws)
    assert metrics["resumed_from"] == int(saved[0].stem.split("_")[1]) and metrics["processes"] == 2


def test_procs_is_for_splat_only(orbit_ws, capsys):
    from recon3d.cli import main

    assert main(["train", str(orbit_ws.root), "--method", "nerf-fast", "--procs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["recon3d train: error: --procs: only splat methods train over several processes, not "
                   "nerf-fast; leave it out"]


@pytest.mark.slow
def test_torchrun_launch(orbit_ws):
    """`torchrun -m recon3d train`: rank 0 writes (and takes the lock), rank 1 only computes."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "recon3d",
            "train", str(orbit_ws.root), "--device", "cpu", "--method", "splat-cpu",
            *[x for k, v in {**SHORT, "steps": 30, "batch_size": 2}.items() for x in ("--set", f"{k}={v}")]]
    proc = subprocess.run(args, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("splat: done") == 1 and "Traceback" not in proc.stderr
    metrics = _metrics(orbit_ws)
    assert metrics["processes"] == 2 and metrics["gaussians_per_process"] == [metrics["num_gaussians"] + metrics["cleanup_removed"]] * 2
