"""Undistortion with a calibrated camera.json: straight board lines, consistent maps, the CLI."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from helpers.calibrate import checkerboard_view

from recon3d import geometry
from recon3d.calibrate.board import Board, detect_board
from recon3d.calibrate.undistort import (
    undistort_image,
    undistort_maps,
    undistort_points,
    undistorted_camera,
)
from recon3d.cli import main
from recon3d.geometry.camera import Camera
from recon3d.io.cameras import load_camera


def _line_residuals(grid: np.ndarray) -> np.ndarray:
    """Distances of each point of ``(rows, cols, 2)`` from the best line through its row, and column."""
    out = []
    for lines in (grid, grid.transpose(1, 0, 2)):
        for pts in lines:
            c = pts - pts.mean(0)
            normal = np.linalg.svd(c)[2][1]
            out.append(np.abs(c @ normal))
    return np.concatenate(out)


def test_undistorted_board_lines_are_straight(checkerboard_camera_json, checkerboard_scene):
    """A big board filling the frame, photographed through the scene's true lens, comes out straight
    when undistorted with the camera.json that `recon3d calibrate` wrote."""
    camera = load_camera(checkerboard_camera_json)
    true = load_camera(checkerboard_scene / "gt" / "camera.json")
    new = undistorted_camera(camera)
    cols, rows, s = 13, 9, 0.04
    centre = np.array([(cols - 1) / 2 * s, (rows - 1) / 2 * s, 0.0])
    pose = geometry.cam_from_world_look_at(centre + np.array([0.02, -0.01, -0.55]), centre, np.array([0.05, -1.0, 0]))
    img = checkerboard_view(true, cols, rows, s, pose)
    truth = true.project(geometry.transform_points(pose, Board(cols, rows, s).object_points()))
    assert _line_residuals(truth.reshape(rows, cols, 2)).max() > 4.0  # the raw photo is visibly bent
    det = detect_board(undistort_image(img, camera, new), Board(cols, rows, s))
    assert det.found
    assert _line_residuals(det.corners.reshape(rows, cols, 2)).max() < 0.5
    # the true corners, undistorted through the loaded camera, are straight too
    assert _line_residuals(undistort_points(camera, truth, new).reshape(rows, cols, 2)).max() < 0.2
    # and so are the scene's own views
    gt = np.load(checkerboard_scene / "gt" / "corners.npy")
    for v in (2, 9, 17):
        view = cv2.imread(str(checkerboard_scene / "images" / f"view_{v:02d}.png"), cv2.IMREAD_GRAYSCALE)
        det = detect_board(undistort_image(view, camera, new), Board(9, 6, 0.025))
        assert det.found and _line_residuals(det.corners.reshape(6, 9, 2)).max() < 0.5
        assert _line_residuals(undistort_points(camera, gt[v], new).reshape(6, 9, 2)).max() < 0.2


@pytest.mark.parametrize("model, dist", [
    ("pinhole", [-0.28, 0.09, 0.0012, -0.0008, -0.015]),
    ("rational", [-0.3, 0.08, 0.0008, -0.0005, 0.01, 0.05, 0.01, 0.002]),
    ("fisheye", [0.08, -0.03, 0.01, -0.002]),
])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_maps_agree_with_the_camera_model(model, dist, alpha):
    camera = Camera(640, 480, [[420.0, 0, 321.3], [0, 421.0, 238.2], [0, 0, 1]], dist, model)
    new = undistorted_camera(camera, alpha)
    assert new.model == "pinhole" and not new.has_distortion
    assert abs(new.K[0, 0] / new.K[1, 1] - 420.0 / 421.0) < 1e-9  # pixels keep their shape
    m1, m2 = undistort_maps(camera, new)
    out_pix = geometry.pixel_grid(640, 480)[::37, ::41].reshape(-1, 2)
    src = camera.project(new.rays(out_pix))
    ij = (out_pix - 0.5).astype(int)
    mapped = np.stack([m1[ij[:, 1], ij[:, 0]], m2[ij[:, 1], ij[:, 0]]], 1) + 0.5
    np.testing.assert_allclose(mapped, src, atol=2e-3)
    border = np.concatenate([np.stack([np.linspace(0, 640, 50), np.zeros(50)], 1),
                             np.stack([np.zeros(50), np.linspace(0, 480, 50)], 1),
                             np.stack([np.full(50, 640.0), np.linspace(0, 480, 50)], 1),
                             np.stack([np.linspace(0, 640, 50), np.full(50, 480.0)], 1)])
    if alpha == 1.0:  # every source pixel is kept
        p = undistort_points(camera, border, new)
        assert p.min() > -1e-6 and np.all(p.max(0) < np.array([640, 480]) + 1e-6)
    else:  # every output pixel has a source
        p = camera.project(new.rays(border))
        assert p.min() > -1e-6 and np.all(p.max(0) < np.array([640, 480]) + 1e-6)


def test_undistort_cli(checkerboard_camera_json, checkerboard_scene, tmp_path, capsys):
    ws = tmp_path / "ws"
    (ws / "images").mkdir(parents=True)
    for v in (0, 1, 2):
        shutil.copy(checkerboard_scene / "images" / f"view_{v:02d}.png", ws / "images")
    out = tmp_path / "out"
    args = ["undistort", str(ws), "--camera", str(checkerboard_camera_json), "-o", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["view_00.png", "view_01.png", "view_02.png"]
    cam = load_camera(out / "camera.json")
    assert cam.model == "pinhole" and not cam.has_distortion and cam.colmap_model()[0] == "PINHOLE"
    assert json.loads((out / "camera.json").read_text())["undistorted_from"] == str(checkerboard_camera_json)
    capsys.readouterr()
    assert main(args) == 0 and "already undistorted" in capsys.readouterr().out
    # half-size photos: the camera is scaled, the output camera.json describes them
    small = tmp_path / "small"
    small.mkdir()
    img = cv2.imread(str(ws / "images" / "view_00.png"))
    cv2.imwrite(str(small / "a.jpg"), cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA))
    assert main(["undistort", str(small / "a.jpg"), "--camera", str(checkerboard_camera_json), "-o",
                 str(tmp_path / "out_small")]) == 0
    half = load_camera(tmp_path / "out_small" / "camera.json")
    assert (half.width, half.height) == (320, 240)
    np.testing.assert_allclose(half.K[:2], cam.K[:2] / 2, rtol=1e-9)


@pytest.mark.parametrize("case", ["in-place", "other-aspect", "no-camera"])
def test_undistort_bad_input(case, checkerboard_camera_json, checkerboard_scene, tmp_path, capsys):
    ws = tmp_path / "ws"
    (ws / "images").mkdir(parents=True)
    src = cv2.imread(str(checkerboard_scene / "images" / "view_00.png"))
    camera = str(checkerboard_camera_json)
    out = str(tmp_path / "out")
    if case == "in-place":
        cv2.imwrite(str(ws / "images" / "a.png"), src)
        out, expect = str(ws), "would replace the input photos"
    elif case == "other-aspect":
        cv2.imwrite(str(ws / "images" / "a.png"), src[:400])
        expect = "another aspect ratio"
    else:
        cv2.imwrite(str(ws / "images" / "a.png"), src)
        camera, expect = str(tmp_path / "missing.json"), "no such camera file"
    assert main(["undistort", str(ws), "--camera", camera, "-o", out]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err
    assert sorted(p.name for p in (ws / "images").iterdir()) == ["a.png"]
    assert not (tmp_path / "out" / "images").exists()
