"""Geometry conventions: quaternions, rigid transforms, look-at, intrinsics and distortion."""

import numpy as np
import pytest

from recon3d import geometry as g


def random_rotations(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return g.rotmat_from_quat_wxyz(q)


class TestQuaternions:
    def test_round_trip(self):
        R = random_rotations(50)
        q = g.quat_wxyz_from_rotmat(R)
        assert q.shape == (50, 4)
        assert np.all(q[:, 0] >= 0)
        np.testing.assert_allclose(g.rotmat_from_quat_wxyz(q), R, atol=1e-12)

    def test_identity_and_order(self):
        np.testing.assert_allclose(g.rotmat_from_quat_wxyz([1, 0, 0, 0]), np.eye(3))
        # 90 deg about z: (w, x, y, z) = (cos 45, 0, 0, sin 45) maps x to y
        R = g.rotmat_from_quat_wxyz([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
        np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)

    def test_rotations_are_proper(self):
        R = random_rotations(20, seed=1)
        np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)

    def test_shape_check(self):
        with pytest.raises(ValueError, match=r"\(\*, 4\)"):
            g.rotmat_from_quat_wxyz(np.zeros((3, 3)))


class TestRigid:
    def test_invert_compose(self):
        R = random_rotations(10)
        t = np.random.default_rng(2).normal(size=(10, 3, 1))
        a_from_b = np.concatenate([R, t], axis=-1)
        ident = g.compose_rigid(a_from_b, g.invert_rigid(a_from_b))
        np.testing.assert_allclose(ident, np.broadcast_to(np.eye(3, 4), ident.shape), atol=1e-12)

    def test_transform_points_and_centers(self):
        R = random_rotations(1)[0]
        C = np.array([1.0, 2.0, 3.0])
        cam_from_world = np.concatenate([R, (-R @ C)[:, None]], axis=1)
        np.testing.assert_allclose(g.camera_centers(cam_from_world), C, atol=1e-12)
        np.testing.assert_allclose(g.transform_points(cam_from_world, C[None]), [[0, 0, 0]], atol=1e-12)

    def test_rotation_angle(self):
        Rz = g.rotmat_from_quat_wxyz([np.cos(np.radians(10)), 0, 0, np.sin(np.radians(10))])
        assert g.rotation_angle_deg(np.eye(3), Rz) == pytest.approx(20.0)

    def test_rotation_angle_is_accurate_near_0_and_180(self):
        # arccos of the trace bottoms out near 1e-6 deg; atan2 of the skew part and the trace does not
        R = random_rotations(20, seed=3)
        assert np.all(g.rotation_angle_deg(R, R) < 1e-10)  # identity
        for theta in (1e-8, 1e-5, 0.3, 90.0, 179.0, 180.0):  # radians below 0.3, degrees from 0.3 on
            rad = theta if theta < 0.3 else np.radians(theta)
            axis = np.random.default_rng(4).normal(size=(20, 3))
            axis /= np.linalg.norm(axis, axis=1, keepdims=True)
            D = g.rotmat_from_quat_wxyz(np.c_[np.full(20, np.cos(rad / 2)), np.sin(rad / 2) * axis])
            got = np.radians(g.rotation_angle_deg(np.eye(3), D))
            np.testing.assert_allclose(got, rad, rtol=1e-9)  # the matrix entries carry the angle exactly
            # composed with arbitrary rotations the angle is good to ~1e-16 rad (rounding of R @ D)
            np.testing.assert_allclose(np.radians(g.rotation_angle_deg(R, R @ D)), rad, rtol=1e-6, atol=1e-14)

    def test_rotation_angle_batches(self):
        R = random_rotations(6).reshape(2, 3, 3, 3)
        assert g.rotation_angle_deg(R, R).shape == (2, 3)
        assert g.rotation_angle_deg(np.eye(3), R).shape == (2, 3)  # broadcast
        assert g.rotation_angle_deg(np.eye(3), np.eye(3)).shape == ()
        with pytest.raises(ValueError):
            g.rotation_angle_deg(np.eye(3), np.eye(4))

    def test_angle_between(self):
        a = np.array([1.0, 0, 0])
        assert g.angle_between_deg(a, a) == 0.0
        assert g.angle_between_deg(a, -a) == pytest.approx(180.0)
        assert g.angle_between_deg(a, [0, 3.0, 0]) == pytest.approx(90.0)  # lengths do not matter
        assert g.angle_between_deg(a, np.zeros(3)) == 0.0
        tiny = np.array([1.0, 1e-8, 0])  # 1e-8 rad: arccos of the dot product would give 0 or 1e-6 deg
        assert np.radians(g.angle_between_deg(a, tiny)) == pytest.approx(1e-8, rel=1e-9)
        v = np.random.default_rng(5).normal(size=(4, 5, 3))
        assert g.angle_between_deg(v, v).shape == (4, 5) and np.all(g.angle_between_deg(v, v) < 1e-10)


class TestLookAt:
    def test_camera_looks_at_target_upright(self):
        eye = np.array([5.0, 0.0, 2.0])
        P = g.cam_from_world_look_at(eye, np.zeros(3))
        target_cam = g.transform_points(P, np.zeros((1, 3)))[0]
        assert target_cam[0] == pytest.approx(0, abs=1e-12) and target_cam[1] == pytest.approx(0, abs=1e-12)
        assert target_cam[2] > 0
        # world up appears up in the image: a point above the target has smaller image y
        above = g.transform_points(P, np.array([[0.0, 0.0, 1.0]]))[0]
        assert above[1] < 0
        assert np.linalg.det(P[:, :3]) == pytest.approx(1.0)


class TestIntrinsics:
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])

    def test_pixel_convention_round_trip(self):
        Kcv = g.K_opencv_from_colmap(self.K)
        assert Kcv[0, 2] == 319.5 and Kcv[1, 2] == 239.5
        np.testing.assert_allclose(g.K_colmap_from_opencv(Kcv), self.K)

    def test_centre_pixel_ray(self):
        grid = g.pixel_grid(640, 480)
        assert grid[0, 0].tolist() == [0.5, 0.5]
        # the principal point (320, 240) is the corner between four pixels
        np.testing.assert_allclose(g.rays_cam_from_pixels(self.K, np.array([320.0, 240.0])), [0, 0, 1])

    def test_project_unproject(self):
        pts = np.random.default_rng(3).uniform([-1, -1, 2], [1, 1, 6], size=(100, 3))
        uv = g.pixels_from_cam(self.K, pts)
        rays = g.rays_cam_from_pixels(self.K, uv)
        np.testing.assert_allclose(rays * pts[:, 2:], pts, atol=1e-10)

    def test_distortion_round_trip(self):
        dist = [-0.28, 0.09, 0.0012, -0.0008, -0.015]
        xy = np.random.default_rng(4).uniform(-0.6, 0.6, size=(1000, 2))
        back = g.undistort_normalized(g.distort_normalized(xy, dist), dist)
        np.testing.assert_allclose(back, xy, atol=1e-10)

    def test_distortion_matches_opencv(self):
        import cv2

        dist = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.015])
        pts = np.random.default_rng(5).uniform([-1, -1, 2], [1, 1, 4], size=(50, 3))
        ours = g.pixels_from_cam_distorted(self.K, dist, pts)
        cv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), g.K_opencv_from_colmap(self.K), dist)
        np.testing.assert_allclose(ours, cv[:, 0] + 0.5, atol=1e-9)
