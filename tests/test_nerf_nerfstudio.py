"""nerfstudio interop: transforms.json against nerfstudio's documented fields, and round trips.

The fields checked are those of nerfstudio's "Data conventions" page and its
``nerfstudio_dataparser.py``: top-level ``camera_model`` (OPENCV, OPENCV_FISHEYE, PINHOLE, ...),
``fl_x, fl_y, cx, cy, w, h`` and ``k1..k4, p1, p2`` at the top or per frame, and
``frames[].file_path`` / ``frames[].transform_matrix`` (4x4 OpenGL camera-to-world: x right, y up,
z back), pixel centres at +0.5.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest

from recon3d import geometry
from recon3d.cli import main
from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.io.colmap import Model, ModelImage, read_model, write_text_model
from recon3d.io.nerfstudio import export_nerfstudio, import_nerfstudio

DOCUMENTED_MODELS = {"OPENCV", "OPENCV_FISHEYE", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL",
                     "EQUIRECTANGULAR"}
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def _assert_models_equal(a: Model, b: Model, tol=1e-9):
    ia, ib = a.by_name(), b.by_name()
    assert sorted(ia) == sorted(ib)
    for name, im in ia.items():
        np.testing.assert_allclose(ib[name].cam_from_world, im.cam_from_world, atol=tol, rtol=0)
        ca, cb = a.cameras[im.camera_id], b.cameras[ib[name].camera_id]
        assert ca[:3] == cb[:3], (ca, cb)
        np.testing.assert_allclose(cb[3], ca[3], atol=tol, rtol=0)


def _synthetic_ws(root, fisheye=False) -> Workspace:
    """Three small images, two cameras (distorted OPENCV + PINHOLE, or OPENCV_FISHEYE), random poses."""
    rng = np.random.default_rng(3)
    ws = Workspace(root).create()
    ws.images.mkdir()
    if fisheye:
        cams = {1: ("OPENCV_FISHEYE", 48, 32, [40.0, 41.0, 24.2, 15.9, 0.05, -0.01, 0.002, -0.0005])}
    else:
        cams = {1: ("OPENCV", 48, 32, [50.0, 51.5, 24.3, 16.1, -0.12, 0.03, 0.001, -0.002]),
                2: ("PINHOLE", 40, 30, [45.0, 45.0, 20.0, 15.0])}
    images = {}
    for i in range(3):
        cid = 1 if fisheye or i < 2 else 2
        eye = rng.normal(size=3) * 2 + [0, 0, 3]
        pose = geometry.cam_from_world_look_at(eye, rng.normal(size=3) * 0.1)
        name = f"img_{i}.png"
        w, h = cams[cid][1], cams[cid][2]
        cv2.imwrite(str(ws.images / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        images[i + 1] = ModelImage(name, cid, pose)
    import pycolmap

    write_text_model(Model(cams, images), root / "txt")
    pycolmap.Reconstruction(str(root / "txt")).write_binary(str(ws.model.mkdir(parents=True) or ws.model))
    shutil.rmtree(root / "txt")
    return ws


def _check_documented_fields(folder):
    meta = json.loads((folder / "transforms.json").read_text())
    assert meta["camera_model"] in DOCUMENTED_MODELS
    for frame in meta["frames"]:
        values = {k: frame.get(k, meta.get(k)) for k in INTRINSIC_KEYS}
        assert all(isinstance(values[k], float) for k in ("fl_x", "fl_y", "cx", "cy")), values
        assert isinstance(values["w"], int) and isinstance(values["h"], int)
        for k in ("k1", "k2", "k3", "k4", "p1", "p2"):
            v = frame.get(k, meta.get(k, 0.0))
            assert isinstance(v, float)
        path = folder / frame["file_path"]
        assert not frame["file_path"].startswith("/") and path.is_file()
        h, w = cv2.imread(str(path)).shape[:2]
        assert (w, h) == (values["w"], values["h"])
        m = np.asarray(frame["transform_matrix"])
        assert m.shape == (4, 4) and m[3].tolist() == [0.0, 0.0, 0.0, 1.0]
        np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-12)
        assert np.linalg.det(m[:3, :3]) > 0
    return meta


def _nerfstudio_ray(meta, frame, uv):
    """A ray as nerfstudio builds it from transforms.json alone (pinhole part), for pixels ``(N, 2)``."""
    g = {k: frame.get(k, meta.get(k)) for k in INTRINSIC_KEYS}
    c2w = np.asarray(frame["transform_matrix"])
    d_cam = np.stack([(uv[:, 0] - g["cx"]) / g["fl_x"], -(uv[:, 1] - g["cy"]) / g["fl_y"], -np.ones(len(uv))], 1)
    return c2w[:3, 3], d_cam @ c2w[:3, :3].T


def test_export_matches_nerfstudio_conventions(orbit_ws, tmp_path):
    out = export_nerfstudio(orbit_ws, tmp_path / "ns")
    meta = _check_documented_fields(out)
    assert meta["camera_model"] == "PINHOLE" and "fl_x" in meta and len(meta["frames"]) == 24
    assert meta["frames"][0]["file_path"] == "images/view_000.png"
    model = read_model(orbit_ws.model)
    by_name = model.by_name()
    # rays built the nerfstudio way pass through the true 3D points the COLMAP camera sees at those pixels
    for frame in meta["frames"][:6]:
        im = by_name[frame["file_path"].split("/")[-1]]
        fx, fy, cx, cy = model.cameras[im.camera_id][3]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        X = model.points[:200]
        Xc = geometry.transform_points(im.cam_from_world, X)
        front = Xc[:, 2] > 0
        uv = geometry.pixels_from_cam(K, Xc[front])
        o, d = _nerfstudio_ray(meta, frame, uv)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        v = X[front] - o
        dist = np.linalg.norm(v - (v * d).sum(1, keepdims=True) * d, axis=1)
        assert dist.max() < 1e-8
        assert ((v * d).sum(1) > 0).all()  # in front: nerfstudio looks along -z
    # the sparse points as nerfstudio reads them (open3d)
    import open3d as o3d

    pcd = o3d.io.read_point_cloud(str(out / meta["ply_file_path"]))
    np.testing.assert_allclose(np.asarray(pcd.points), model.points, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pcd.colors) * 255, model.colors, atol=1e-3)


def test_round_trip_orbit(orbit_ws, tmp_path, capsys):
    assert main(["export", str(orbit_ws.root), "--format", "nerfstudio", "-o", str(tmp_path / "ns")]) == 0
    assert main(["import-nerfstudio", str(tmp_path / "ns" / "transforms.json"), "-o", str(tmp_path / "ws2")]) == 0
    assert "24 in" in capsys.readouterr().out
    back = read_model(Workspace(tmp_path / "ws2").model)
    assert len(back.points) == 0
    _assert_models_equal(read_model(orbit_ws.model), back)
    assert sorted(p.name for p in (tmp_path / "ws2" / "images").iterdir()) == sorted(
        p.name for p in orbit_ws.images.iterdir())
    # an imported workspace (no 3D points) trains: the model frame comes from the cameras alone
    from recon3d.nerf.config import preset_nerf_fast
    from recon3d.nerf.train import train

    cfg = dataclasses.replace(preset_nerf_fast(), steps=2, batch_rays=64, downscale=16.0, device="cpu")
    train(cfg, Workspace(tmp_path / "ws2"))
    assert json.loads((tmp_path / "ws2" / "nerf" / "metrics.json").read_text())["steps"] == 2


@pytest.mark.parametrize("fisheye", [False, True])
def test_round_trip_distortion_and_per_frame_intrinsics(tmp_path, fisheye):
    ws = _synthetic_ws(tmp_path / "ws", fisheye)
    out = export_nerfstudio(ws, tmp_path / "ns")
    meta = _check_documented_fields(out)
    if fisheye:
        assert meta["camera_model"] == "OPENCV_FISHEYE" and meta["k4"] == -0.0005
    else:
        assert meta["camera_model"] == "OPENCV" and "fl_x" not in meta
        f0 = meta["frames"][0]
        assert (f0["k1"], f0["k2"], f0["p1"], f0["p2"]) == (-0.12, 0.03, 0.001, -0.002)
    back = import_nerfstudio(out, tmp_path / "ws2")
    _assert_models_equal(read_model(ws.model), read_model(back.model))


def test_applied_transform_is_undone(orbit_ws, tmp_path):
    out = export_nerfstudio(orbit_ws, tmp_path / "ns")
    meta = json.loads((out / "transforms.json").read_text())
    A = np.eye(4)
    A[:3, :3] = geometry.rotmat_from_quat_wxyz(np.array([0.9, 0.1, -0.3, 0.2]))
    A[:3, 3] = [1.0, -2.0, 0.5]
    for f in meta["frames"]:
        f["transform_matrix"] = (A @ np.asarray(f["transform_matrix"])).tolist()
    meta["applied_transform"] = A[:3].tolist()
    (out / "transforms.json").write_text(json.dumps(meta))
    back = import_nerfstudio(out / "transforms.json", tmp_path / "ws2")
    _assert_models_equal(read_model(orbit_ws.model), read_model(back.model))


def _bad(tmp_path, capsys, mutate, expect):
    src = tmp_path / "ns"
    meta = json.loads((src / "transforms.json").read_text())
    text = mutate(meta, src)
    (src / "transforms.json").write_text(text if isinstance(text, str) else json.dumps(meta))
    target = tmp_path / "out"
    rc = main(["import-nerfstudio", str(src), "-o", str(target)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and expect in err, err
    assert not target.exists()  # nothing half-written


def test_bad_transforms(orbit_ws, tmp_path, capsys):
    export_nerfstudio(orbit_ws, tmp_path / "ns")
    good = (tmp_path / "ns" / "transforms.json").read_text()
    cases = [
        (lambda m, s: "{not json", "not valid JSON"),
        (lambda m, s: json.dumps({"fl_x": 1.0}), "no 'frames'"),
        (lambda m, s: (s / "images" / "view_003.png").unlink(), "missing image"),
        (lambda m, s: m["frames"][2].__setitem__("transform_matrix", [[1, 0, 0], [0, 1, 0]]), "frames[2].transform_matrix"),
        (lambda m, s: m["frames"][1]["transform_matrix"][0].__setitem__(0, 3.0), "not a rotation"),
        (lambda m, s: m.__setitem__("camera_model", "EQUIRECTANGULAR"), "not supported"),
        (lambda m, s: m.pop("fl_x"), "'fl_x' is missing"),
        (lambda m, s: m.__setitem__("w", 320), "image is 640x480"),
    ]
    for mutate, expect in cases:
        shutil.rmtree(tmp_path / "ns")
        export_nerfstudio(orbit_ws, tmp_path / "ns")
        assert (tmp_path / "ns" / "transforms.json").read_text() == good
        _bad(tmp_path, capsys, mutate, expect)
    rc = main(["import-nerfstudio", str(tmp_path / "nowhere.json"), "-o", str(tmp_path / "out")])
    assert rc == 2 and "no such file" in capsys.readouterr().err


def test_export_refuses_foreign_folder_and_missing_images(orbit_ws, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an earlier nerfstudio export"):
        export_nerfstudio(orbit_ws, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    ok = export_nerfstudio(orbit_ws, tmp_path / "ns_ok")
    (orbit_ws.images / "view_002.png").unlink()
    rc = main(["export", str(orbit_ws.root), "--format", "nerfstudio", "-o", str(tmp_path / "ns")])
    assert rc == 2 and "view_002.png" in capsys.readouterr().err and not (tmp_path / "ns").exists()
    # importing over an existing workspace needs --overwrite
    with pytest.raises(UserError, match="--overwrite"):
        import_nerfstudio(ok, orbit_ws.root)
