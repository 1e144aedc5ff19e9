"""Soak: random kill -9 points across `recon3d sfm` and `recon3d train`, each followed by a rerun.

Every final result must equal the undisturbed run's (the same registered photos and poses for SfM,
the same Gaussians and held-out PSNR for splats) and no temporary file, staging folder or lock may
remain. The kill times are drawn (seeded) over the whole length of each command, process start-up
included, so they land in start-up, extraction, matching, mapping, writing, training and saving.
Bounded to :data:`BUDGET_S`: a slower machine exercises fewer kill points, but never fewer than
:data:`MIN_KILLS`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from recon3d.core.workspace import Workspace

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 270.0
"""Wall-time bound of the kill loop (the reference runs come before it)."""
KILLS = 20
MIN_KILLS = 12
SFM = ["--max-image-size", "320", "--threads", "1", "--seed", "0"]
TRAIN = ["--method", "splat-cpu", "--device", "cpu", "--steps", "60"] + [x for s in [
    "max_image_side=80", "resolution_schedule=20", "sh_degree_interval=20", "refine_start=10", "refine_every=10",
    "refine_stop=40", "sky_points=100", "checkpoint_every=10", "report_views=0"] for x in ("--set", s)]
LEFTOVER = re.compile(r"(^\..*\.tmp|\.tmp$|\.tmp\.|^\.sfm-staging$|^\.mapper\.|\.old\.|^\.recon3d\.lock$)")


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "recon3d", *map(str, args)]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _run(args: list[str]) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.monotonic() - t0


def _killed(args: list[str], after: float) -> None:
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _poses(ws: Workspace) -> dict[str, np.ndarray]:
    import pycolmap

    rec = pycolmap.Reconstruction(str(ws.model))
    return {im.name: np.asarray(im.cam_from_world().matrix()) for im in rec.images.values() if im.has_pose}


def _splat(ws: Workspace) -> tuple[int, float]:
    import json

    metrics = json.loads((ws.splat / "metrics.json").read_text())
    return metrics["num_gaussians"], metrics["psnr"]


def _leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if LEFTOVER.search(p.name)]


@pytest.fixture(scope="module")
def photos(orbit_scene, tmp_path_factory) -> Path:
    """Eight neighbouring orbit views at 320x240: a set SfM reconstructs in a few seconds."""
    out = tmp_path_factory.mktemp("soak_photos")
    for i in range(8):
        name = f"view_{i:03d}.png"
        img = cv2.imread(str(orbit_scene / "images" / name))
        cv2.imwrite(str(out / name), cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA))
    return out


def test_random_kills_then_reruns_end_where_an_undisturbed_run_does(photos, tmp_path):
    ref = Workspace(tmp_path / "ref")
    t_sfm = _run(_cmd("sfm", photos, "-o", ref.root, *SFM))
    sfm_only = tmp_path / "sfm_only"
    shutil.copytree(ref.root, sfm_only)
    t_train = _run(_cmd("train", ref.root, *TRAIN))
    ref_poses, ref_splat = _poses(ref), _splat(ref)
    assert len(ref_poses) == 8 and not _leftovers(ref.root)

    rng = np.random.default_rng(0)
    start, done, stages = time.monotonic(), 0, []
    for k in range(KILLS):
        if time.monotonic() - start > BUDGET_S:
            break
        stage = "sfm" if k % 2 == 0 else "train"
        ws = Workspace(tmp_path / f"ws{k}")
        if stage == "sfm":
            args = _cmd("sfm", photos, "-o", ws.root, *SFM)
            after = rng.uniform(0.05, 1.0) * t_sfm
        else:
            shutil.copytree(sfm_only, ws.root)
            args = _cmd("train", ws.root, *TRAIN)
            after = rng.uniform(0.05, 1.0) * t_train
        _killed(args, after)
        _run(args)  # the rerun finishes the stage
        if stage == "sfm":
            poses = _poses(ws)
            assert poses.keys() == ref_poses.keys(), (k, after)
            for name, T in poses.items():
                assert np.allclose(T, ref_poses[name], atol=1e-6), (k, after, name)
        else:
            gaussians, psnr = _splat(ws)
            assert gaussians == ref_splat[0] and abs(psnr - ref_splat[1]) < 0.1, (k, after, gaussians, psnr)
        assert not _leftovers(ws.root), (k, stage, after, _leftovers(ws.root))
        stages.append(stage)
        done += 1
        shutil.rmtree(ws.root)
    assert done >= MIN_KILLS, f"only {done} kill points in {BUDGET_S:.0f} s"
    assert {"sfm", "train"} <= set(stages)
