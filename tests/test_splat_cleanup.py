"""The end-of-training cleanup (recon3d.splat.cleanup) on synthetic Gaussians with known visibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon3d.splat.cleanup import cleanup_mask, prune_params, visibility_counts


def _pose(center, R) -> np.ndarray:
    R = np.asarray(R, np.float64)
    return np.concatenate([R, (-R @ np.asarray(center, np.float64))[:, None]], axis=1)


# Three cameras 5 units behind the origin along -z, at x = -1, 0, 1, looking along +z (100 x 100 px,
# f = 100), and a fourth at x = 5 looking back along -x at the origin.
FORWARD = np.eye(3)
SIDE = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # rows: x, y, z axes of the camera
POSES = np.stack([_pose((-1, 0, -5), FORWARD), _pose((0, 0, -5), FORWARD), _pose((1, 0, -5), FORWARD),
                  _pose((5, 0, 0), SIDE)])
K = np.tile(np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]), (4, 1, 1))
SIZES = np.tile([100, 100], (4, 1))

POINTS = np.array([
    [0.0, 0.0, 0.0],     # the origin: all four
    [-1.0, 0.0, -4.5],   # half a unit in front of camera 0: only it (the others see it far off-image)
    [0.0, 0.0, -10.0],   # behind the three forward cameras, far left of the side camera's image: none
    [100.0, 0.0, 0.0],   # behind the side camera, far off the forward cameras' images: none
    [2.5, 0.0, 0.0],     # in front of the side camera; u = 50 + 100 * 2.5 / 5 = 100 (the edge) for camera 1,
                         # off-image for camera 0 (u = 120) and inside for camera 2 (u = 80): three
    [0.0, 0.6, 0.0],     # v = 50 + 100 * 0.6 / 5 = 62 for the forward ones; side camera: v = 50 + 100 * 0.6 / 5: four
])
EXPECTED = np.array([4, 1, 0, 0, 3, 4])


def test_visibility_counts_match_the_geometry():
    counts = visibility_counts(POINTS, POSES, K, SIZES)
    assert counts.dtype == np.int64 and counts.shape == (len(POINTS),)
    np.testing.assert_array_equal(counts, EXPECTED)
    # one camera at a time: in front and inside its image
    assert visibility_counts(POINTS, POSES[3:], K[3:], SIZES[3:]).tolist() == [1, 0, 0, 0, 1, 1]
    # with a radius, the image bounds grow by its projection: 0.3 at depth 5 is 6 px for f = 100
    just_out = np.array([[-1.0, 2.55, 0.0]])  # v = 50 + 100 * 2.55 / 5 = 101 for the forward cameras
    assert visibility_counts(just_out, POSES[:3], K[:3], SIZES[:3]).tolist() == [0]
    assert visibility_counts(just_out, POSES[:3], K[:3], SIZES[:3], radii=[0.3]).tolist() == [3]
    assert visibility_counts(just_out, POSES[:3], K[:3], SIZES[:3], radii=[0.01]).tolist() == [0]
    with pytest.raises(ValueError, match="one of each per camera"):
        visibility_counts(POINTS, POSES, K[:2], SIZES)


def test_cleanup_removes_unseen_then_huge_and_faint():
    n = len(POINTS)
    scales = np.full((n, 3), 0.05)
    opacities = np.full(n, 0.8)
    scales[5] = [3.0, 0.1, 0.1]   # huge (3 > 0.05 x scene scale 2) ...
    opacities[5] = 0.01           # ... and faint: goes
    scales[0] = [3.0, 3.0, 3.0]   # huge but opaque: stays
    scales[3] = [3.0, 3.0, 3.0]   # huge and faint and unseen (far off every image even with its 3 sigma): unseen
    opacities[3] = 0.01
    clean = cleanup_mask(POINTS, scales, opacities, POSES, K, SIZES, scene_scale=2.0)
    assert clean.keep.tolist() == [True, False, False, False, True, False]
    assert (clean.unseen, clean.huge_faint, clean.removed) == (3, 1, 4)
    # thresholds off: all stay; min_views=1 keeps the point only camera 0 sees
    off = cleanup_mask(POINTS, scales, opacities, POSES, K, SIZES, 2.0, min_views=0, faint_opacity=0.0)
    assert off.keep.all() and off.removed == 0
    one = cleanup_mask(POINTS, scales, opacities, POSES, K, SIZES, 2.0, min_views=1, faint_opacity=0.0)
    assert one.keep.tolist() == [True, True, False, False, True, True]


def test_prune_params_keeps_rows_in_order():
    n = 5
    params = {"means": torch.nn.Parameter(torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)),
              "opacities": torch.nn.Parameter(torch.arange(n, dtype=torch.float32)),
              "shN": torch.nn.Parameter(torch.zeros(n, 3, 3))}
    keep = np.array([True, False, True, True, False])
    out = prune_params(params, keep)
    assert out["means"].shape == (3, 3) and out["shN"].shape == (3, 3, 3)
    assert out["opacities"].tolist() == [0.0, 2.0, 3.0]
    assert not out["means"].requires_grad
