"""Pure geometry: conventions, transforms, cameras, epipolar geometry, alignment, reprojection.

Nothing here imports the rest of recon3d; bad input raises ``ValueError``, which the stages turn
into a one-line :class:`recon3d.core.errors.UserError`. The conventions (``cam_from_world``,
quaternions ``wxyz``, COLMAP pixel centres, z-depth) are stated once, in
:mod:`recon3d.geometry.transforms`, whose functions this package re-exports.
"""

from recon3d.geometry.transforms import (
    PIXEL_CENTER_OFFSET,
    K_colmap_from_opencv,
    K_opencv_from_colmap,
    angle_between_deg,
    cam_from_world_look_at,
    camera_centers,
    check_last,
    compose_rigid,
    distort_normalized,
    invert_rigid,
    pixel_grid,
    pixels_from_cam,
    pixels_from_cam_distorted,
    quat_wxyz_from_rotmat,
    rays_cam_from_pixels,
    rays_cam_from_pixels_distorted,
    rotation_angle_deg,
    rotmat_from_quat_wxyz,
    transform_points,
    undistort_normalized,
)

__all__ = [
    "PIXEL_CENTER_OFFSET",
    "check_last",
    "rotmat_from_quat_wxyz",
    "quat_wxyz_from_rotmat",
    "rotation_angle_deg",
    "angle_between_deg",
    "invert_rigid",
    "compose_rigid",
    "transform_points",
    "camera_centers",
    "cam_from_world_look_at",
    "K_opencv_from_colmap",
    "K_colmap_from_opencv",
    "pixels_from_cam",
    "rays_cam_from_pixels",
    "pixel_grid",
    "distort_normalized",
    "undistort_normalized",
    "pixels_from_cam_distorted",
    "rays_cam_from_pixels_distorted",
]
