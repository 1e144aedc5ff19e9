"""Synthetic scenes: the ground truth is exact and renders are deterministic."""

import json

import cv2
import numpy as np
import pycolmap
import pytest

from recon3d import geometry
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import StereoRig
from recon3d.io.cameras import load_camera, load_rig
from recon3d.io.colmap import read_model
from recon3d.scenes import load_spec, render_scene
from recon3d.scenes.spec import list_scenes


def bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample ``img`` (H, W) at continuous COLMAP-convention pixels ``uv`` (N, 2)."""
    x = uv[:, 0] - 0.5
    y = uv[:, 1] - 0.5
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
            + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)


def test_shipped_scenes():
    assert {"orbit", "facade", "stereo", "checkerboard", "sparse_ring", "lowtex", "narrow"} <= set(list_scenes())
    assert load_spec("orbit").views.count == 24


@pytest.mark.parametrize("scene", ["orbit_scene", "facade_scene", "sparse_ring_scene", "lowtex_scene", "narrow_scene"])
def test_gt_points_land_on_rendered_depth(scene, request):
    """Every GT point projects (through its GT camera) where the rendered depth equals its depth."""
    root = request.getfixturevalue(scene)
    model = read_model(root / "gt" / "sparse" / "0")
    cam = Camera.from_colmap(*model.cameras[1])
    index = {int(pid): i for i, pid in enumerate(model.point_ids)}
    checked = 0
    for im in model.images.values():
        depth = np.load(root / "gt" / "depth" / (im.name.rsplit(".", 1)[0] + ".npy"))
        assert depth.dtype == np.float32 and depth.shape == (cam.height, cam.width)
        X = model.points[[index[int(p)] for p in im.point3D_ids]]
        Xc = geometry.transform_points(im.cam_from_world, X)
        np.testing.assert_allclose(cam.project(Xc), im.points2D, atol=1e-6)  # observations are exact
        # inverse depth is linear in pixels on planes, so interpolate 1/z
        inv = bilinear(1.0 / depth.astype(np.float64), im.points2D)
        rel = np.abs(1.0 / inv - Xc[:, 2]) / Xc[:, 2]
        assert rel.max() < 1e-3, f"{im.name}: depth mismatch {rel.max():.2e}"
        checked += len(X)
    assert checked > 10000
    assert len(model.points) >= 2000


def test_orbit_is_a_colmap_model(orbit_scene):
    rec = pycolmap.Reconstruction(str(orbit_scene / "gt" / "sparse" / "0"))
    assert rec.num_reg_images() == 24 and rec.num_points3D() >= 2000
    assert rec.compute_mean_reprojection_error() < 1e-6
    assert len(list((orbit_scene / "images").glob("*.png"))) == 24
    assert cv2.imread(str(orbit_scene / "images" / "view_000.png")).shape == (480, 640, 3)


def test_checkerboard_corners_follow_the_distortion_model(checkerboard_scene):
    cam = load_camera(checkerboard_scene / "gt" / "camera.json")
    board = json.loads((checkerboard_scene / "gt" / "board.json").read_text())
    corners = np.load(checkerboard_scene / "gt" / "corners.npy")
    assert corners.shape == (20, 54, 2)
    i, j = np.meshgrid(np.arange(board["cols"]), np.arange(board["rows"]))
    obj = np.stack([i.ravel(), j.ravel(), np.zeros(i.size)], 1) * board["square"]
    errors = []
    for v, pose in enumerate(np.asarray(board["cam_from_board"])):
        # independent model: OpenCV's projectPoints (OpenCV pixel centres, hence + 0.5)
        rvec, _ = cv2.Rodrigues(pose[:, :3])
        uv, _ = cv2.projectPoints(obj, rvec, pose[:, 3], cam.K_opencv, cam.dist)
        np.testing.assert_allclose(uv[:, 0] + 0.5, corners[v], atol=1e-6)
        # and every rendered image shows every corner there, boards in the image corners included
        gray = cv2.imread(str(checkerboard_scene / "images" / f"view_{v:02d}.png"), cv2.IMREAD_GRAYSCALE)
        found, det = cv2.findChessboardCornersSB(gray, (board["cols"], board["rows"]), flags=cv2.CALIB_CB_ACCURACY)
        assert found, v
        det = det.reshape(-1, 2) + 0.5  # OpenCV 5 returns (N, 2), OpenCV 4 (N, 1, 2)
        d = np.linalg.norm(det[:, None] - corners[v][None], axis=2).min(axis=1)
        assert d.max() < 0.5, v
        errors.append(np.median(d))
    assert np.median(errors) < 0.1


def test_checkerboard_views_cover_the_sensor(checkerboard_scene):
    """Like good calibration photos: the corners reach every part of the image, its corners included,
    on boards tilted 30-45 deg, each board whole in view."""
    from recon3d.calibrate.common import coverage

    cam = load_camera(checkerboard_scene / "gt" / "camera.json")
    board = json.loads((checkerboard_scene / "gt" / "board.json").read_text())
    corners = np.load(checkerboard_scene / "gt" / "corners.npy")
    W, H = cam.width, cam.height
    assert coverage(corners.reshape(-1, 2), (W, H)) >= 0.85
    assert np.all((corners > 4) & (corners < np.array([W, H]) - 4))
    tilts = [np.degrees(np.arccos(np.asarray(P)[2, 2])) for P in board["cam_from_board"]]
    assert min(tilts) >= 30 - 1e-6 and max(tilts) <= 45 + 1e-6
    # every image corner's 80 x 80 px cell holds corners of a tilted board
    for cx, cy in ((0, 0), (W, 0), (0, H), (W, H)):
        near = np.all(np.abs(corners - [cx, cy]) < 80, axis=2).any(axis=1)
        assert near.any() and min(t for t, n in zip(tilts, near) if n) >= 30


def test_checkerboard_poses_are_deterministic(tmp_path):
    spec = load_spec("checkerboard")
    spec.camera.width, spec.camera.height, spec.camera.fx, spec.camera.fy = 160, 120, 150.0, 149.5
    spec.camera.cx, spec.camera.cy = 80.9, 59.2
    spec.views.count, spec.supersample = 4, 1
    for out in ("a", "b"):
        render_scene(spec, tmp_path / out)
    for rel in ["images/view_00.png", "images/view_03.png", "gt/corners.npy", "gt/board.json"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_stereo_gt_disparity_is_photo_consistent(stereo_scene):
    rig = load_rig(stereo_scene / "gt" / "stereo.json")
    assert rig.baseline == pytest.approx(0.12)
    rect = StereoRig.rectification_from_json(json.loads((stereo_scene / "gt" / "stereo.json").read_text()))
    disp = np.load(stereo_scene / "gt" / "disparity" / "pair_00.npy")
    depth = np.load(stereo_scene / "gt" / "depth" / "pair_00.npy")
    ok = np.isfinite(depth)
    np.testing.assert_allclose(disp[ok], rect.focal * rect.baseline / depth[ok], rtol=1e-5)
    left = cv2.imread(str(stereo_scene / "rectified" / "left" / "pair_00.png")).astype(np.float32)
    right = cv2.imread(str(stereo_scene / "rectified" / "right" / "pair_00.png")).astype(np.float32)
    H, W = disp.shape
    ys, xs = np.nonzero(ok[2:-2, 2:-2])
    ys, xs = ys + 2, xs + 2
    xr = xs + 0.5 - disp[ys, xs]  # the same surface point in the right image
    inside = (xr > 2) & (xr < W - 2)
    ys, xs, xr = ys[inside], xs[inside], xr[inside]
    sampled = np.stack([bilinear(right[..., c], np.stack([xr, ys + 0.5], 1)) for c in range(3)], 1)
    diff = np.abs(sampled - left[ys, xs]).mean(axis=1)
    # occluded pixels differ; the visible majority matches to a few grey levels
    assert np.median(diff) < 4.0


def test_same_seed_same_render(tmp_path):
    spec = load_spec("orbit")
    spec.camera.width, spec.camera.height, spec.camera.fx, spec.camera.fy = 160, 120, 130.0, 130.0
    spec.views.count, spec.points = 4, 200
    for out in ("a", "b"):
        render_scene(spec, tmp_path / out)
    for rel in ["images/view_000.png", "images/view_003.png", "gt/depth/view_001.npy",
                "gt/sparse/0/images.txt", "gt/sparse/0/points3D.txt"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_registration_scenes_are_what_they_claim(lowtex_scene, narrow_scene, sparse_ring_scene):
    """lowtex: near-white object on black with sensor noise; narrow: an 8 deg lens; sparse_ring: 22.5 deg steps."""
    spec = load_spec("lowtex")
    img = cv2.imread(str(lowtex_scene / "images" / "view_000.png")).astype(np.float64) / 255
    depth = np.load(lowtex_scene / "gt" / "depth" / "view_000.npy")
    obj, bg = img[np.isfinite(depth)], img[~np.isfinite(depth)]
    assert obj.mean() > 0.55 and bg.mean() < 0.05  # bright object (0.60 mean), black background
    assert 0.5 * spec.noise < bg.std() < 2 * spec.noise + 2 / 255  # the background shows the sensor noise
    fov = np.degrees(2 * np.arctan(spec.camera.width / 2 / spec.camera.fx))
    assert 10 <= fov <= 15
    n = load_spec("narrow").camera
    assert abs(np.degrees(2 * np.arctan(n.width / 2 / n.fx)) - 8.0) < 0.1
    model = read_model(sparse_ring_scene / "gt" / "sparse" / "0")
    centers = np.stack([geometry.camera_centers(im.cam_from_world[None])[0] for im in model.images.values()])
    ang = np.sort(np.degrees(np.arctan2(centers[:, 1], centers[:, 0])) % 360)
    assert len(ang) == 16 and np.allclose(np.diff(ang), 22.5, atol=5)  # position jitter moves a view ~2 deg
    for root in (lowtex_scene, narrow_scene):
        assert pycolmap.Reconstruction(str(root / "gt" / "sparse" / "0")).compute_mean_reprojection_error() < 1e-6
