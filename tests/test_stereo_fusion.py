"""Stereo from an SfM workspace: pair selection, per-pair depth, consistency filter and TSDF fusion,
scored against the orbit scene's true surface (GT depth maps) and GT points."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon3d.cli import main
from recon3d.io.colmap import read_model
from recon3d.stereo.evaluate import GTViews, completeness, surface_distances
from recon3d.stereo.sfm_pairs import select_pairs


def test_select_pairs_takes_right_hand_ring_neighbours(orbit_ws):
    model = read_model(orbit_ws.model)
    pairs = select_pairs(model)
    assert len(pairs) == len(model.images)  # every view is the reference of one pair
    names = sorted(im.name for im in model.images.values())
    for p in pairs:
        i, j = names.index(p.left_name), names.index(p.right_name)
        assert (j - i) % len(names) in (1, len(names) - 1)  # an adjacent view on the ring
        assert 0.05 <= p.baseline_ratio <= 0.45 and p.angle_deg < 40 and p.shared_points >= 10
    assert len(select_pairs(model, max_pairs=6)) == 6


def test_surface_distance_is_zero_on_the_surface_and_an_upper_bound_off_it(orbit_ws):
    """The accuracy measure itself. GT points lie on the surface: ~0. Ground points lifted 5 cm (true
    distance 5 cm, away from the objects): at least 5 cm, since a ray through a point meets the
    surface no closer than the point's true distance, and at most 5 cm / sin(elevation) of the
    steepest camera (~3x at 20 degrees)."""
    gt = GTViews.load(orbit_ws.gt)
    d = surface_distances(gt.points[:500], gt)
    assert np.median(d) < 1e-3 and np.quantile(d, 0.95) < 5e-3
    ground = gt.points[(np.abs(gt.points[:, 2]) < 1e-9) & (np.linalg.norm(gt.points[:, :2], axis=1) > 3)][:300]
    lifted = surface_distances(ground + [0, 0, 0.05], gt)
    assert np.all(lifted >= 0.05 - 1e-3)
    assert np.median(lifted) < 0.15
    tri = np.array([[0, 1, 2]])
    far = completeness(gt.points[:10], np.array([[100.0, 0, 0], [101, 0, 0], [100, 1, 0]]), tri)
    assert np.all(far > 90)


@pytest.mark.slow
def test_workspace_stereo_fuses_an_accurate_complete_mesh(orbit_ws, capsys):
    """`recon3d stereo WS --pairs auto` on the orbit scene with its true model: the fused mesh's median
    accuracy is under 1 % of the scene extent and > 80 % of the GT points lie within that distance."""
    ws = orbit_ws
    assert main(["stereo", str(ws.root), "--pairs", "auto", "--voxel-size", "0.04"]) == 0
    out = capsys.readouterr().out
    assert "completeness" in out
    for f in ("mesh.ply", "fused.ply", "report.json", "report.md", "config.yaml"):
        assert (ws.stereo / f).is_file(), f
    assert len(list((ws.stereo / "depth").glob("*.npy"))) == 24
    report = json.loads((ws.stereo / "report.json").read_text())
    ev = report["evaluation"]
    assert ev["accuracy_median"] < 0.01 * ev["scene_extent"]
    assert ev["accuracy_median"] < 0.03  # a few cm on a 22 m scene: far tighter than the 1 % bar
    assert ev["completeness"] > 0.8 and ev["accurate_fraction"] > 0.85

    # per-pair depth maps are metric and in their rectified cameras: check one against the GT surface
    info = json.loads((ws.stereo / "pairs" / "view_000.json").read_text())
    depth = np.load(ws.stereo / "depth" / "view_000.npy")
    K, pose = np.array(info["K"]), np.array(info["cam_from_world"])
    v, u = np.nonzero(np.isfinite(depth))
    rays = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1], np.ones(len(u))], 1)
    world = (rays * depth[v, u, None] - pose[:, 3]) @ pose[:, :3]
    assert np.median(surface_distances(world[::20], GTViews.load(ws.gt))) < 0.03

    # a finished stage is skipped; eval-stereo reads the same mesh and agrees
    assert main(["stereo", str(ws.root), "--voxel-size", "0.04"]) == 0
    assert "already done" in capsys.readouterr().out
    # the saved config reads back to the same settings (so: the same stage key), --set reaches any field
    assert main(["stereo", str(ws.root), "--config", str(ws.stereo / "config.yaml")]) == 0
    assert "already done" in capsys.readouterr().out
    assert main(["stereo", str(ws.root), "--set", "voxel_size=0.04", "--set", "sgbm.downscale=0.5"]) == 0
    assert "already done" in capsys.readouterr().out  # downscale is for pairs: a workspace keeps 1
    assert main(["eval-stereo", str(ws.root), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["mesh"]
    assert again["completeness"] == pytest.approx(ev["completeness"])
    assert again["accuracy_median"] == pytest.approx(ev["accuracy_median"], rel=0.05)  # vertex sample differs

    # new fusion settings reuse the per-pair depth maps (checkpoints) and only fuse again
    stamp = (ws.stereo / "depth" / "view_007.npy").stat().st_mtime_ns
    assert main(["stereo", str(ws.root), "--voxel-size", "0.06"]) == 0
    assert (ws.stereo / "depth" / "view_007.npy").stat().st_mtime_ns == stamp
    assert json.loads((ws.stereo / "report.json").read_text())["voxel_size"] == 0.06


def test_workspace_without_model_is_one_line(tmp_path, capsys):
    (tmp_path / "ws" / "images").mkdir(parents=True)
    assert main(["stereo", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no COLMAP model" in err
    assert not (tmp_path / "ws" / "stereo").exists()
