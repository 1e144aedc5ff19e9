"""Calibration against the synthetic scenes' ground truth (checkerboard, stereo) and synthetic ChArUco views."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.calibrate import charuco_views, look_at_poses

from recon3d import geometry
from recon3d.calibrate.board import Board, Detection, detect_board, parse_board_size
from recon3d.calibrate.common import CalibrationConfig
from recon3d.calibrate.mono import calibrate_views, distortion_folds, fit_camera
from recon3d.calibrate.stereo import calibrate_rig
from recon3d.cli import main
from recon3d.core.errors import UserError
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import StereoRig
from recon3d.io.cameras import load_camera, load_rig, save_camera


@pytest.fixture
def mono(checkerboard_camera_json) -> Path:
    """camera.json from the CLI on the checkerboard scene."""
    return checkerboard_camera_json


@pytest.fixture(scope="module")
def stereo(stereo_scene, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stereo") / "stereo.json"
    rc = main(["calibrate", "--left", str(stereo_scene / "calib" / "left"), "--right",
               str(stereo_scene / "calib" / "right"), "--board", "9x6", "--square", "0.025", "-o", str(out)])
    assert rc == 0
    return out


# ------------------------------------------------------------------------------------ mono
def test_mono_intrinsics_match_truth(mono, checkerboard_scene):
    """The scene's views reach the image's corners and edges, so all five coefficients are fitted
    (k3 is not held at 0) and the camera matches the truth."""
    cam = load_camera(mono)
    true = load_camera(checkerboard_scene / "gt" / "camera.json")
    assert cam.extras["coverage"] >= 0.85
    assert cam.extras["fixed_coefficients"] == [] and "note" not in cam.extras
    assert cam.dist[4] != 0 and abs(cam.dist[4] - true.dist[4]) < 0.005  # k3 = -0.015
    np.testing.assert_allclose(np.diag(cam.K)[:2], np.diag(true.K)[:2], rtol=1e-3)  # fx, fy within 0.1 %
    assert np.linalg.norm(cam.K[:2, 2] - true.K[:2, 2]) < 1.0  # principal point within 1 px
    assert abs(cam.dist[0] - true.dist[0]) < 0.01
    assert cam.extras["rms_px"] < 0.1
    assert not distortion_folds(cam)


def test_mono_distortion_matches_truth_over_the_image(mono, checkerboard_scene):
    """Every pixel (the image's very corners included) lands where the true lens puts it once undistorted.

    Each camera undistorts into a pinhole camera with its own K, so this compares the lens
    distortion (around its own principal point), not the focal length. The largest errors are
    in the image's outermost corners, beyond the outermost board corners: there the fit
    extrapolates, and OpenCV's corner noise (~0.045 px per corner) limits it to a few tenths
    of a pixel (simulated with that noise, 20 such views give a median of ~0.45 px there).
    """
    from recon3d.calibrate.undistort import undistort_points

    cam = load_camera(mono)
    true = load_camera(checkerboard_scene / "gt" / "camera.json")
    pix = np.concatenate([geometry.pixel_grid(640, 480)[::4, ::4].reshape(-1, 2),
                          [[0, 0], [640, 0], [0, 480], [640, 480]]])

    def undistorted(c: Camera) -> np.ndarray:
        return undistort_points(c, pix, Camera(c.width, c.height, c.K))

    err = np.linalg.norm(undistorted(cam) - undistorted(true), axis=1)
    assert err.mean() < 0.05 and np.percentile(err, 95) < 0.15 and err.max() < 0.35, \
        (err.mean(), np.percentile(err, 95), err.max())


def test_k3_is_held_when_the_views_leave_the_edges_empty(checkerboard_scene):
    """The holding rule: from the scene's detected corners in the central half of the image only,
    the free fit bends back inside the image, so k3 is held at 0 (and the fit no longer folds)."""
    board = Board(9, 6, 0.025)
    central = []
    for path in sorted((checkerboard_scene / "images").glob("*.png")):
        det = detect_board(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), board, str(path))
        keep = np.all((det.corners > [160, 120]) & (det.corners < [480, 360]), axis=1)
        if keep.sum() >= 12:
            central.append(Detection(det.image, det.size, True, det.corners[keep], det.ids[keep]))
    assert len(central) >= 10
    free, _, _ = fit_camera([d.object_points(board) for d in central], [d.corners for d in central], (640, 480))
    assert distortion_folds(free)  # the premise: this subset cannot pin k3 down
    res = calibrate_views(central, CalibrationConfig(board=board))
    assert res.fixed == ["k3"] and "held k3 at 0" in res.model_note
    assert res.camera.dist[4] == 0 and not distortion_folds(res.camera)
    assert abs(res.camera.dist[0] - (-0.28)) < 0.01


def test_mono_outputs(mono, checkerboard_scene):
    data = json.loads(mono.read_text())
    for key in ("model", "width", "height", "K", "dist", "rms_px", "views"):
        assert key in data
    assert data["model"] == "pinhole" and (data["width"], data["height"]) == (640, 480)
    images = sorted((checkerboard_scene / "images").glob("*.png"))
    assert [Path(v["image"]).name for v in data["views"]] == [p.name for p in images]
    assert all(v["found"] and v["used"] and v["rms_px"] < 0.3 for v in data["views"])
    assert 0 < data["coverage"] <= 1
    # the OpenCV YAML holds the same camera in OpenCV's pixel convention
    fs = cv2.FileStorage(str(mono.with_suffix(".yaml")), cv2.FILE_STORAGE_READ)
    K_cv = fs.getNode("camera_matrix").mat()
    assert fs.getNode("pixel_convention").string() == "opencv"
    np.testing.assert_allclose(K_cv, geometry.K_opencv_from_colmap(np.array(data["K"])), atol=1e-9)
    np.testing.assert_allclose(fs.getNode("distortion_coefficients").mat().ravel(), data["dist"], atol=1e-12)
    png = cv2.imread(str(mono.with_suffix(".png")))
    assert png is not None and png.shape[0] > 300 and png.shape[1] > 400


def test_detected_corners_match_truth(checkerboard_scene):
    gt = np.load(checkerboard_scene / "gt" / "corners.npy")
    board = Board(9, 6, 0.025)
    for v in (0, 7, 13):
        path = checkerboard_scene / "images" / f"view_{v:02d}.png"
        det = detect_board(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), board, str(path))
        assert det.found
        nearest = np.linalg.norm(det.corners[:, None] - gt[v][None], axis=-1).min(1)
        assert np.median(nearest) < 0.1
        # canonical order: corner k is the true corner k
        assert np.median(np.linalg.norm(det.corners - gt[v], axis=1)) < 0.1


def test_corner_order_survives_rotating_the_photo(checkerboard_scene):
    path = checkerboard_scene / "images" / "view_04.png"
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    board = Board(9, 6, 0.025)
    a = detect_board(gray, board).corners
    b = detect_board(cv2.rotate(gray, cv2.ROTATE_180), board).corners
    H, W = gray.shape
    np.testing.assert_allclose(np.array([W, H]) - b, a, atol=0.15)


def test_camera_json_round_trips_to_colmap(mono):
    import pycolmap

    cam = load_camera(mono)
    again = Camera.from_json(json.loads(json.dumps(cam.to_json())))
    np.testing.assert_array_equal(again.K, cam.K)
    name, params = cam.colmap_model()
    assert name in ("OPENCV", "FULL_OPENCV")
    pc = pycolmap.Camera(model=name, width=cam.width, height=cam.height, params=params)
    X = np.c_[np.random.default_rng(0).uniform(-0.5, 0.5, (50, 2)), np.ones(50)]
    np.testing.assert_allclose(pc.img_from_cam(X)[:, :2], cam.project(X), atol=1e-6)


@pytest.mark.parametrize("model, dist, colmap", [
    ("rational", [-0.3, 0.08, 0.0008, -0.0005, 0.01, 0.05, 0.01, 0.002], "FULL_OPENCV"),
    ("fisheye", [0.08, -0.03, 0.01, -0.002], "OPENCV_FISHEYE"),
])
def test_lens_models_from_synthetic_corners(model, dist, colmap, tmp_path):
    """Rational and fisheye fits from exact projections recover the camera; camera.json round-trips."""
    import pycolmap

    true = Camera(800, 600, [[420.0, 0, 401.3], [0, 421.0, 298.2], [0, 0, 1]], dist, model)
    board = Board(9, 6, 0.03)
    obj = board.object_points()
    poses = look_at_poses(14, np.array([0.12, 0.075, 0]), 0.32, seed=4, max_tilt_deg=45, spread=0.1)
    pix = [true.project(geometry.transform_points(P, obj)) for P in poses]
    keep = [k for k, p in enumerate(pix) if np.all((p > 0) & (p < [800, 600]))]
    assert len(keep) >= 8
    cam, _, rms = fit_camera([obj] * len(keep), [pix[k] for k in keep], (800, 600), model)
    assert rms.max() < 1e-3
    np.testing.assert_allclose(cam.K, true.K, rtol=1e-4, atol=0.05)
    save_camera(cam, tmp_path / "camera.json")
    loaded = load_camera(tmp_path / "camera.json")
    assert loaded.model == model
    name, params = loaded.colmap_model()
    assert name == colmap
    pc = pycolmap.Camera(model=name, width=800, height=600, params=params)
    X = geometry.transform_points(poses[keep[0]], obj)
    np.testing.assert_allclose(pc.img_from_cam(X)[:, :2], true.project(X), atol=0.02)


@pytest.mark.parametrize("content, expect", [
    (None, "no such camera file"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"width": 640, "height": 480}', "not a camera file"),
    ('{"width": 640, "height": 480, "K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "model": "weird"}', "'weird' is unknown"),
    ('{"width": 640, "height": 480, "K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "pixel_convention": "x"}',
     "pixel_convention"),
])
def test_bad_camera_file_is_one_user_error_naming_it(tmp_path, content, expect):
    """Geometry raises ValueError; io.cameras names the file and says what to do."""
    path = tmp_path / "camera.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=expect) as info:
        load_camera(path)
    assert str(info.value).startswith(f"{path}: ") and "recon3d calibrate" in str(info.value)
    assert "\n" not in str(info.value)
    if content is not None:
        with pytest.raises(ValueError):
            Camera.from_json(json.loads(content))


def test_bad_stereo_file_and_colmap_model_are_user_errors(tmp_path):
    from recon3d.io.cameras import camera_from_colmap

    path = tmp_path / "stereo.json"
    path.write_text('{"left": {"width": 1}, "right": {}, "R": [], "T": []}')
    with pytest.raises(UserError, match="not a stereo calibration file .left: not a camera file"):
        load_rig(path)
    with pytest.raises(ValueError, match="not supported"):
        Camera.from_colmap("EQUIRECTANGULAR", 100, 50, [])
    with pytest.raises(UserError, match="^ws/sparse/0: COLMAP camera model EQUIRECTANGULAR is not supported"):
        camera_from_colmap("EQUIRECTANGULAR", 100, 50, [], where="ws/sparse/0")


def test_outlier_view_is_dropped(checkerboard_scene):
    gt = np.load(checkerboard_scene / "gt" / "corners.npy")
    rng = np.random.default_rng(1)
    board = Board(9, 6, 0.025)
    ids = np.arange(54)
    dets = [Detection(f"v{k}", (640, 480), True, c + rng.normal(0, 0.05, c.shape), ids) for k, c in enumerate(gt)]
    dets[5].corners = gt[5] + rng.normal(0, 2.0, gt[5].shape)
    dets[9] = Detection("v9", (640, 480), False, method="board not found")
    res = calibrate_views(dets, CalibrationConfig(board=board))
    assert not res.used[5] and "dropped" in res.notes[5]
    assert not res.used[9] and res.notes[9] == "board not found"
    assert res.used.sum() == len(gt) - 2
    assert res.rms < 0.1


def test_implausible_fit_is_refused(checkerboard_scene):
    """fx/fy far from square pixels, or a large RMS error, is what a wrong board calibrates to: refused."""
    gt = np.load(checkerboard_scene / "gt" / "corners.npy")
    board, ids = Board(9, 6, 0.025), np.arange(54)
    squeezed = [Detection(f"v{k}", (640, 480), True, c * [1.0, 0.75], ids) for k, c in enumerate(gt)]
    with pytest.raises(UserError, match=r"implausible .*fx/fy 1\.3"):
        calibrate_views(squeezed, CalibrationConfig(board=board))
    rng = np.random.default_rng(2)
    noisy = [Detection(f"v{k}", (640, 480), True, c + rng.normal(0, 8.0, c.shape), ids) for k, c in enumerate(gt)]
    with pytest.raises(UserError, match="implausible.*--board 9x6"):
        calibrate_views(noisy, CalibrationConfig(board=board))


def test_charuco_calibration(tmp_path):
    true = Camera(640, 480, [[520.0, 0, 322.4], [0, 518.0, 238.7], [0, 0, 1]], [-0.2, 0.05, 0.001, -0.0005, 0])
    board = Board(7, 5, 0.04, "4x4_50", 0.03)
    images, poses = charuco_views(board, true, 7, seed=1)
    folder = tmp_path / "charuco"
    folder.mkdir()
    for k, img in enumerate(images):
        cv2.imwrite(str(folder / f"c{k}.png"), img)
    out = tmp_path / "camera.json"
    assert main(["calibrate", str(folder), "--board", "7x5", "--square", "0.04", "--charuco", "4x4_50",
                 "--marker", "0.03", "-o", str(out)]) == 0
    cam = load_camera(out)
    np.testing.assert_allclose(np.diag(cam.K)[:2], np.diag(true.K)[:2], rtol=0.005)
    np.testing.assert_allclose(cam.K[:2, 2], true.K[:2, 2], rtol=0.005)
    assert abs(cam.dist[0] - true.dist[0]) < 0.02
    assert cam.extras["rms_px"] < 0.3
    # corners carry their board ids: the estimated board poses match the true ones
    views = cam.extras["views"]
    for v, P in zip(views, poses):
        assert np.linalg.norm(np.array(v["cam_from_board"])[:, 3] - P[:, 3]) < 0.01 * np.linalg.norm(P[:, 3])


# ---------------------------------------------------------------------------------- stereo
def test_stereo_matches_truth(stereo, stereo_scene):
    rig = load_rig(stereo)
    true = load_rig(stereo_scene / "gt" / "stereo.json")
    assert abs(rig.baseline / true.baseline - 1) < 0.01
    assert float(geometry.rotation_angle_deg(rig.R, true.R)) < 0.1
    # true correspondences land on the same row after rectification
    from recon3d.calibrate.stereo import rectified_points

    rect = StereoRig.rectification_from_json(json.loads(stereo.read_text()))
    cl = np.load(stereo_scene / "gt" / "corners_left.npy").reshape(-1, 2)
    cr = np.load(stereo_scene / "gt" / "corners_right.npy").reshape(-1, 2)
    dy = rectified_points(rig.left, rect.R1, rect.P1, cl)[:, 1] - rectified_points(rig.right, rect.R2, rect.P2, cr)[:, 1]
    assert np.abs(dy).max() < 0.5


def test_stereo_outlier_and_missing_pairs(stereo_scene):
    cl = np.load(stereo_scene / "gt" / "corners_left.npy")
    cr = np.load(stereo_scene / "gt" / "corners_right.npy")
    rng = np.random.default_rng(2)
    ids = np.arange(54)
    left = [Detection(f"l{k}", (640, 480), True, c + rng.normal(0, 0.05, c.shape), ids) for k, c in enumerate(cl)]
    right = [Detection(f"r{k}", (640, 480), True, c + rng.normal(0, 0.05, c.shape), ids) for k, c in enumerate(cr)]
    right[3] = Detection("r3", (640, 480), False, method="board not found")
    # a pair whose right view belongs to another pose: each camera alone is fine, the pair is not
    right[6] = Detection("r6", (640, 480), True, cr[7] + rng.normal(0, 0.05, cr[7].shape), ids)
    res = calibrate_rig(left, right, CalibrationConfig(board=Board(9, 6, 0.025)))
    assert res.pairs[3]["note"] == "board not found in right" and not res.pairs[3]["used"]
    assert not res.pairs[6]["used"] and "dropped" in res.pairs[6]["note"]
    assert sum(p["used"] for p in res.pairs) == len(cl) - 2
    true = load_rig(stereo_scene / "gt" / "stereo.json")
    assert abs(res.rig.baseline / true.baseline - 1) < 0.01
    assert float(geometry.rotation_angle_deg(res.rig.R, true.R)) < 0.2  # 12 pairs, 0.05 px noise


def test_stereo_outputs(stereo):
    data = json.loads(stereo.read_text())
    for key in ("R", "T", "E", "F", "R1", "R2", "P1", "P2", "Q", "baseline", "rms_px", "epipolar_rms_px", "pairs"):
        assert key in data
    assert len(data["pairs"]) == 14 and all(p["used"] for p in data["pairs"])
    assert all(p["epipolar_px"] < 0.3 for p in data["pairs"])
    fs = cv2.FileStorage(str(stereo.with_suffix(".yaml")), cv2.FILE_STORAGE_READ)
    np.testing.assert_allclose(fs.getNode("T").mat().ravel(), data["T"], atol=1e-12)
    assert stereo.with_suffix(".png").is_file()


# ------------------------------------------------------------------------------ bad input
def _copy_views(scene: Path, dest: Path, n: int) -> Path:
    dest.mkdir(parents=True)
    for p in sorted((scene / "images").glob("*.png"))[:n]:
        shutil.copy(p, dest / p.name)
    return dest


def test_missing_and_outlier_views_are_listed_and_skipped(checkerboard_scene, stereo_scene, tmp_path, capsys):
    folder = _copy_views(checkerboard_scene, tmp_path / "imgs", 10)
    cv2.imwrite(str(folder / "blank.png"), np.full((480, 640), 120, np.uint8))
    # a photo from another camera (the stereo scene's lens): its board is found but does not fit
    shutil.copy(stereo_scene / "calib" / "left" / "board_03.png", folder / "zz_other_camera.png")
    out = tmp_path / "camera.json"
    assert main(["calibrate", str(folder), "--board", "9x6", "--square", "0.025", "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "blank.png: board not found" in stdout and "zz_other_camera.png: dropped" in stdout
    views = {Path(v["image"]).name: v for v in json.loads(out.read_text())["views"]}
    assert views["blank.png"]["found"] is False and views["blank.png"]["used"] is False
    assert views["zz_other_camera.png"]["found"] is True and views["zz_other_camera.png"]["used"] is False
    assert sum(v["used"] for v in views.values()) == 10


@pytest.mark.parametrize("case", ["few", "wrong-board", "smaller-board", "larger-board", "stereo-smaller-board",
                                  "unreadable", "stereo-count"])
def test_bad_input_gives_one_line_and_writes_nothing(case, checkerboard_scene, stereo_scene, tmp_path, capsys):
    out = tmp_path / "out" / "camera.json"
    if case == "few":
        args = [str(_copy_views(checkerboard_scene, tmp_path / "imgs", 4)), "--board", "9x6"]
        expect = "need at least 5"
    elif case == "wrong-board":
        args = [str(_copy_views(checkerboard_scene, tmp_path / "imgs", 6)), "--board", "8x6"]
        expect = "rerun with --board 9x6"
    elif case == "smaller-board":  # found inside the 9x6 board: used to write a garbage calibration
        args = [str(checkerboard_scene / "images"), "--board", "7x5"]
        expect = "the photos show a checkerboard of 9x6 inner corners, not --board 7x5"
    elif case == "larger-board":
        args = [str(_copy_views(checkerboard_scene, tmp_path / "imgs", 6)), "--board", "10x7"]
        expect = "rerun with --board 9x6"
    elif case == "stereo-smaller-board":
        args = ["--left", str(stereo_scene / "calib" / "left"), "--right", str(stereo_scene / "calib" / "right"),
                "--board", "7x5", "--square", "0.025"]
        expect = "rerun with --board 9x6"
    elif case == "unreadable":
        folder = _copy_views(checkerboard_scene, tmp_path / "imgs", 6)
        (folder / "broken.png").write_bytes(b"not a png")
        args = [str(folder), "--board", "9x6"]
        expect = "broken.png: cannot read"
    else:
        left = sorted((stereo_scene / "calib" / "left").glob("*.png"))
        args = ["--left", *map(str, left[:6]), "--right", *map(str, left[:5]), "--board", "9x6", "--square", "0.025"]
        expect = "same number"
    rc = main(["calibrate", *args, "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and expect in err and "Traceback" not in err, err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_board_argument_checks():
    assert parse_board_size("9x6") == (9, 6)
    with pytest.raises(UserError):
        parse_board_size("9")
    with pytest.raises(UserError, match="unknown ArUco dictionary"):
        Board(5, 7, 0.04, "7x7_1234")


# ------------------------------------------------------------------------------ config: --set, --config
def test_set_overrides_a_field_and_config_repeats_the_run(checkerboard_scene, tmp_path, capsys):
    """--set reaches any CalibrationConfig field, the resolved config is saved beside the output
    (camera.config.yaml), and --config reads it back without --board or --square."""
    import yaml

    folder = _copy_views(checkerboard_scene, tmp_path / "imgs", 8)
    out = tmp_path / "a" / "camera.json"
    assert main(["calibrate", str(folder), "--board", "9x6", "--square", "0.025", "--set", "outlier_factor=4.5",
                 "--set", "board.square=0.03", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("calibrated 640x480 camera") and "squares of 30 mm" in printed  # --set > --square
    saved = out.with_name("camera.config.yaml")
    data = yaml.safe_load(saved.read_text())
    assert data["outlier_factor"] == 4.5 and data["board"] == {"cols": 9, "rows": 6, "square": 0.03, "charuco": None,
                                                               "marker": None, "legacy": False}
    assert json.loads(out.read_text())["board"]["square"] == 0.03

    again = tmp_path / "b" / "camera.json"
    assert main(["calibrate", str(folder), "--config", str(saved), "-o", str(again)]) == 0
    assert again.with_name("camera.config.yaml").read_text() == saved.read_text()
    np.testing.assert_allclose(load_camera(again).K, load_camera(out).K)

    # no board size at all, or a value out of range: one line, exit 2
    assert main(["calibrate", str(folder), "-o", str(tmp_path / "c" / "camera.json")]) == 2
    assert main(["calibrate", str(folder), "--board", "9x6", "--set", "min_views=2",
                 "-o", str(tmp_path / "c" / "camera.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--board COLSxROWS" in err[0] and "min_views: 2 is out of range" in err[1]
    assert not (tmp_path / "c").exists()


def test_calibrate_stage_returns_a_stage_result(checkerboard_scene, tmp_path):
    from recon3d.calibrate.mono import calibrate_mono

    folder = _copy_views(checkerboard_scene, tmp_path / "imgs", 6)
    res = calibrate_mono([folder], CalibrationConfig(board=Board(9, 6, 0.025)), tmp_path / "camera.json")
    assert set(res.outputs) == {"json", "yaml", "png", "config"} and all(p.is_file() for p in res.outputs.values())
    assert not res.skipped and res.summary.startswith("calibrated 640x480 camera") and res.data.rms < 1.0
