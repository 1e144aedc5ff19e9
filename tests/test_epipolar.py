"""Two-view geometry against synthetic ground truth (exact cameras and points)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon3d import geometry as g
from recon3d.geometry import epipolar as ep


def _rot(axis_angle_deg) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.radians(axis_angle_deg)).as_matrix()


@pytest.fixture(scope="module")
def two_view():
    """A general two-view scene: points in front of both cameras, distinct intrinsics."""
    rng = np.random.default_rng(3)
    K1 = np.array([[800.0, 0, 321.0], [0, 790.0, 239.0], [0, 0, 1]])
    K2 = np.array([[650.0, 0, 318.0], [0, 655.0, 245.0], [0, 0, 1]])
    R = _rot([4.0, -12.0, 3.0])
    t = np.array([-1.0, 0.15, 0.2])
    X = rng.uniform([-2, -1.5, 4], [2, 1.5, 9], (300, 3))
    x1 = g.pixels_from_cam(K1, X)
    x2 = g.pixels_from_cam(K2, X @ R.T + t)
    return dict(K1=K1, K2=K2, R=R, t=t, X=X, x1=x1, x2=x2, rng=rng)


class TestPureGeometry:
    def test_skew_is_cross_product(self):
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
        np.testing.assert_allclose((ep.skew(a) @ b[..., None])[..., 0], np.cross(a, b), atol=1e-12)

    def test_epipolar_constraint_of_true_pose(self, two_view):
        d = two_view
        F = ep.fundamental_from_pose(d["R"], d["t"], d["K1"], d["K2"])
        h1 = np.c_[d["x1"], np.ones(len(d["x1"]))]
        h2 = np.c_[d["x2"], np.ones(len(d["x2"]))]
        assert np.abs(np.einsum("ni,ij,nj->n", h2, F / np.linalg.norm(F), h1)).max() < 1e-12
        assert ep.sampson_distance(F, d["x1"], d["x2"]).max() < 1e-16
        assert ep.symmetric_epipolar_distance(F, d["x1"], d["x2"]).max() < 1e-16

    def test_e_f_round_trip(self, two_view):
        d = two_view
        E = ep.essential_from_pose(d["R"], d["t"])
        F = ep.fundamental_from_essential(E, d["K1"], d["K2"])
        np.testing.assert_allclose(ep.essential_from_fundamental(F, d["K1"], d["K2"]), E, atol=1e-12)

    def test_distances_of_a_displaced_point(self, two_view):
        """Moving x2 by 2 px perpendicular to its epipolar line gives 2 px line distance."""
        d = two_view
        F = ep.fundamental_from_pose(d["R"], d["t"], d["K1"], d["K2"])
        lines = ep.epipolar_lines(F, d["x1"][:10])
        x2 = d["x2"][:10] + 2.0 * lines[:, :2]
        d2, d1 = ep.epipolar_line_distances(F, d["x1"][:10], x2)
        np.testing.assert_allclose(d2, 2.0, rtol=1e-9)
        # Sampson is a first-order approximation of the geometric error: between the one-sided
        # distance split over both images and the full one
        s = ep.sampson_distance(F, d["x1"][:10], x2, squared=False)
        assert np.all(s > 0.5) and np.all(s <= 2.0 + 1e-9)
        sym = ep.symmetric_epipolar_distance(F, d["x1"][:10], x2)
        np.testing.assert_allclose(sym, d1 ** 2 + 4.0, rtol=1e-9)

    def test_batched_shapes(self, two_view):
        d = two_view
        F = ep.fundamental_from_pose(d["R"], d["t"], d["K1"], d["K2"])
        Fb = np.stack([F, F, F])
        x1b, x2b = np.stack([d["x1"]] * 3), np.stack([d["x2"]] * 3)
        assert ep.sampson_distance(Fb, x1b, x2b).shape == (3, 300)
        assert ep.symmetric_epipolar_distance(Fb, x1b, x2b).shape == (3, 300)
        assert ep.epipolar_lines(Fb, x1b).shape == (3, 300, 3)
        Rb = np.stack([d["R"]] * 4)
        tb = np.stack([d["t"]] * 4)
        assert ep.essential_from_pose(Rb, tb).shape == (4, 3, 3)
        R1, R2, t = ep.decompose_essential(ep.essential_from_pose(Rb, tb))
        assert R1.shape == (4, 3, 3) and t.shape == (4, 3)
        with pytest.raises(ValueError):
            ep.sampson_distance(F, d["x1"][:, :1], d["x2"])

    def test_decomposition_contains_true_pose(self, two_view):
        d = two_view
        R1, R2, t = ep.decompose_essential(ep.essential_from_pose(d["R"], d["t"]))
        # exact E through an SVD: ~5e-15 deg measured; 1e-9 leaves 1e5 x for other LAPACK builds
        assert min(g.rotation_angle_deg(R1, d["R"]), g.rotation_angle_deg(R2, d["R"])) < 1e-9
        assert min(g.angle_between_deg(t, d["t"]), g.angle_between_deg(-t, d["t"])) < 1e-9

    def test_cheirality_picks_the_true_pose(self, two_view):
        d = two_view
        n1 = ep.normalized_from_pixels(d["K1"], d["x1"])
        n2 = ep.normalized_from_pixels(d["K2"], d["x2"])
        R, t, front = ep.pose_from_essential(ep.essential_from_pose(d["R"], d["t"]), n1, n2)
        assert g.rotation_angle_deg(R, d["R"]) < 1e-9  # as above
        assert g.angle_between_deg(t, d["t"]) < 1e-9
        assert front.all()

    def test_triangulation_is_exact_on_noise_free_input(self, two_view):
        d = two_view
        P1 = d["K1"] @ np.eye(3, 4)
        P2 = d["K2"] @ np.concatenate([d["R"], d["t"][:, None]], axis=1)
        X = ep.triangulate(P1, P2, d["x1"], d["x2"])
        rel = np.linalg.norm(X - d["X"], axis=1) / np.linalg.norm(d["X"], axis=1)
        assert rel.max() < 1e-6
        Xb = ep.triangulate(np.stack([P1, P1]), np.stack([P2, P2]), np.stack([d["x1"]] * 2), np.stack([d["x2"]] * 2))
        assert Xb.shape == (2, 300, 3)


@pytest.mark.parametrize("method", ep.METHODS)
class TestRobustEstimation:
    def test_relative_pose_noise_free(self, two_view, method):
        d = two_view
        pose = ep.estimate_relative_pose(d["x1"], d["x2"], d["K1"], d["K2"], method=method, threshold=0.5)
        assert g.rotation_angle_deg(pose.R, d["R"]) < 0.1
        assert g.angle_between_deg(pose.t, d["t"]) < 0.5
        assert pose.inliers.all() and pose.in_front.all()

    def test_relative_pose_with_noise_and_outliers(self, two_view, method):
        d = two_view
        rng = np.random.default_rng(7)
        x1 = d["x1"] + rng.normal(0, 0.3, d["x1"].shape)
        x2 = d["x2"] + rng.normal(0, 0.3, d["x2"].shape)
        bad = rng.choice(len(x1), 60, replace=False)  # 20 % wrong matches
        x2[bad] = rng.uniform([0, 0], [640, 480], (60, 2))
        pose = ep.estimate_relative_pose(x1, x2, d["K1"], d["K2"], method=method, threshold=1.0)
        assert g.rotation_angle_deg(pose.R, d["R"]) < 0.2
        assert g.angle_between_deg(pose.t, d["t"]) < 1.0
        assert pose.inliers[bad].sum() <= 6 and pose.inliers.sum() >= 220
        F, inl = ep.estimate_fundamental(x1, x2, method=method, threshold=1.0)
        assert inl[bad].sum() <= 6 and inl.sum() >= 220
        Ftrue = ep.fundamental_from_pose(d["R"], d["t"], d["K1"], d["K2"])
        clean = np.setdiff1d(np.arange(len(x1)), bad)
        # F agrees with the true geometry on the clean matches (noise level ~0.3 px)
        assert np.median(ep.sampson_distance(F, d["x1"][clean], d["x2"][clean], squared=False)) < 0.3
        assert ep.sampson_distance(Ftrue, d["x1"], d["x2"]).max() < 1e-12

    def test_homography_of_a_plane(self, method):
        rng = np.random.default_rng(1)
        K = np.array([[700.0, 0, 320], [0, 700.0, 240], [0, 0, 1]])
        X = np.c_[rng.uniform(-1, 1, (100, 2)), np.full(100, 5.0)]  # plane z = 5
        R, t = _rot([0, 8, 2]), np.array([0.5, 0, 0.1])
        x1, x2 = g.pixels_from_cam(K, X), g.pixels_from_cam(K, X @ R.T + t)
        H, inl = ep.estimate_homography(x1, x2, method=method)
        n, dist = np.array([0, 0, 1.0]), 5.0
        H_true = K @ (R + np.outer(t, n) / dist) @ np.linalg.inv(K)
        np.testing.assert_allclose(H, H_true / H_true[2, 2], rtol=1e-4, atol=1e-6)
        h = np.c_[x1, np.ones(len(x1))] @ H.T
        assert np.abs(h[:, :2] / h[:, 2:] - x2).max() < 1e-4  # transfer error, pixels
        assert inl.all()

    def test_too_few_matches_is_a_value_error(self, two_view, method):
        d = two_view
        with pytest.raises(ValueError, match="only 5 correspondences"):
            ep.estimate_fundamental(d["x1"][:5], d["x2"][:5], method=method)


def test_unknown_method(two_view):
    with pytest.raises(ValueError, match="unknown robust estimator"):
        ep.estimate_fundamental(two_view["x1"], two_view["x2"], method="lmeds")


# ----------------------------------------------------------------------------- the command
def test_cli_on_rendered_views(orbit_scene, tmp_path, capsys):
    """`recon3d epipolar` with the true camera recovers the true relative pose of orbit neighbours
    (three pairs: two-view poses scatter by a tenth of a degree from pair to pair)."""
    from recon3d.cli import main
    from recon3d.io.colmap import read_model

    gt = read_model(orbit_scene / "gt" / "sparse" / "0").by_name()
    rot = []
    for i in (0, 6, 12):
        a, b = f"view_{i:03d}.png", f"view_{i + 1:03d}.png"
        out = tmp_path / f"pair{i}.png"
        rc = main(["epipolar", str(orbit_scene / "images" / a), str(orbit_scene / "images" / b),
                   "--camera", str(orbit_scene / "gt" / "camera.json"), "-o", str(out), "--json"])
        assert rc == 0
        res = json.loads(capsys.readouterr().out)
        assert out.is_file() and out.stat().st_size > 10_000
        rel = g.compose_rigid(gt[b].cam_from_world, g.invert_rigid(gt[a].cam_from_world))
        rot.append(g.rotation_angle_deg(np.array(res["R"]), rel[:, :3]))
        assert g.angle_between_deg(np.array(res["t"]), rel[:, 3]) < 2.0
        assert res["F_inliers"] > 50 and res["in_front"] > 0.9 * res["E_inliers"]
    assert np.median(rot) < 0.1 and max(rot) < 0.3, rot


def test_cli_bad_input(orbit_scene, tmp_path, capsys):
    from recon3d.cli import main

    a = orbit_scene / "images" / "view_000.png"
    assert main(["epipolar", str(a), str(tmp_path / "missing.png")]) == 2
    assert "no such photo" in capsys.readouterr().err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert main(["epipolar", str(a), str(junk)]) == 2
    assert "cannot be decoded" in capsys.readouterr().err
    assert main(["epipolar", str(a), str(a), "-o", str(tmp_path / "x.png")]) == 2
    assert "identical" in capsys.readouterr().err


def test_cli_turns_a_failed_estimate_into_one_line(orbit_scene, tmp_path, capsys, monkeypatch):
    """The estimators are pure geometry (ValueError); the command reports their failure as a UserError."""
    from recon3d.cli import main

    def no_model(*args, **kwargs):
        raise ValueError("no fundamental matrix found; the matches may be wrong or the views identical")

    monkeypatch.setattr(ep, "estimate_fundamental", no_model)
    a, b = orbit_scene / "images" / "view_000.png", orbit_scene / "images" / "view_001.png"
    assert main(["epipolar", str(a), str(b), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"recon3d epipolar: error: {a.name} / {b.name}: no fundamental matrix found; "
                                "the matches may be wrong or the views identical"]
    assert not (tmp_path / "x.png").exists()
