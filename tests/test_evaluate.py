"""Evaluation: alignment, pose errors, AUC, reprojection error, ground-truth loaders, `recon3d eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon3d import evaluate as ev
from recon3d import geometry as g
from recon3d.core.errors import UserError
from recon3d.geometry import align, reprojection


def _rot(v_deg) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.radians(v_deg)).as_matrix()


def _ring(n: int = 12) -> dict[str, np.ndarray]:
    """Cameras on a ring looking at the origin, as name -> cam_from_world."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    eye = np.stack([5 * np.cos(a), 5 * np.sin(a), 2 + 0.3 * np.sin(3 * a)], axis=1)
    T = g.cam_from_world_look_at(eye, np.zeros_like(eye))
    return {f"im{i:02d}.png": T[i] for i in range(n)}


def _transform(poses: dict, s: float, R: np.ndarray, t: np.ndarray) -> dict:
    """The same cameras in a world where X_new = s R X + t."""
    out = {}
    for k, T in poses.items():
        Rc, tc = T[:, :3], T[:, 3]
        out[k] = np.concatenate([Rc @ R.T, (s * tc - Rc @ R.T @ t)[:, None]], axis=1)
    return out


# Tolerances for noise-free inputs pushed through SVD / eigen-decompositions / RANSAC refits.
# float64 gives ~1e-14 deg and ~1e-15 relative here (measured), but LAPACK/BLAS builds (OpenBLAS,
# MKL, reference; AVX2 vs AVX-512 kernels) sum in different orders, and the error of an SVD grows
# with the conditioning of the data. These bounds are about 1e5 x the measured float64 error, so
# they hold on any x86-64 build while a real mistake (a wrong sign, a missed refit) is 1e-3 or more.
ANGLE_TOL_DEG = 1e-9
REL_TOL = 1e-10


class TestAlignment:
    def test_umeyama_recovers_a_similarity(self):
        rng = np.random.default_rng(0)
        src = rng.normal(size=(20, 3))
        R, s, t = _rot([10, -20, 30]), 2.5, np.array([1.0, -2, 3])
        s2, R2, t2 = align.umeyama(src, s * src @ R.T + t)
        assert abs(s2 - s) < REL_TOL * s and g.rotation_angle_deg(R2, R) < ANGLE_TOL_DEG
        np.testing.assert_allclose(t2, t, atol=REL_TOL * np.linalg.norm(t))

    def test_robust_sim3_ignores_a_bad_camera(self):
        rng = np.random.default_rng(1)
        src = rng.normal(size=(15, 3))
        R, s, t = _rot([0, 40, 5]), 0.7, np.array([3.0, 0, 1])
        dst = s * src @ R.T + t
        dst[4] += [5.0, -3.0, 2.0]
        s2, R2, t2, inl = align.robust_sim3(src, dst, threshold=0.05)
        assert not inl[4] and inl.sum() == 14
        assert g.rotation_angle_deg(R2, R) < ANGLE_TOL_DEG and abs(s2 - s) < REL_TOL * s

    def test_rotation_mean(self):
        Rs = np.stack([_rot([0, 0, a]) for a in (-2.0, 0.0, 2.0)])
        assert g.rotation_angle_deg(align.rotation_mean(Rs), np.eye(3)) < ANGLE_TOL_DEG


class TestPoseErrors:
    def test_identical_up_to_similarity(self):
        gt = _ring()
        est = _transform(gt, 0.3, _rot([20, 5, -70]), np.array([1.0, 2, 3]))
        res = ev.evaluate_poses(est, gt)
        assert res.rotation_deg.max() < ANGLE_TOL_DEG and res.rotation_fit_deg.max() < ANGLE_TOL_DEG
        assert np.nanmax(res.position) < 1e-9  # metres, cameras 5 m from the origin: ~2e8 x eps
        assert abs(res.scale - 1 / 0.3) < REL_TOL / 0.3
        assert np.max(res.pair_errors_deg) < ANGLE_TOL_DEG
        assert res.auc["1"] > 0.999 and len(res.pair_errors_deg) == 66

    def test_known_rotation_error_and_a_bad_camera(self):
        gt = _ring()
        est = {k: v.copy() for k, v in gt.items()}
        names = sorted(est)
        C0 = g.camera_centers(est[names[0]])
        est[names[0]][:, :3] = _rot([0.0, 0.3, 0.0]) @ est[names[0]][:, :3]  # 0.3 deg about the camera y axis
        est[names[0]][:, 3] = -est[names[0]][:, :3] @ C0  # same centre
        C = g.camera_centers(est[names[5]])
        est[names[5]][:, 3] = -est[names[5]][:, :3] @ (C + [2.0, 0, 0])  # a camera 2 m off
        res = ev.evaluate_poses(est, gt)
        d = dict(zip(res.names, res.rotation_deg))
        assert abs(d[names[0]] - 0.3) < 1e-4
        assert np.median(res.rotation_deg) < 1e-4
        p = dict(zip(res.names, res.position))
        assert abs(p[names[5]] - 2.0) < 1e-6 and res.sim3_inliers == 11
        assert np.median(res.position) < 1e-9

    def test_missing_images_count_as_failures(self):
        gt = _ring()
        est = {k: v for k, v in list(gt.items())[:-3]}
        res = ev.evaluate_poses(est, gt)
        assert len(res.missing) == 3
        n_bad = 66 - 36  # pairs touching the 3 missing cameras
        assert np.isinf(res.pair_errors_deg).sum() == n_bad
        assert abs(res.auc["5"] - 36 / 66) < 1e-6

    def test_no_common_images(self):
        with pytest.raises(UserError):
            ev.evaluate_poses({"a.png": np.eye(3, 4)}, {"b.png": np.eye(3, 4)})

    def test_pose_auc(self):
        assert ev.pose_auc(np.zeros(10), [1.0])[0] == pytest.approx(1.0)
        assert ev.pose_auc(np.full(10, np.inf), [5.0])[0] == 0.0
        # errors uniform on [0, 2]: recall(e) = e / 2, AUC@1 = mean over [0, 1] = 0.25
        assert ev.pose_auc(np.linspace(0, 2, 20001), [1.0])[0] == pytest.approx(0.25, abs=1e-3)


# ------------------------------------------------------------------------------ workspace
def test_reprojection_of_the_true_model_is_zero(orbit_ws):
    from recon3d.io.colmap import read_model

    errs = reprojection.reprojection_errors(read_model(orbit_ws.model))
    allerr = np.concatenate(list(errs.values()))
    assert len(allerr) > 1000 and allerr.max() < 1e-6


def test_mean_per_point_and_per_observation(orbit_ws, capsys):
    """Keypoints of one photo moved by (3, 4) px: its observations are off by exactly 5 px, so the mean per
    observation is 5 x its share of the observations and the mean per point (COLMAP model_analyzer's
    figure) averages 5 / track length over the points; `recon3d eval` prints both, named."""
    from recon3d.cli import main
    from recon3d.io.colmap import read_model

    model = read_model(orbit_ws.model)
    shifted = min(model.images)
    im = model.images[shifted]
    im.points2D = im.points2D + np.array([3.0, 4.0])
    track = {int(p): 0 for p in model.point_ids}
    seen_by_shifted = set()
    for image_id, view in model.images.items():
        for p in view.point3D_ids[view.point3D_ids >= 0]:
            track[int(p)] += 1
            if image_id == shifted:
                seen_by_shifted.add(int(p))
    n_obs = sum(track.values())
    expect_obs = 5.0 * len(seen_by_shifted) / n_obs
    observed = [p for p, n in track.items() if n > 0]
    expect_point = float(np.mean([5.0 / track[p] if p in seen_by_shifted else 0.0 for p in observed]))
    assert abs(expect_obs - expect_point) > 1e-3  # the two means differ here
    summary = reprojection.reprojection_summary(reprojection.reprojection_errors(model), reprojection.point_errors(model))
    assert summary["mean_per_observation"] == pytest.approx(expect_obs, abs=1e-6)
    assert summary["mean"] == summary["mean_per_observation"]
    assert summary["mean_per_point"] == pytest.approx(expect_point, abs=1e-6)

    assert main(["eval", str(orbit_ws.root)]) == 0
    out = capsys.readouterr().out
    assert "mean per observation 0.000 px" in out and "mean per point 0.000 px" in out and "model_analyzer" in out


def test_reprojection_is_computed_once_per_model_state(orbit_ws, tmp_path):
    """The SfM report (model in memory) and the evaluation (model read back from sparse/0) share one
    computation; another model state computes again."""
    import pycolmap

    from recon3d.io.colmap import model_from_reconstruction, read_model

    reprojection.clear_cache()
    rec = pycolmap.Reconstruction(str(orbit_ws.model))
    first = reprojection.reprojection_errors(model_from_reconstruction(rec))
    rec.write_binary(str(tmp_path))
    again = reprojection.reprojection_errors(read_model(tmp_path))
    assert reprojection.cache_info()["misses"] == 1 and again.keys() == first.keys()
    assert all(again[n] is first[n] and not first[n].flags.writeable for n in first)
    moved = read_model(tmp_path)
    next(iter(moved.images.values())).cam_from_world[0, 3] += 0.01
    reprojection.reprojection_errors(moved)
    assert reprojection.cache_info() == {"hits": 1, "misses": 2, "size": 2}


def test_evaluate_stage_skips_a_finished_evaluation(orbit_ws):
    first = ev.evaluate_stage(orbit_ws)
    assert not first.skipped and first.outputs["report"] == orbit_ws.reports / "eval.json"
    again = ev.evaluate_stage(orbit_ws)
    assert again.skipped and again.data == json.loads((orbit_ws.reports / "eval.json").read_text())
    assert again.summary == first.summary and "relative-pose AUC" in again.summary
    assert not ev.evaluate_stage(orbit_ws, overwrite=True).skipped


def test_evaluate_workspace_against_itself(orbit_ws):
    (orbit_ws.root / "splat").mkdir()
    (orbit_ws.root / "splat" / "metrics.json").write_text(json.dumps({"psnr": 31.5, "ssim": 0.93}))
    report = ev.evaluate_workspace(orbit_ws)
    assert report["registered_images"] == 24 and report["gt"]["common_images"] == 24
    assert report["gt"]["rotation_deg"]["max"] < 1e-4
    assert report["gt"]["auc"]["1"] > 0.999
    assert report["splat"]["psnr"] == 31.5 and "nerf" not in report
    assert json.loads((orbit_ws.reports / "eval.json").read_text())["points"] == report["points"]
    text = ev.format_report(report)
    assert "relative-pose AUC" in text and "splat metrics" in text and "psnr 31.5" in text


def test_eval_cli(orbit_ws, capsys, tmp_path):
    from recon3d.cli import main

    assert main(["eval", str(orbit_ws.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reprojection_px"]["mean"] < 1e-6 and out["gt"]["common_images"] == 24
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "no such workspace" in capsys.readouterr().err
    assert main(["eval", str(orbit_ws.root), "--gt", str(tmp_path / "missing")]) == 2
    assert "no such ground-truth" in capsys.readouterr().err


# ------------------------------------------------------------------------ ground-truth files
@pytest.mark.realdata
def test_middlebury_loader(shared_data):
    from recon3d.io.gt_formats import load_gt_cameras

    cams = load_gt_cameras(shared_data / "temple_ring" / "gt" / "templeR_par.txt")
    assert len(cams) == 47 and "templeR0013.png" in cams
    c = cams["templeR0013.png"]
    assert c.K[0, 0] == pytest.approx(1520.4) and c.K[0, 2] == pytest.approx(302.32 + 0.5)
    R = c.cam_from_world[:, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    # the set folder itself is accepted too
    assert set(load_gt_cameras(shared_data / "temple_ring")) == set(cams)


@pytest.mark.realdata
def test_strecha_loader(shared_data):
    from recon3d.io.gt_formats import load_gt_cameras

    cams = load_gt_cameras(shared_data / "herzjesu_p8" / "gt")
    assert sorted(cams) == [f"{i:04d}.jpg" for i in range(8)]
    c = cams["0000.jpg"]
    assert (c.width, c.height) == (3072, 2048)
    raw = np.array((shared_data / "herzjesu_p8" / "gt" / "0000.jpg.camera").read_text().split(), dtype=float)
    np.testing.assert_allclose(g.camera_centers(c.cam_from_world), raw[21:24], atol=1e-6)
    # the optical axis (camera z) is the third column of the camera-to-world rotation in the file
    np.testing.assert_allclose(c.cam_from_world[2, :3], raw[12:21].reshape(3, 3)[:, 2], atol=1e-4)


def test_colmap_loader_and_errors(orbit_scene, tmp_path):
    from recon3d.io.gt_formats import load_gt_cameras

    cams = load_gt_cameras(orbit_scene)  # a rendered scene folder: gt/sparse/0 inside
    assert len(cams) == 24 and cams["view_000.png"].K[0, 0] == 520.0
    with pytest.raises(UserError):
        load_gt_cameras(tmp_path)
    bad = tmp_path / "x_par.txt"
    bad.write_text("3\nfoo 1 2\n")
    with pytest.raises(UserError):
        load_gt_cameras(bad)


def test_stale_default_ground_truth_is_skipped(orbit_ws):
    """ws/gt of a rendered scene whose photos were replaced: noted, not an error."""
    import pycolmap

    rec = pycolmap.Reconstruction(str(orbit_ws.model))
    for im in rec.images.values():
        im.name = "other_" + im.name
    rec.write_binary(str(orbit_ws.model))
    report = ev.evaluate_workspace(orbit_ws)
    assert "gt" not in report and "describes other photos" in report["gt_skipped"]
    assert "describes other photos" in ev.format_report(report)
