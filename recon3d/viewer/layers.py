"""Scene layers: the viser nodes for cameras, points, splats and stereo clouds.

Every layer lives under one parent frame (``/cameras``, ``/points``, ``/splats``, ``/stereo``,
``/gt_cameras``), so a GUI checkbox toggles it by the parent's visibility. viser frames are
``world_from_local`` (wxyz, position); its camera frustums use the OpenCV camera frame
(+z forward, +x right, +y down) like recon3d, so a camera's frustum is placed with the rotation
and centre of its ``world_from_cam`` as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from recon3d import geometry
from recon3d.viewer.data import CameraView, SplatArrays


def node_name(parent: str, index: int, label: str) -> str:
    """A scene-tree name ``parent/NNNN_label`` safe for viser (no slashes or odd characters)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")[:48]
    return f"{parent}/{index:04d}_{safe}" if safe else f"{parent}/{index:04d}"


@dataclass
class Layer:
    """A toggleable group of scene nodes under one parent frame."""

    name: str
    """Parent node, e.g. ``/cameras``."""
    label: str
    """What the GUI calls it, with counts, e.g. ``Cameras (24)``."""
    parent: Any
    """The parent frame handle; its ``visible`` toggles the layer."""
    handles: list = field(default_factory=list)
    """Child node handles."""
    shown: int = 0
    """How many items are drawn."""
    total: int = 0
    """How many items exist (more than ``shown`` when subsampled)."""

    @property
    def visible(self) -> bool:
        return bool(self.parent.visible)

    @visible.setter
    def visible(self, value: bool) -> None:
        self.parent.visible = bool(value)


def _parent(scene, name: str, visible: bool):
    return scene.add_frame(name, show_axes=False, visible=visible)


def count_label(title: str, shown: int, total: int) -> str:
    """``Title (1,234)`` or ``Title (50,000 of 1,234,567)`` when subsampled."""
    return f"{title} ({shown:,})" if shown == total else f"{title} ({shown:,} of {total:,})"


def add_cameras(scene, name: str, title: str, poses: Sequence[np.ndarray], views: Sequence[CameraView],
                scale: float, color: tuple[int, int, int], images: Sequence[np.ndarray | None] | None = None,
                on_click: Callable[[int, Any], None] | None = None, visible: bool = True) -> Layer:
    """Camera frustums, one per view.

    Args:
        scene: ``server.scene``.
        name: parent node name.
        title: GUI label stem.
        poses: ``(3, 4)`` cam_from_world per view (GT poses may differ from ``views``' own).
        views: intrinsics (fov, aspect) and names.
        scale: frustum depth in world units.
        color: RGB of the frustum lines.
        images: optional ``(h, w, 3)`` uint8 thumbnail per view, drawn on the image plane.
        on_click: called as ``on_click(index, event)`` when a frustum is clicked.
    """
    parent = _parent(scene, name, visible)
    handles = []
    for i, (pose, view) in enumerate(zip(poses, views)):
        wfc = geometry.invert_rigid(np.asarray(pose, np.float64))
        image = images[i] if images is not None else None
        h = scene.add_camera_frustum(
            node_name(name, i, view.name), fov=view.fov_y, aspect=view.aspect, scale=scale,
            thickness=scale * 0.03, color=color, image=image, format="jpeg", jpeg_quality=80,
            wxyz=geometry.quat_wxyz_from_rotmat(wfc[:, :3]), position=wfc[:, 3],
            cast_shadow=False, receive_shadow=False,
        )
        if on_click is not None:
            h.on_click(lambda event, i=i: on_click(i, event))
        handles.append(h)
    return Layer(name, count_label(title, len(handles), len(handles)), parent, handles, len(handles), len(handles))


def add_points(scene, name: str, title: str, points: np.ndarray, colors: np.ndarray, point_size: float,
               max_points: int, visible: bool = True) -> tuple[Layer, np.ndarray]:
    """A point cloud layer, subsampled to ``max_points``.

    Args:
        points: ``(P, 3)`` world points; colors: ``(P, 3)`` uint8.
    Returns:
        ``(layer, indices (M,))``: the indices of the drawn points (to recolour them later).
    """
    from recon3d.viewer.data import subsample_indices

    parent = _parent(scene, name, visible)
    idx = subsample_indices(len(points), max_points)
    layer = Layer(name, count_label(title, len(idx), len(points)), parent, [], len(idx), len(points))
    if len(idx):
        layer.handles.append(scene.add_point_cloud(
            f"{name}/cloud", np.ascontiguousarray(points[idx], np.float32), np.ascontiguousarray(colors[idx]),
            point_size=point_size, point_shape="rounded", precision="float32", point_shading="flat"))
    return layer, idx


def set_splats(scene, layer: Layer | None, name: str, title: str, arrays: SplatArrays, visible: bool = True) -> Layer:
    """Add (or replace) a Gaussian splat layer.

    viser wants covariances ``(N, 3, 3)``, colours ``(N, 3)`` and opacities ``(N, 1)`` in [0, 1]
    (see :func:`recon3d.viewer.data.splat_arrays`). Replacing keeps the parent and its visibility.
    """
    if layer is None:
        layer = Layer(name, "", _parent(scene, name, visible))
    for h in layer.handles:
        h.remove()
    layer.handles = []
    if len(arrays.centers):
        layer.handles.append(scene.add_gaussian_splats(
            f"{name}/gaussians", centers=arrays.centers, covariances=arrays.covariances,
            rgbs=arrays.rgbs, opacities=arrays.opacities))
    layer.shown, layer.total = len(arrays.centers), arrays.total
    layer.label = count_label(title, layer.shown, layer.total)
    return layer
