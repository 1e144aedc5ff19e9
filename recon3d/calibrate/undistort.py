"""Undistortion: photos through a calibrated lens -> photos of an ideal pinhole camera.

  new = undistorted_camera(camera, alpha=0.0)      # the pinhole camera of the output images
  out = undistort_image(image, camera, new)        # (H', W'[, C]) image
  undistort_images([Path("photos/")], Path("camera.json"), Path("out"), UndistortConfig())  # -> StageResult

:func:`undistort_images` writes ``OUT/images/<same names>`` and ``OUT/camera.json`` (model
pinhole, no distortion), so ``OUT`` is a workspace: ``recon3d sfm OUT/images --camera
OUT/camera.json`` or any tool that wants undistorted photos can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from recon3d import geometry
from recon3d.core.config import option, validate
from recon3d.core.errors import UserError
from recon3d.core.progress import summary
from recon3d.core.workspace import StageResult
from recon3d.geometry.camera import Camera
from recon3d.io.cameras import load_camera, save_camera


@dataclass
class UndistortConfig:
    """How to undistort."""

    alpha: float = 0.0
    """0: crop to pixels that are valid everywhere (no black border); 1: keep every source pixel
    (black corners); values in between blend the two."""
    interpolation: str = "cubic"
    """Resampling: 'nearest', 'linear', 'cubic' or 'lanczos'."""
    jpeg_quality: int = option(95, min=0, max=100)
    """Quality of JPEG outputs (outputs keep their input's format)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"--alpha {self.alpha}: must lie between 0 (crop) and 1 (keep all pixels)")
        if self.interpolation not in _INTERP:
            raise UserError(f"--interpolation {self.interpolation!r}: use one of {', '.join(_INTERP)}")


_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
           "lanczos": cv2.INTER_LANCZOS4}


def undistorted_camera(camera: Camera, alpha: float = 0.0) -> Camera:
    """The pinhole camera (same image size, no distortion) that undistorted images are taken with.

    The focal lengths keep their ratio (pixels keep their shape); they are scaled, and the
    principal point moved, so that the undistorted view fills the image.

    Args:
        camera: the calibrated lens.
        alpha: 0 keeps only pixels valid everywhere (no black border); 1 keeps all source pixels.
    Returns:
        a :class:`Camera` with model 'pinhole', zero distortion, K in COLMAP pixel centres
        (``extras["alpha"]`` records ``alpha``).
    """
    W, H = camera.width, camera.height
    n = 64
    t = np.linspace(0.0, 1.0, n)
    edges = {"left": np.stack([np.zeros(n), t * H], 1), "right": np.stack([np.full(n, W), t * H], 1),
             "top": np.stack([t * W, np.zeros(n)], 1), "bottom": np.stack([t * W, np.full(n, H)], 1)}
    xy = {k: camera.rays(v)[:, :2] for k, v in edges.items()}
    if not all(np.all(np.isfinite(v)) for v in xy.values()):
        raise UserError("this calibration maps some image borders to infinity (a fisheye beyond 180 deg?); "
                        "undistort a smaller field of view")
    inner = (xy["left"][:, 0].max(), xy["right"][:, 0].min(), xy["top"][:, 1].max(), xy["bottom"][:, 1].min())
    allxy = np.concatenate(list(xy.values()))
    outer = (allxy[:, 0].min(), allxy[:, 0].max(), allxy[:, 1].min(), allxy[:, 1].max())
    fx, fy = camera.K[0, 0], camera.K[1, 1]

    def fit(rect, cover: bool):
        x0, x1, y0, y1 = rect
        if not (x1 > x0 and y1 > y0):
            raise UserError("could not find an undistorted view for this calibration (is its distortion extreme?); "
                            "try --alpha 1")
        sx, sy = W / ((x1 - x0) * fx), H / ((y1 - y0) * fy)
        return max(sx, sy) if cover else min(sx, sy), (x0 + x1) / 2, (y0 + y1) / 2

    s0, mx0, my0 = fit(inner, cover=True)
    s1, mx1, my1 = fit(outer, cover=False)
    scale = s0 + alpha * (s1 - s0)
    mx, my = mx0 + alpha * (mx1 - mx0), my0 + alpha * (my1 - my0)
    K = np.array([[scale * fx, 0.0, W / 2 - scale * fx * mx], [0.0, scale * fy, H / 2 - scale * fy * my], [0, 0, 1]])
    return Camera(W, H, K, np.zeros(0), "pinhole", extras={"alpha": float(alpha)})


def undistort_maps(camera: Camera, new: Camera) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps, each ``(new.height, new.width)`` float32, from the distorted image to ``new``."""
    size = (new.width, new.height)
    if camera.model == "fisheye":
        return cv2.fisheye.initUndistortRectifyMap(camera.K_opencv, camera.dist[:4], np.eye(3), new.K_opencv, size,
                                                   cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(camera.K_opencv, camera.dist, None, new.K_opencv, size, cv2.CV_32FC1)


def undistort_image(image: np.ndarray, camera: Camera, new: Camera | None = None,
                    interpolation: str = "cubic") -> np.ndarray:
    """Undistort one image, ``(H, W[, C]) -> (new.height, new.width[, C])``.

    Args:
        image: taken with ``camera`` (same size).
        new: the output camera (default :func:`undistorted_camera` with alpha 0).
    """
    new = new or undistorted_camera(camera)
    if image.shape[:2] != (camera.height, camera.width):
        raise UserError(f"image is {image.shape[1]}x{image.shape[0]} but the camera {camera.width}x{camera.height}")
    m1, m2 = undistort_maps(camera, new)
    return cv2.remap(image, m1, m2, _INTERP[interpolation], borderMode=_border(new))


def _border(new: Camera) -> int:
    # alpha 0: every output pixel has a source; replicating only avoids dark seams where the
    # interpolation kernel touches the source's edge. Otherwise outside pixels are black.
    return cv2.BORDER_REPLICATE if new.extras.get("alpha") == 0.0 else cv2.BORDER_CONSTANT


def undistort_points(camera: Camera, pixels: np.ndarray, new: Camera) -> np.ndarray:
    """Where distorted pixels land in the undistorted image, ``(N, 2) -> (N, 2)`` (COLMAP centres)."""
    return geometry.pixels_from_cam(new.K, camera.rays(np.asarray(pixels, np.float64)))


def camera_for_size(camera: Camera, width: int, height: int, where: str) -> Camera:
    """``camera`` for images of another size: exact for a uniform resize, otherwise a :class:`UserError`."""
    if (width, height) == (camera.width, camera.height):
        return camera
    fx, fy = width / camera.width, height / camera.height
    if abs(fx - fy) > 1e-3 * max(fx, fy) + 1.0 / min(camera.width, camera.height):
        raise UserError(f"{where}: image is {width}x{height} but the camera was calibrated at "
                        f"{camera.width}x{camera.height} (another aspect ratio); calibrate at this image size")
    scaled = camera.scaled(width / camera.width)
    return Camera(width, height, scaled.K, scaled.dist, scaled.model)


def _collect(inputs: list[Path]) -> list[Path]:
    from recon3d.calibrate.common import collect_images
    from recon3d.core.workspace import Workspace

    if len(inputs) == 1 and inputs[0].is_dir() and Workspace(inputs[0]).images.is_dir():
        inputs = [Workspace(inputs[0]).images]
    paths = collect_images(inputs)
    names = [p.name for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"two inputs are both named {dup[0]}; outputs keep the file names, so give "
                        "images with distinct names")
    return paths


def undistort_images(inputs: list[Path], camera_path: Path, output: Path, config: UndistortConfig,
                     overwrite: bool = False) -> StageResult:
    """Undistort photos (files, folders, or a workspace's ``images/``) into ``output`` (the ``undistort`` stage).

    Writes ``output/images/<name>`` (same names and formats) and ``output/camera.json``.
    A finished output with the same inputs and settings is kept unless ``overwrite``.

    Returns:
        :class:`StageResult` with outputs ``images`` and ``camera``; its ``data`` is the new camera
        (at the calibration's size).
    """
    import time

    from recon3d.core.workspace import Workspace

    validate(config)
    t0 = time.perf_counter()
    camera = load_camera(camera_path)
    paths = _collect([Path(p) for p in inputs])
    ws = Workspace(output)
    if ws.root.exists() and not ws.root.is_dir():
        raise UserError(f"-o {output}: exists and is not a folder; give an output folder")
    if any(p.resolve().parent == ws.images.resolve() for p in paths):
        raise UserError(f"-o {output}: would replace the input photos in {ws.images}; choose another output folder")
    key = {"config": config, "camera": camera.to_json(),
           "images": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]}
    new_base = undistorted_camera(camera, config.alpha)
    with ws.stage("undistort", key, overwrite, check=lambda _: (ws.root / "camera.json").is_file()) as run:
        if run.skipped:
            return StageResult(run.previous_outputs, skipped=True, data=new_base,
                               summary=f"{ws.root}: already undistorted with these settings (use --overwrite to redo)")
        ws.create()
        new = _undistort_all(paths, camera, camera_path, ws, config, new_base)
        run.outputs = {"images": ws.images, "camera": ws.root / "camera.json"}
    rows = [("camera", f"{ws.root / 'camera.json'} (pinhole, no distortion)"),
            ("fx, fy", f"{new.K[0, 0]:.2f}, {new.K[1, 1]:.2f} px"),
            ("cx, cy", f"{new.K[0, 2]:.2f}, {new.K[1, 2]:.2f} px (COLMAP pixel centres)"),
            ("size", f"{new.width}x{new.height}"),
            ("time", f"{time.perf_counter() - t0:.1f} s")]
    text = summary(f"undistorted {len(paths)} images into {ws.images}", rows)
    if new.extras.get("note"):
        text += f"\nnote: {new.extras['note']}"
    return StageResult(run.outputs, skipped=False, summary=text, data=new)


def _undistort_all(paths: list[Path], camera: Camera, camera_path: Path, ws, config: UndistortConfig,
                   new_base: Camera) -> Camera:
    """Write the undistorted images and ``camera.json`` into ``ws``; returns the new camera."""
    from recon3d.core.atomic import atomic_dir
    from recon3d.core.progress import progress

    cache: dict[tuple[int, int], tuple[Camera, tuple[np.ndarray, np.ndarray]]] = {}
    sizes = set()
    with atomic_dir(ws.images) as tmp:
        for p in progress(paths, desc="undistort", unit="image"):
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise UserError(f"{p}: cannot read this image; remove it from the inputs or replace it")
            h, w = img.shape[:2]
            sizes.add((w, h))
            if (w, h) not in cache:
                cam = camera_for_size(camera, w, h, str(p))
                new = undistorted_camera(cam, config.alpha)
                cache[(w, h)] = (new, undistort_maps(cam, new))
            new, (m1, m2) = cache[(w, h)]
            out = cv2.remap(img, m1, m2, _INTERP[config.interpolation], borderMode=_border(new))
            params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality] if p.suffix.lower() in (".jpg", ".jpeg") else []
            if not cv2.imwrite(str(tmp / p.name), out, params):
                raise UserError(f"{tmp / p.name}: could not write the undistorted image; check disk space")
    new = cache[next(iter(sizes))][0] if len(sizes) == 1 else new_base
    new.extras = {"undistorted_from": str(camera_path), "source_model": camera.model,
                  "source_dist": camera.dist.tolist(), "alpha": config.alpha}
    if len(sizes) > 1:
        new.extras["note"] = (f"the inputs have {len(sizes)} image sizes; this camera describes the "
                              f"{camera.width}x{camera.height} ones (the others are scaled copies of it)")
    save_camera(new, ws.root / "camera.json")
    return new
