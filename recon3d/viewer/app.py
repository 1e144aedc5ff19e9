"""The viewer of a workspace: scene layers plus the GUI that toggles and explains them.

:class:`ViewerApp` fills a running viser server with whatever the workspace holds: camera
frustums with photo thumbnails (click one to fly there and see its photo), the sparse points
(coloured by RGB or by reprojection error, with a legend), the Gaussian splats of
``splat/point_cloud.ply``, stereo point clouds (``stereo/*.ply``), ground-truth cameras
(``gt/sparse/0``), renders of the current view by the trained NeRF or splats on demand and the report numbers.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recon3d.core.errors import UserError
from recon3d.core.workspace import Workspace
from recon3d.io.colmap import Model, read_model
from recon3d.viewer import colors as C
from recon3d.viewer import data as D
from recon3d.viewer.layers import Layer, add_cameras, add_points, set_splats
from recon3d.viewer.panels import RenderPanel, ReportsPanel, SelectedCameraPanel
from recon3d.viewer.server import has_camera


@dataclass
class ViewerConfig:
    """What the viewer draws and how much of it."""

    max_points: int = 300_000
    """Most points drawn per point layer (sparse, each stereo cloud); beyond it a random subset, count shown."""
    max_splats: int = 1_000_000
    """Most Gaussians sent to the browser; beyond it a random subset, count shown."""
    thumbnail_size: int = 160
    """Longest side, in pixels, of the photos drawn on the camera frustums."""
    max_thumbnails: int = 400
    """Beyond this many cameras the frustums are drawn without photos (keeps the page light)."""
    photo_size: int = 640
    """Longest side, in pixels, of the selected camera's photo in the panel."""
    render_size: int = 640
    """Longest side, in pixels, of on-demand renders (NeRF or splats) of the current view."""
    show_splats: bool = True
    """Load ``splat/point_cloud.ply`` when it exists."""


@dataclass
class WorkspaceContent:
    """Everything the viewer reads from a workspace, loaded before the server starts."""

    ws: Workspace
    model: Model
    views: list[D.CameraView]
    frame: D.SceneFrame
    reproj: D.Reprojection
    gt_views: list[D.CameraView] = field(default_factory=list)
    splat_path: Optional[Path] = None
    stereo_paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(layer, why) of optional layers that could not be read."""

    @classmethod
    def load(cls, ws: Workspace) -> "WorkspaceContent":
        """Read the model (``UserError`` when there is none) and find the optional layers."""
        ws.require_model()
        model = read_model(ws.model)
        views = D.camera_views(model, ws.images)
        gt_views: list[D.CameraView] = []
        skipped: list[tuple[str, str]] = []
        if any((ws.gt_model / f"cameras.{e}").is_file() for e in ("bin", "txt")):
            try:
                gt_views = D.camera_views(read_model(ws.gt_model))
            except UserError as exc:
                skipped.append(("ground-truth cameras", str(exc)))
        splat = ws.splat / "point_cloud.ply"
        stereo = sorted(ws.stereo.glob("*.ply")) if ws.stereo.is_dir() else []
        return cls(ws, model, views, D.scene_frame(views, model.points), D.reprojection_errors(model),
                   gt_views, splat if splat.is_file() else None, stereo, skipped)


class ViewerApp:
    """Scene layers and GUI of one workspace on a viser server.

    Args:
        server: a running ``viser.ViserServer`` (:func:`recon3d.viewer.server.start_server`).
        content: what to show (:meth:`WorkspaceContent.load`).
        config: sizes and limits.
        render_loader: ``load_renderer(ws) -> render`` for renders of the current view; default: the
            renderer the method registry names for the workspace's trained NeRF (else splats).
    """

    def __init__(self, server, content: WorkspaceContent, config: ViewerConfig | None = None,
                 render_loader=None):
        self.server = server
        self._render_loader = render_loader
        self.content = content
        self.config = config or ViewerConfig()
        self.layers: dict[str, Layer] = {}
        self.checkboxes: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._point_idx = np.zeros(0, np.int64)
        self._selected: int | None = None
        self._hidden: dict[str, set[int]] = {}  # camera layer -> frustums hidden because a view looks through them
        self._frustum_centers: dict[str, np.ndarray] = {}  # camera layer -> (M, 3) frustum apexes
        f = content.frame
        self.frustum_scale = float(np.clip(0.4 * f.camera_spacing, 0.01 * f.radius, 0.15 * f.radius))
        self.point_size = 0.004 * f.radius

    # ------------------------------------------------------------------------------- building
    def build(self, progress=None) -> list[tuple[str, str]]:
        """Add every layer and panel; returns summary rows (what is shown) for the terminal.

        Args:
            progress: optional ``tqdm``-like wrapper for the thumbnail loop.
        """
        c, cfg, scene, gui = self.content, self.config, self.server.scene, self.server.gui
        self._set_initial_view()
        thumbs: list = [None] * len(c.views)
        if len(c.views) <= cfg.max_thumbnails:
            items = list(enumerate(c.views))
            for i, v in (progress(items, desc="thumbnails", unit="img") if progress else items):
                thumbs[i] = D.load_thumbnail(v.image_path, cfg.thumbnail_size) if v.image_path else None
        self.layers["cameras"] = add_cameras(
            scene, "/cameras", "Cameras", [v.cam_from_world for v in c.views], c.views, self.frustum_scale,
            C.CAMERA_RGB, thumbs, on_click=lambda i, event: self.select_camera(i, event.client))
        self.layers["points"], self._point_idx = add_points(
            scene, "/points", "Sparse points", c.model.points, c.model.colors, self.point_size, cfg.max_points)
        rows = [("cameras", f"{len(c.views)}"), ("sparse points", _count(self.layers["points"]))]
        if c.splat_path is not None and cfg.show_splats:
            with _optional(rows, "splats"):
                self.load_splat_file(c.splat_path)
                rows.append(("splats", _count(self.layers["splats"])))
        for i, path in enumerate(c.stereo_paths):
            with _optional(rows, f"stereo {path.name}"):
                pts, col = D.read_point_ply(path)
                if len(pts) == 0:
                    raise ValueError("no points in this PLY")
                col = col if col is not None else np.tile(np.array([[200, 200, 200]], np.uint8), (len(pts), 1))
                layer, _ = add_points(scene, f"/stereo/{i:02d}_{path.stem}", f"Stereo {path.name}", pts, col,
                                      self.point_size * 0.5, cfg.max_points)
                self.layers[f"stereo:{path.name}"] = layer
                rows.append((f"stereo {path.name}", _count(layer) + " points"))
        if c.gt_views:
            poses, self.gt_note = D.align_gt_views(c.gt_views, c.views)
            self.layers["gt_cameras"] = add_cameras(scene, "/gt_cameras", "Ground-truth cameras", poses, c.gt_views,
                                                    self.frustum_scale, C.GT_CAMERA_RGB, visible=False)
            rows.append(("ground-truth cameras", f"{len(poses)} ({self.gt_note})"))
            self._frustum_centers["gt_cameras"] = np.array([p[:, :3].T @ -p[:, 3] for p in poses]).reshape(-1, 3)
        self._frustum_centers["cameras"] = np.array([v.center for v in c.views]).reshape(-1, 3)
        self.server.on_client_connect(self._watch_client)
        for client in list(self.server.get_clients().values()):
            self._watch_client(client)
        rows += [(what, f"skipped: {why}") for what, why in c.skipped]
        self._layers_folder = gui.add_folder("Layers", order=10)
        with self._layers_folder:
            self._layer_gui()
        with gui.add_folder("Selected camera", order=20) as folder:
            self.selected_panel = SelectedCameraPanel(gui, folder)
        with gui.add_folder("Render", order=30, expand_by_default=False):
            self.render_panel = RenderPanel(gui, c.ws, self.config.render_size, self._render_loader)
        with gui.add_folder("Reports", order=40, expand_by_default=False):
            self.reports_panel = ReportsPanel(gui, c.ws, on_reload=self.reload)
        return rows

    def _set_initial_view(self) -> None:
        """Open at a training camera (:func:`recon3d.viewer.data.home_view`), looking through it at the scene."""
        f, scene = self.content.frame, self.server.scene
        scene.set_up_direction(f.up)
        cam = self.server.initial_camera
        home = D.home_view(self.content.views)
        if home is not None:
            view = self.content.views[home]
            cam.position = view.center
            cam.look_at = view.center + view.world_from_cam[:, 2] * self._look_distance(view)
            cam.fov = view.fov_y
        else:
            cam.position = f.center + f.radius * (1.6 * np.array([1.0, 0.0, 0.0]) + 1.1 * f.up)
            cam.look_at = f.center
        cam.up = f.up
        cam.near = 0.002 * f.radius
        cam.far = 50.0 * f.radius

    def _look_distance(self, view: D.CameraView) -> float:
        """Depth of the scene centre along ``view``'s optical axis (the orbit centre when flying there)."""
        f = self.content.frame
        return float(np.clip((f.center - view.center) @ view.world_from_cam[:, 2], 0.05 * f.radius, 10 * f.radius))

    # ------------------------------------------------------- frustums the view looks through
    def _watch_client(self, client) -> None:
        client.camera.on_update(lambda _camera: self.update_hidden_frustums())

    def hidden_radius(self) -> tuple[float, float]:
        """``(size, around)``: a view whose eye is closer than ``size`` (the frustum size) to a camera
        looks through it; then the frustums closer than ``around`` (1.5 camera spacings: a neighbour in
        front of the eye covers a quarter of the view) are hidden with its own."""
        scale = float(getattr(getattr(self, "frustum_slider", None), "value", self.frustum_scale))
        return scale, max(scale, 1.5 * self.content.frame.camera_spacing)

    def update_hidden_frustums(self) -> None:
        """Hide the frustums (and photos) around any browser's eye; show the others again.

        A view that looks through a camera sits inside its frustum: the photo would cover the whole
        view (and its hover highlight tint it), and the next cameras' photos reach into the
        picture. Those frustums (:meth:`hidden_radius`, :func:`recon3d.viewer.data.frustums_at`) are
        hidden until every view has moved away.
        """
        eyes = [np.asarray(cl.camera.position, np.float64) for cl in list(self.server.get_clients().values())
                if has_camera(cl)]
        size, around = self.hidden_radius()
        with self._lock:
            for key, centers in self._frustum_centers.items():
                layer = self.layers.get(key)
                if layer is None or not len(centers):
                    continue
                inside = set(D.frustums_at(centers, np.array(eyes).reshape(-1, 3), size, around).tolist())
                before = self._hidden.get(key, set())
                for i in inside ^ before:
                    layer.handles[i].visible = i not in inside
                self._hidden[key] = inside

    def hidden_frustums(self, key: str = "cameras") -> set[int]:
        """Indices of layer ``key``'s frustums hidden because a view looks through them."""
        with self._lock:
            return set(self._hidden.get(key, set()))

    def _layer_gui(self) -> None:
        gui = self.server.gui
        self._next_order = 0.5  # layers added later (live splats) go right after these checkboxes
        for key, layer in self.layers.items():
            cb = gui.add_checkbox(layer.label, layer.visible, hint=f"show or hide {layer.name}",
                                  order=len(self.checkboxes) * 0.01)
            cb.on_update(lambda _e, key=key: self._toggle(key))
            self.checkboxes[key] = cb
        modes = ["RGB", "Reprojection error"]
        self.color_mode = gui.add_dropdown("Point colours", modes, initial_value="RGB",
                                           hint="colour the sparse points by their RGB or by their mean reprojection error")
        self.color_mode.on_update(lambda _e: self.set_point_colors(self.color_mode.value))
        self.legend = C.error_legend(self.content.reproj.point_error)
        self.legend_bar = gui.add_image(C.colorbar_image(), label=None, format="png", visible=False)
        self.legend_md = gui.add_markdown(self.legend.markdown(), visible=False)
        r = self.content.frame.radius
        self.point_size_slider = gui.add_slider("Point size", 0.0, _nice(0.03 * r), _nice(0.0005 * r),
                                                _nice(self.point_size))
        self.point_size_slider.on_update(lambda _e: self._set_point_size(self.point_size_slider.value))
        self.frustum_slider = gui.add_slider("Camera size", 0.0, _nice(0.3 * r), _nice(0.002 * r),
                                             _nice(self.frustum_scale))
        self.frustum_slider.on_update(lambda _e: self._set_frustum_scale(self.frustum_slider.value))
        if "gt_cameras" in self.layers:
            gui.add_markdown(f"<small>Ground truth: {self.gt_note}</small>")

    # ------------------------------------------------------------------------------ handlers
    def _toggle(self, key: str) -> None:
        self.layers[key].visible = self.checkboxes[key].value

    def set_point_colors(self, mode: str) -> None:
        """Colour the sparse points by ``'RGB'`` or ``'Reprojection error'`` (shows the legend)."""
        layer = self.layers["points"]
        if not layer.handles:
            return
        idx = self._point_idx
        if mode == "Reprojection error":
            colors = C.colorize(self.content.reproj.point_error[idx], self.legend.vmin, self.legend.vmax)
        else:
            colors = self.content.model.colors[idx]
        layer.handles[0].colors = np.ascontiguousarray(colors)
        self.legend_bar.visible = self.legend_md.visible = mode != "RGB"

    def _set_point_size(self, size: float) -> None:
        for key, layer in self.layers.items():
            if key == "points" or key.startswith("stereo:"):
                for h in layer.handles:
                    h.point_size = size if key == "points" else size * 0.5

    def _set_frustum_scale(self, scale: float) -> None:
        for key in ("cameras", "gt_cameras"):
            for h in self.layers.get(key, Layer("", "", None)).handles:
                h.scale = scale
                h.thickness = scale * 0.03
        self.update_hidden_frustums()

    def select_camera(self, index: int, client=None) -> None:
        """Fly ``client``'s view (all clients when ``None``) to camera ``index`` and show its photo.

        The client camera gets the camera's ``world_from_cam`` rotation and centre and its vertical
        field of view; the orbit centre is put at the scene's depth along the optical axis.
        """
        view = self.content.views[index]
        clients = [client] if client is not None else list(self.server.get_clients().values())
        for cl in clients:
            if cl is not None:
                fly_to(cl, view.world_from_cam, view.fov_y, self._look_distance(view))
        self.update_hidden_frustums()  # the server already holds the new pose; the browser's report follows
        with self._lock:
            cams = self.layers["cameras"].handles
            if self._selected is not None and self._selected < len(cams):
                cams[self._selected].color = C.CAMERA_RGB
            cams[index].color = C.SELECTED_RGB
            self._selected = index
        err = self.content.reproj.image_error.get(view.image_id, (float("nan"), 0))
        photo = D.load_thumbnail(view.image_path, self.config.photo_size) if view.image_path else None
        self.selected_panel.show(view, err, photo)

    def load_splat_file(self, path: Path) -> None:
        """(Re)load a 3DGS PLY into the ``splats`` layer."""
        from recon3d.io.gaussians_ply import read_splat_ply

        s = read_splat_ply(path)
        arrays = D.splat_arrays(s.means, s.scales, s.quats, s.opacities, s.rgb, self.config.max_splats,
                                log_scales=True, logit_opacities=True)
        self.set_splats(arrays)
        self._splat_mtime = path.stat().st_mtime

    def set_splats(self, arrays: D.SplatArrays) -> None:
        """Show (or replace) the Gaussian splats; updates the layer's checkbox label."""
        with self._lock:
            layer = set_splats(self.server.scene, self.layers.get("splats"), "/splats", "Splats", arrays)
            self.layers["splats"] = layer
            if "splats" in self.checkboxes:
                self.checkboxes["splats"].label = layer.label

    def reload(self) -> None:
        """Re-read what may have changed on disk: the reports and a newer ``splat/point_cloud.ply``."""
        path = self.content.ws.splat / "point_cloud.ply"
        if self.config.show_splats and path.is_file() and path.stat().st_mtime != getattr(self, "_splat_mtime", None):
            self.load_splat_file(path)
            self.ensure_checkbox("splats")

    def ensure_checkbox(self, key: str) -> None:
        """Give layer ``key`` (added after :meth:`build`) its checkbox in the Layers panel."""
        if key in self.checkboxes or key not in self.layers:
            return
        with self._layers_folder:
            cb = self.server.gui.add_checkbox(self.layers[key].label, self.layers[key].visible, order=self._next_order)
        self._next_order += 0.01
        cb.on_update(lambda _e: self._toggle(key))
        self.checkboxes[key] = cb


def _nice(x: float) -> float:
    """``x`` rounded to 3 significant digits (slider bounds and steps of any scene scale)."""
    return float(f"{x:.3g}")


def _count(layer: Layer) -> str:
    return f"{layer.shown:,}" if layer.shown == layer.total else f"{layer.shown:,} of {layer.total:,}"


@contextlib.contextmanager
def _optional(rows: list, what: str):
    """Run the block; if the optional layer cannot be read, add a ``(what, "skipped: why")`` row instead."""
    try:
        yield
    except (UserError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        rows.append((what, f"skipped: {first}"))


def fly_to(client, world_from_cam: np.ndarray, fov_y: float, look_distance: float) -> None:
    """Move a client's view to a camera pose.

    Args:
        client: a viser ``ClientHandle`` (skipped until its browser reported a camera).
        world_from_cam: ``(3, 4)`` pose (OpenCV camera frame, like viser's client camera).
        fov_y: vertical field of view, radians.
        look_distance: distance along the optical axis of the new orbit centre.
    """
    from recon3d import geometry

    if not has_camera(client):
        return
    R, c = world_from_cam[:, :3], world_from_cam[:, 3]
    with client.atomic():
        client.camera.wxyz = geometry.quat_wxyz_from_rotmat(R)
        client.camera.position = c
        client.camera.look_at = c + R[:, 2] * look_distance
        client.camera.fov = float(fov_y)
