"""Stereo pairs: rectification, disparity, depth and point clouds against the `stereo` scene's ground truth.

Regions the accuracy checks use (defined in recon3d.stereo.evaluate, computed from ground truth):

* valid GT: GT disparity > 0 (the background sky has none);
* non-occluded: valid GT and visible in the right view too, found by forward-warping the GT
  disparity into the right image (z-buffer per row) and dropping pixels that land outside it;
* textured: non-occluded pixels whose 7x7 grey-level standard deviation in the left image is above
  2 (out of 255). The scene's textures are flat-coloured shapes on noise; inside a flat shape the
  match is decided by SGM's smoothness prior, not by the image, so those pixels are left out.

bad-k counts pixels without an estimate as bad, so filtering cannot game the rates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from recon3d.cli import main
from recon3d.core.errors import UserError
from recon3d.stereo.depth import depth_from_disparity, points_from_depth
from recon3d.stereo.disparity import (
    SGBMConfig,
    compute_disparity,
    opencv_default_disparity,
)
from recon3d.stereo.evaluate import (
    depth_metrics,
    disparity_metrics,
    nonoccluded_mask,
    textured_mask,
)
from recon3d.stereo.pfm import read_pfm, write_pfm
from recon3d.stereo.rectify import (
    load_calibration,
    load_image,
    rectify_pair,
    rig_from_poses,
)


def _pair(scene: Path, p: int, rectified: bool = True):
    name = f"pair_{p:02d}.png"
    root = scene / "rectified" if rectified else scene
    return load_image(root / "left" / name), load_image(root / "right" / name)


def _gt(scene: Path, p: int):
    return np.load(scene / "gt" / "disparity" / f"pair_{p:02d}.npy"), np.load(scene / "gt" / "depth" / f"pair_{p:02d}.npy")


# ------------------------------------------------------------------------------------ units
def test_pfm_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    a[0, 1] = np.nan
    a[2, 3] = np.inf
    write_pfm(tmp_path / "a.pfm", a)
    b = read_pfm(tmp_path / "a.pfm")
    assert b.shape == (3, 4) and b.dtype == np.float32
    assert np.isinf(b[0, 1]) and np.isinf(b[2, 3])  # NaN is stored as inf (Middlebury's invalid)
    ok = np.isfinite(a)
    assert np.array_equal(a[ok], b[ok])
    rgb = np.random.default_rng(0).random((2, 5, 3)).astype(np.float32)
    write_pfm(tmp_path / "c.pfm", rgb)
    assert np.array_equal(read_pfm(tmp_path / "c.pfm"), rgb)
    (tmp_path / "bad.pfm").write_bytes(b"P6\n1 1\n255\n\0\0\0")
    with pytest.raises(UserError, match="not a PFM"):
        read_pfm(tmp_path / "bad.pfm")


def test_nonoccluded_mask_marks_the_occluded_band():
    # far plane at disparity 4, a near box (disparity 12) over columns 40..59. In the right view the
    # box shifts 8 px further left than the plane and hides the plane's columns 32..39 (left of the
    # box in the left image); the first 4 columns fall outside the right image.
    gt = np.full((5, 100), 4.0, dtype=np.float32)
    gt[:, 40:60] = 12.0
    vis = nonoccluded_mask(gt, tolerance=0.5)
    assert not vis[:, :4].any() and vis[:, 4:32].all() and not vis[:, 32:40].any()
    assert vis[:, 40:].all()


def test_disparity_metrics_count_missing_as_bad():
    gt = np.array([[10, 10, 10, 10, 0]], dtype=np.float32)  # last pixel: no surface
    est = np.array([[10.5, 13, np.nan, 10, 99]], dtype=np.float32)
    m = disparity_metrics(est, gt)
    assert m["pixels"] == 4 and m["density"] == pytest.approx(0.75)
    assert m["epe"] == pytest.approx((0.5 + 3 + 0) / 3)
    assert m["bad_2"] == pytest.approx(2 / 4) and m["bad_4"] == pytest.approx(1 / 4)
    assert m["bad_1"] == pytest.approx(2 / 4)


def test_depth_and_points_from_disparity_round_trip():
    K = np.array([[500.0, 0, 32], [0, 500, 24], [0, 0, 1]])
    z = np.random.default_rng(1).uniform(2, 5, (48, 64)).astype(np.float32)
    disp = (500 * 0.1 / z).astype(np.float32)
    disp[0, 0] = np.nan
    depth = depth_from_disparity(disp, 500.0, 0.1)
    assert np.isnan(depth[0, 0]) and np.allclose(depth[1:], z[1:], rtol=1e-5)
    pts, rgb = points_from_depth(depth, K)
    assert pts.shape == (48 * 64 - 1, 3) and rgb.shape == pts.shape
    uv = pts[:, :2] / pts[:, 2:] * 500 + [32, 24]  # reprojects onto the pixel centres (COLMAP)
    grid = np.stack(np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5), -1).reshape(-1, 2)[1:]
    assert np.allclose(uv, grid, atol=1e-3)


def test_rig_from_poses_maps_left_to_right():
    from recon3d.geometry import cam_from_world_look_at, transform_points
    from recon3d.geometry.camera import Camera

    cam = Camera(64, 48, [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    pl = cam_from_world_look_at(np.array([0.0, -5, 1]), np.zeros(3))
    pr = cam_from_world_look_at(np.array([1.0, -5, 1.2]), np.zeros(3))
    rig = rig_from_poses(cam, cam, pl, pr)
    X = np.random.default_rng(2).normal(size=(10, 3))
    Xl, Xr = transform_points(pl, X), transform_points(pr, X)
    assert np.allclose(Xl @ rig.R.T + rig.T, Xr, atol=1e-9)


# ------------------------------------------------------------------ the stereo scene (GT)
def test_rectified_pairs_meet_accuracy_and_beat_opencv_defaults(stereo_scene):
    """All 6 rendered rectified pairs: bad-2 < 5 % and EPE < 1 px on textured regions."""
    ours, default = [], []
    for p in range(6):
        left, right = _pair(stereo_scene, p)
        gt, _ = _gt(stereo_scene, p)
        nonocc = nonoccluded_mask(gt)
        textured = nonocc & textured_mask(left)
        assert textured.sum() > 0.4 * nonocc.sum()  # the region is most of the image, not a sliver
        d = compute_disparity(left, right)
        ours.append((disparity_metrics(d, gt, textured), disparity_metrics(d, gt, nonocc)))
        default.append(disparity_metrics(opencv_default_disparity(left, right, 80), gt, nonocc))
    for tex, nonocc in ours:
        assert tex["bad_2"] < 0.05 and tex["epe"] < 1.0 and tex["density"] > 0.95
        assert nonocc["bad_2"] < 0.08
    assert np.mean([n["bad_2"] for _, n in ours]) < 0.5 * np.mean([m["bad_2"] for m in default])


def test_rectification_reproduces_the_ideal_rectified_render(stereo_scene):
    """Rectifying a raw (distorted) pair with stereo.json gives the images the ideal rectified cameras see."""
    rig, rect = load_calibration(stereo_scene / "gt" / "stereo.json")
    raw_l, raw_r = _pair(stereo_scene, 2, rectified=False)
    ideal_l, ideal_r = _pair(stereo_scene, 2)
    pair = rectify_pair(rig, rect, raw_l, raw_r)
    inner = np.zeros(pair.left_valid.shape, bool)
    inner[20:-20, 20:-20] = True
    for got, ideal in ((pair.left, ideal_l), (pair.right, ideal_r)):
        diff = np.abs(got.astype(float) - ideal.astype(float)).mean(axis=2)[inner & pair.left_valid]
        assert diff.mean() < 2.8  # resampling blur only (2.3); shifting by 1/4 px already gives 2.9-3.4
    assert pair.focal == pytest.approx(rect.P1[0, 0]) and pair.baseline == pytest.approx(0.12, rel=1e-6)


def test_cli_raw_pair_depth_points_and_eval(stereo_scene, tmp_path):
    """`recon3d stereo` on raw photos + calibration: disparity, depth within 1 % at the near range,
    points in the left camera frame, and `recon3d eval-stereo` agreeing with the library."""
    out = tmp_path / "out"
    left, right = stereo_scene / "left" / "pair_00.png", stereo_scene / "right" / "pair_00.png"
    calib = stereo_scene / "gt" / "stereo.json"
    assert main(["stereo", str(left), str(right), "--calib", str(calib), "-o", str(out)]) == 0
    for f in ("disparity.pfm", "disparity.png", "depth.npy", "points.ply", "stereo.json", "left_rectified.png"):
        assert (out / f).is_file(), f
    disp, depth = read_pfm(out / "disparity.pfm"), np.load(out / "depth.npy")
    # invalid: inf in the PFM, NaN in depth (disparity 0, a point at infinity, has no finite depth either)
    assert np.array_equal(np.isinf(disp) | (disp <= 0), np.isnan(depth))

    gt, gt_depth = _gt(stereo_scene, 0)
    textured = nonoccluded_mask(gt) & textured_mask(cv2.imread(str(out / "left_rectified.png")))
    m = disparity_metrics(disp, gt, textured)
    assert m["bad_2"] < 0.05 and m["epe"] < 1.0
    dm = depth_metrics(depth, gt_depth, textured)
    assert dm["near_median_rel"] < 0.01 and dm["near_within_1pct"] > 0.7 and dm["median_rel"] < 0.015

    # points.ply is in the raw left camera's frame: project with the distorted camera, compare to GT depth
    header, body = (out / "points.ply").read_bytes().split(b"end_header\n", 1)
    n = int(header.split(b"element vertex ")[1].split(b"\n")[0])
    rec = np.frombuffer(body, dtype=[("p", "<f4", 3), ("c", "u1", 3)], count=n)
    assert n == np.isfinite(depth).sum()
    rig, _ = load_calibration(calib)
    pts = rec["p"][::50].astype(np.float64)
    uv = rig.left.project(pts)
    ij = np.floor(uv).astype(int)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < 640) & (ij[:, 1] >= 0) & (ij[:, 1] < 480)
    z_gt = np.load(stereo_scene / "gt" / "depth_raw" / "pair_00.npy")[ij[inside, 1], ij[inside, 0]]
    surface = np.isfinite(z_gt)
    rel = np.abs(pts[inside, 2][surface] - z_gt[surface]) / z_gt[surface]
    assert np.median(rel) < 0.01

    gt_path = stereo_scene / "gt" / "disparity" / "pair_00.npy"
    assert main(["eval-stereo", str(out), str(gt_path), "--json"]) == 0


def test_eval_stereo_cli_reports_json(stereo_scene, tmp_path, capsys):
    left, right = _pair(stereo_scene, 1)
    d = compute_disparity(left, right, SGBMConfig(downscale=0.5))
    assert d.shape == left.shape[:2]
    write_pfm(tmp_path / "d.pfm", d)
    gt_path = stereo_scene / "gt" / "disparity" / "pair_01.npy"
    image = stereo_scene / "rectified" / "left" / "pair_01.png"
    assert main(["eval-stereo", str(tmp_path / "d.pfm"), str(gt_path), "--image", str(image), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["disparity"]) == {"all", "nonoccluded", "textured"}
    expected = disparity_metrics(d, np.load(gt_path), nonoccluded_mask(np.load(gt_path)))
    assert report["disparity"]["nonoccluded"]["bad_2"] == pytest.approx(expected["bad_2"])
    assert report["disparity"]["textured"]["bad_2"] < 0.06  # half resolution still matches well
    assert main(["eval-stereo", str(tmp_path / "d.pfm"), str(gt_path)]) == 0
    assert "nonoccluded" in capsys.readouterr().out


def test_cli_folders_of_rectified_pairs(stereo_scene, tmp_path):
    left_dir, right_dir = tmp_path / "L", tmp_path / "R"
    for side, d in (("left", left_dir), ("right", right_dir)):
        d.mkdir()
        for p in (3, 4):
            shutil.copy(stereo_scene / "rectified" / side / f"pair_{p:02d}.png", d)
    out = tmp_path / "out"
    assert main(["stereo", str(left_dir), str(right_dir), "--rectified", "--calib",
                 str(stereo_scene / "gt" / "stereo.json"), "-o", str(out), "--max-disparity", "48"]) == 0
    for p in (3, 4):
        disp = read_pfm(out / f"pair_{p:02d}" / "disparity.pfm")
        gt, gt_depth = _gt(stereo_scene, p)
        assert disparity_metrics(disp, gt, nonoccluded_mask(gt))["bad_2"] < 0.08
        info = json.loads((out / f"pair_{p:02d}" / "stereo.json").read_text())
        assert info["disparity_range"] == [0, 48] and info["calibrated"]
        depth = np.load(out / f"pair_{p:02d}" / "depth.npy")  # --rectified + --calib: metric depth
        assert depth_metrics(depth, gt_depth)["near_median_rel"] < 0.01


# ------------------------------------------------------------------------------ bad input
def _fails(argv, capsys, needle: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_and_writes_nothing(stereo_scene, tmp_path, capsys):
    left = stereo_scene / "rectified" / "left" / "pair_00.png"
    right = stereo_scene / "rectified" / "right" / "pair_00.png"
    calib = stereo_scene / "gt" / "stereo.json"
    out = tmp_path / "out"

    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(right)), (320, 240)))
    _fails(["stereo", str(left), str(small), "--rectified", "-o", str(out)], capsys, "same size")

    big_l, big_r = tmp_path / "bl.png", tmp_path / "br.png"
    cv2.imwrite(str(big_l), cv2.resize(cv2.imread(str(left)), (800, 600)))
    cv2.imwrite(str(big_r), cv2.resize(cv2.imread(str(right)), (800, 600)))
    _fails(["stereo", str(big_l), str(big_r), "--calib", str(calib), "-o", str(out)], capsys, "calibrated for 640x480")

    flat, flat2 = tmp_path / "flat.png", tmp_path / "flat2.png"
    cv2.imwrite(str(flat), np.full((120, 160, 3), 128, np.uint8))
    cv2.imwrite(str(flat2), np.full((120, 160, 3), 131, np.uint8))
    _fails(["stereo", str(flat), str(flat2), "--rectified", "--min-texture", "1", "-o", str(out)], capsys,
           "disparity is empty")

    # identical left and right photos: zero baseline, refused in both modes (as `epipolar` does)
    raw = stereo_scene / "left" / "pair_00.png"
    _fails(["stereo", str(raw), str(raw), "--calib", str(calib), "-o", str(out)], capsys, "identical")
    _fails(["stereo", str(left), str(left), "--rectified", "-o", str(out)], capsys, "identical")
    copy = tmp_path / "copy.png"
    shutil.copy(left, copy)
    _fails(["stereo", str(left), str(copy), "--rectified", "--calib", str(calib), "-o", str(out)], capsys,
           "identical")

    _fails(["stereo", str(left), str(right), "-o", str(out)], capsys, "--calib")
    _fails(["stereo", str(left), str(tmp_path / "nope.png"), "--rectified", "-o", str(out)], capsys, "no such")
    (tmp_path / "bad.json").write_text("{}")
    _fails(["stereo", str(left), str(right), "--calib", str(tmp_path / "bad.json"), "-o", str(out)], capsys,
           "not a stereo calibration")
    assert not out.exists()  # nothing written by any failed run

    (tmp_path / "L").mkdir()
    (tmp_path / "R").mkdir()
    shutil.copy(left, tmp_path / "L" / "a.png")
    shutil.copy(right, tmp_path / "R" / "b.png")
    _fails(["stereo", str(tmp_path / "L"), str(tmp_path / "R"), "--rectified", "-o", str(out)], capsys, "no partner")

    gt_path = stereo_scene / "gt" / "disparity" / "pair_00.npy"
    write_pfm(tmp_path / "half.pfm", np.ones((240, 320), np.float32))
    _fails(["eval-stereo", str(tmp_path / "half.pfm"), str(gt_path)], capsys, "same rectified image size")
    _fails(["eval-stereo", str(tmp_path / "nope.pfm"), str(gt_path)], capsys, "no such")


def test_cli_set_and_config_read_back(stereo_scene, tmp_path, capsys):
    """--set reaches any PairConfig field (sgbm.* too), OUT/config.yaml holds the resolved settings,
    and --config repeats the run; --no-refine keeps its meaning; flags of the other mode are errors."""
    import yaml

    left = stereo_scene / "rectified" / "left" / "pair_00.png"
    right = stereo_scene / "rectified" / "right" / "pair_00.png"
    out = tmp_path / "a"
    assert main(["stereo", str(left), str(right), "--rectified", "-o", str(out), "--max-disparity", "48",
                 "--no-refine", "--set", "sgbm.uniqueness=12", "--downscale", "0.5"]) == 0
    assert capsys.readouterr().out.startswith(f"stereo: {left} + {right}")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["sgbm"]["uniqueness"] == 12 and saved["sgbm"]["max_disparity"] == 48
    assert saved["sgbm"]["refine_iters"] == 0 and saved["sgbm"]["downscale"] == 0.5
    assert json.loads((out / "stereo.json").read_text())["config"] == saved

    again = tmp_path / "b"
    assert main(["stereo", str(left), str(right), "--rectified", "-o", str(again), "--config",
                 str(out / "config.yaml")]) == 0
    assert (again / "config.yaml").read_text() == (out / "config.yaml").read_text()
    np.testing.assert_array_equal(read_pfm(again / "disparity.pfm"), read_pfm(out / "disparity.pfm"))

    bad = tmp_path / "c"
    _fails(["stereo", str(left), str(right), "--rectified", "-o", str(bad), "--set", "sgbm.block_size=13"], capsys,
           "sgbm.block_size: 13 is out of range")
    _fails(["stereo", str(left), str(right), "--rectified", "-o", str(bad), "--set", "sgbm.uniqueness"], capsys,
           "expected KEY=VALUE")
    _fails(["stereo", str(left), str(right), "--rectified", "-o", str(bad), "--scale", "0.5"], capsys,
           "--scale applies to a workspace")
    assert not bad.exists()


def test_stereo_pairs_returns_a_stage_result(stereo_scene, tmp_path):
    from recon3d.stereo.pair import PairConfig, stereo_pairs

    left_dir, right_dir = tmp_path / "L", tmp_path / "R"
    for side, d in (("left", left_dir), ("right", right_dir)):
        d.mkdir()
        shutil.copy(stereo_scene / "rectified" / side / "pair_03.png", d)
    config = PairConfig(sgbm=SGBMConfig(max_disparity=48, downscale=0.5))
    res = stereo_pairs(left_dir, right_dir, tmp_path / "out", config, rectified=True)
    assert not res.skipped and res.outputs["config"].is_file() and res.data[0]["name"] == "pair_03.png"
    assert "valid pixels" in res.summary
    again = stereo_pairs(left_dir, right_dir, tmp_path / "out", config, rectified=True)
    assert again.skipped and again.data == res.data
