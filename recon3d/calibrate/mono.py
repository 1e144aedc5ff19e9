"""Camera calibration from checkerboard or ChArUco photos: one camera, or a stereo rig.

  calibrate_mono([Path("photos/")], CalibrationConfig(board=Board(9, 6, 0.025)), Path("camera.json"))
  calibrate_stereo([Path("left/")], [Path("right/")], config, Path("stereo.json"))  # recon3d.calibrate_stereo

Each finds the board in every photo (:mod:`recon3d.calibrate_board`), calibrates with OpenCV,
drops views whose reprojection error is far above the rest, calibrates again, and writes:

* ``camera.json`` (:class:`recon3d.camera.Camera`, K in COLMAP pixel centres) with ``rms_px``,
  ``coverage`` and ``views`` (per image: ``image``, ``found``, ``used``, ``rms_px``, ...);
  for a rig ``stereo.json`` (:class:`recon3d.rig.StereoRig`: R, T, E, F, R1, R2, P1, P2, Q,
  baseline) with ``pairs`` (per pair: reprojection and rectified epipolar error);
* the same as an OpenCV FileStorage YAML beside it (``camera.yaml``; OpenCV pixel centres there,
  as OpenCV tools expect);
* a picture beside it (``camera.png``): detected corners of one view, per-view errors, and where
  the corners fell on the sensor.

Nothing is written unless calibration succeeds; every file is written atomically. The stereo
half lives in :mod:`recon3d.calibrate_stereo`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from recon3d import geometry
from recon3d.calibrate_board import Board, Detection, detect_board
from recon3d.camera import CAMERA_MODELS, Camera
from recon3d.errors import UserError
from recon3d.workspace import IMAGE_EXTENSIONS, atomic_path, list_images


@dataclass
class CalibrationConfig:
    """How to calibrate."""

    board: Board = field(default_factory=Board)
    """The calibration target."""
    model: str = "pinhole"
    """Lens model: 'pinhole' (k1, k2, p1, p2, k3), 'rational' (+ k4, k5, k6) or 'fisheye' (k1..k4)."""
    min_views: int = 5
    """Fewest usable views (pairs, for a rig) to calibrate from."""
    outlier_factor: float = 3.0
    """A view is dropped when its RMS error exceeds this many times the median ..."""
    outlier_min_px: float = 0.1
    """... and also exceeds the median by this many pixels."""
    min_corners: int = 8
    """ChArUco views with fewer detected corners are skipped."""
    max_detect_size: int = 1600
    """Checkerboards are searched in a copy downscaled to this longer side, then refined at full size."""
    refine_rig: bool = True
    """Stereo: after fixing each camera's intrinsics, refine intrinsics and rig jointly."""

    def __post_init__(self) -> None:
        if self.model not in CAMERA_MODELS:
            raise UserError(f"--model {self.model!r}: unknown lens model; use one of {', '.join(CAMERA_MODELS)}")
        if self.min_views < 3:
            raise UserError("at least 3 views are needed to calibrate a camera")


# ------------------------------------------------------------------------------------ inputs
def collect_images(inputs: list[Path | str], what: str = "IMAGES") -> list[Path]:
    """Image files from a list of files and folders (folders: their images, sorted by name)."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            paths.extend(list_images(item))
        elif item.is_file():
            paths.append(item)
        else:
            raise UserError(f"{item}: no such file or folder; give {what} as photo files or folders of photos")
    if not paths:
        raise UserError(f"no images given for {what}; give photo files or folders")
    return paths


def read_gray(path: Path) -> np.ndarray:
    """``(H, W)`` uint8 grey image; an unreadable file is a :class:`UserError`."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        hint = "" if path.suffix.lower() in IMAGE_EXTENSIONS else f" (its extension {path.suffix!r} is not an image type)"
        raise UserError(f"{path}: cannot read this image{hint}; remove it from the inputs or replace it")
    return img


def detect_all(paths: list[Path], config: CalibrationConfig, desc: str = "detect board") -> list[Detection]:
    """Detect the board in every image (threads; OpenCV releases the GIL), in input order."""
    from recon3d.progress import progress

    def one(path: Path) -> Detection:
        return detect_board(read_gray(path), config.board, str(path), config.max_detect_size, config.min_corners)

    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        detections = list(progress(pool.map(one, paths), desc=desc, unit="image", total=len(paths)))
    sizes = {d.size for d in detections}
    if len(sizes) > 1:
        first = detections[0]
        other = next(d for d in detections if d.size != first.size)
        raise UserError(f"{other.image}: image size {other.size[0]}x{other.size[1]} differs from "
                        f"{first.image} ({first.size[0]}x{first.size[1]}); calibrate one camera (one image size) at a time")
    return detections


# ----------------------------------------------------------------------------- single camera
def _flag(name: str) -> int:
    """An OpenCV fisheye flag (``cv2.fisheye.X`` in OpenCV 4, ``cv2.X`` in OpenCV 5)."""
    for value in (getattr(cv2.fisheye, name, None), getattr(cv2, f"fisheye_{name}", None), getattr(cv2, name, None)):
        if value is not None:
            return int(value)
    raise AttributeError(f"OpenCV has no fisheye flag {name}")


def project_board(camera: Camera, cam_from_board: np.ndarray, object_points: np.ndarray) -> np.ndarray:
    """Pixels (COLMAP centres) of board points, ``(3, 4), (N, 3) -> (N, 2)``, any lens model."""
    rvec = cv2.Rodrigues(cam_from_board[:, :3])[0]
    tvec = np.ascontiguousarray(cam_from_board[:, 3], dtype=np.float64).reshape(3, 1)
    if camera.model == "fisheye":
        pts, _ = cv2.fisheye.projectPoints(object_points.reshape(-1, 1, 3).astype(np.float64), rvec, tvec,
                                           camera.K_opencv, camera.dist)
    else:
        pts, _ = cv2.projectPoints(object_points.astype(np.float64), rvec, tvec, camera.K_opencv, camera.dist)
    return pts.reshape(-1, 2) + 0.5


def fit_camera(object_points: list[np.ndarray], image_points: list[np.ndarray], size: tuple[int, int],
               model: str = "pinhole", fixed: tuple[str, ...] = ()) -> tuple[Camera, np.ndarray, np.ndarray]:
    """Calibrate one camera with OpenCV.

    Args:
        object_points: per view ``(N_v, 3)`` board points (z = 0).
        image_points: per view ``(N_v, 2)`` pixels, COLMAP pixel centres.
        size: (width, height).
        model: 'pinhole', 'rational' or 'fisheye'.
        fixed: radial coefficients held at 0, e.g. ``("k3",)``.
    Returns:
        the camera, ``(V, 3, 4)`` cam_from_board per view, ``(V,)`` RMS reprojection error per view.
    """
    W, H = size
    obj = [np.asarray(o, np.float64).reshape(-1, 1, 3) for o in object_points]
    img = [(np.asarray(p, np.float64) - 0.5).reshape(-1, 1, 2) for p in image_points]
    try:
        if model == "fisheye":
            flags = _flag("CALIB_RECOMPUTE_EXTRINSIC") | _flag("CALIB_FIX_SKEW")
            for name in fixed:
                flags |= _flag(f"CALIB_FIX_{name.upper()}")
            K0 = np.array([[0.5 * max(W, H), 0, W / 2 - 0.5], [0, 0.5 * max(W, H), H / 2 - 0.5], [0, 0, 1]])
            # cv2.fisheye wants (1, N, c) arrays here: (N, 1, c) fails inside OpenCV 5
            _, K, dist, rvecs, tvecs = cv2.fisheye.calibrate(
                [o.reshape(1, -1, 3) for o in obj], [p.reshape(1, -1, 2) for p in img], (W, H), K0, np.zeros(4), flags=flags,
                criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 200, 1e-10))
        else:
            flags = cv2.CALIB_RATIONAL_MODEL if model == "rational" else 0
            for name in fixed:
                flags |= getattr(cv2, f"CALIB_FIX_{name.upper()}")
            _, K, dist, rvecs, tvecs = cv2.calibrateCamera(
                [o.astype(np.float32) for o in obj], [p.astype(np.float32) for p in img], (W, H), None, None,
                flags=flags, criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12))
    except cv2.error as exc:
        raise UserError(f"OpenCV could not calibrate from these views ({str(exc).strip().splitlines()[-1]}); "
                        "take more views with the board tilted and covering the image") from None
    camera = Camera(W, H, geometry.K_colmap_from_opencv(K), np.asarray(dist).reshape(-1), model)
    poses = np.stack([np.concatenate([cv2.Rodrigues(np.asarray(r, np.float64))[0], np.asarray(t, np.float64).reshape(3, 1)], 1)
                      for r, t in zip(rvecs, tvecs)])
    rms = np.array([np.sqrt(np.mean(np.sum((project_board(camera, P, o.reshape(-1, 3)) - p) ** 2, -1)))
                    for P, o, p in zip(poses, obj, image_points)])
    return camera, poses, rms


FIX_LEVELS: dict[str, list[tuple[str, ...]]] = {
    "pinhole": [(), ("k3",), ("k2", "k3")],
    "rational": [(), ("k3", "k6"), ("k3", "k4", "k5", "k6")],
    "fisheye": [(), ("k4",), ("k3", "k4")],
}
"""Per lens model, the radial coefficients to hold at 0, tried in turn while the fit folds back."""


def distortion_folds(camera: Camera) -> bool:
    """Whether the radial distortion stops growing before the image corners (so it cannot be inverted there).

    A fit from views that leave the sensor's edges empty can bend back (e.g. a large negative k3);
    undistorting such a model maps the image corners nowhere. Tangential terms are ignored.
    """
    K, d = camera.K, np.concatenate([camera.dist, np.zeros(8)])
    corners = np.array([[0, 0], [camera.width, 0], [0, camera.height], [camera.width, camera.height]], float)
    rd_max = float(np.max(np.hypot((corners[:, 0] - K[0, 2]) / K[0, 0], (corners[:, 1] - K[1, 2]) / K[1, 1])))
    if camera.model == "fisheye":
        t = np.linspace(0, np.pi / 2, 4000)
        t2 = t * t
        f = t * (1 + d[0] * t2 + d[1] * t2 ** 2 + d[2] * t2 ** 3 + d[3] * t2 ** 4)
    else:
        r = np.linspace(0, max(4.0, 4 * rd_max), 8000)
        r2 = r * r
        num = 1 + d[0] * r2 + d[1] * r2 ** 2 + d[4] * r2 ** 3
        den = 1 + d[5] * r2 + d[6] * r2 ** 2 + d[7] * r2 ** 3
        if np.any(den <= 0):
            den = np.where(den <= 0, np.nan, den)
        f = r * num / den
    df = np.diff(f)
    stop = np.flatnonzero(~(df > 0))
    reach = f[: stop[0] + 1].max() if len(stop) else np.nanmax(f)
    return not reach > 1.01 * rd_max


MAX_DROPS = 10
"""At most this many views (pairs) are dropped, one per round, each followed by a new fit."""


def _outliers(errors: np.ndarray, config: CalibrationConfig, keep_at_least: int) -> np.ndarray:
    """The index (into ``errors``) of the worst view if it is far above the rest, as a 0- or 1-element array.

    One at a time: a bad view drags the fit and inflates the errors of good ones, so the
    caller refits after each drop. Never leaves fewer than ``keep_at_least`` views.
    """
    med = float(np.median(errors))
    worst = int(np.argmax(errors))
    if len(errors) <= keep_at_least or not (errors[worst] > config.outlier_factor * med
                                            and errors[worst] > med + config.outlier_min_px):
        return np.zeros(0, dtype=int)
    return np.array([worst])


@dataclass
class MonoResult:
    """A calibrated camera and what each view contributed."""

    camera: Camera
    detections: list[Detection]
    used: np.ndarray
    """``(V,)`` bool: the view took part in the final calibration."""
    view_rms: np.ndarray
    """``(V,)`` RMS reprojection error (px) with the final camera; NaN where the board was not found."""
    poses: dict[int, np.ndarray]
    """view index -> ``(3, 4)`` cam_from_board, for views with the board."""
    rms: float
    """RMS reprojection error over all corners of the used views (px)."""
    notes: dict[int, str] = field(default_factory=dict)
    """view index -> why it was skipped or dropped."""
    fixed: list[str] = field(default_factory=list)
    """Distortion coefficients held at 0 because the free fit folded back inside the image."""
    model_note: str = ""
    """Why coefficients were held (empty when none were)."""


def _too_few(n: int, total: int, config: CalibrationConfig, what: str = "images") -> UserError:
    board = config.board
    if n == 0:
        return UserError(f"the {board.describe()} was found in none of the {total} {what}; check --board "
                         f"(COLSxROWS of {'squares' if board.charuco else 'inner corners: a board of 10x7 squares is 9x6'})"
                         f"{' and --charuco' if board.charuco else ''}, and that the whole board is visible")
    return UserError(f"only {n} of the {total} {what} show the board{' to both cameras' if what == 'pairs' else ''} "
                     f"(need at least {config.min_views}); add photos with the whole board in view")


def calibrate_views(detections: list[Detection], config: CalibrationConfig) -> MonoResult:
    """Calibrate from detections; drop views whose error is far above the rest and calibrate again.

    Args:
        detections: one per image (found or not), all of one image size.
    Returns:
        a :class:`MonoResult`; fewer than ``config.min_views`` usable views is a :class:`UserError`.
    """
    board = config.board
    found = [i for i, d in enumerate(detections) if d.found]
    notes = {i: d.method for i, d in enumerate(detections) if not d.found}
    if len(found) < config.min_views:
        raise _too_few(len(found), len(detections), config)
    size = detections[found[0]].size
    fold_note = ""
    for fixed in FIX_LEVELS[config.model]:
        used = list(found)
        drop_notes: dict[int, str] = {}
        for rounds in range(MAX_DROPS + 1):  # fit, drop the worst view if far above the rest, fit again
            camera, poses, rms = fit_camera([detections[i].object_points(board) for i in used],
                                            [detections[i].corners for i in used], size, config.model, fixed)
            bad = _outliers(rms, config, config.min_views) if rounds < MAX_DROPS else []
            if len(bad) == 0:
                break
            med = float(np.median(rms))
            for b in bad:
                drop_notes[used[b]] = f"dropped: error {rms[b]:.2f} px is {rms[b] / med:.1f}x the median {med:.2f} px"
            used = [u for k, u in enumerate(used) if k not in set(bad.tolist())]
        if not distortion_folds(camera):
            break
        fold_note = fold_note or ("with every coefficient free the fitted distortion folds back inside the image "
                                  "(too few corners near its edges to pin it down)")
    notes.update(drop_notes)
    if fold_note:
        fold_note += f"; held {', '.join(fixed)} at 0"
        if distortion_folds(camera):
            fold_note += ", and it still folds: take photos with the board near the image edges and corners"
    # per-view error of every found view with the final camera (dropped ones by their own pose)
    view_rms = np.full(len(detections), np.nan)
    all_poses: dict[int, np.ndarray] = {}
    for k, i in enumerate(used):
        view_rms[i], all_poses[i] = rms[k], poses[k]
    for i in found:
        if i in all_poses:
            continue
        d = detections[i]
        obj = d.object_points(board)
        pose = _solve_pose(camera, obj, d.corners)
        all_poses[i] = pose
        view_rms[i] = np.sqrt(np.mean(np.sum((project_board(camera, pose, obj) - d.corners) ** 2, -1)))
    used_mask = np.zeros(len(detections), bool)
    used_mask[used] = True
    err2 = np.concatenate([np.sum((project_board(camera, all_poses[i], detections[i].object_points(board))
                                   - detections[i].corners) ** 2, -1) for i in used])
    total = float(np.sqrt(err2.mean()))
    camera.extras = {"rms_px": total}
    return MonoResult(camera, detections, used_mask, view_rms, all_poses, total, notes, list(fixed), fold_note)


def _solve_pose(camera: Camera, obj: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``(3, 4)`` cam_from_board of one view with a known camera."""
    if camera.model == "fisheye":
        ok, rvec, tvec = cv2.fisheye.solvePnP(obj.reshape(-1, 1, 3), (pixels - 0.5).reshape(-1, 1, 2),
                                             camera.K_opencv, camera.dist)
    else:
        ok, rvec, tvec = cv2.solvePnP(obj, pixels - 0.5, camera.K_opencv, camera.dist)
    return np.concatenate([cv2.Rodrigues(rvec)[0], tvec.reshape(3, 1)], 1)


def coverage(points: np.ndarray, size: tuple[int, int], cells: tuple[int, int] = (8, 6)) -> float:
    """Fraction of a ``cells`` grid over the sensor that holds at least one of ``(N, 2)`` points."""
    W, H = size
    if len(points) == 0:
        return 0.0
    cx = np.clip((points[:, 0] / W * cells[0]).astype(int), 0, cells[0] - 1)
    cy = np.clip((points[:, 1] / H * cells[1]).astype(int), 0, cells[1] - 1)
    return len(set(zip(cx.tolist(), cy.tolist()))) / (cells[0] * cells[1])


def mono_json(result: MonoResult, config: CalibrationConfig) -> Camera:
    """The camera with its report extras (rms_px, coverage, views) filled in."""
    cam = result.camera
    views = []
    for i, d in enumerate(result.detections):
        v = {"image": d.image, "found": bool(d.found), "used": bool(result.used[i]),
             "rms_px": None if np.isnan(result.view_rms[i]) else float(result.view_rms[i]),
             "corners": int(len(d.corners)), "detector": d.method if d.found else None}
        if i in result.notes:
            v["note"] = result.notes[i]
        if i in result.poses:
            v["cam_from_board"] = result.poses[i].tolist()
        views.append(v)
    used_pts = np.concatenate([result.detections[i].corners for i in np.flatnonzero(result.used)])
    cam.extras = {
        "rms_px": result.rms,
        "views_used": int(result.used.sum()), "views_found": int(sum(d.found for d in result.detections)),
        "coverage": coverage(used_pts, (cam.width, cam.height)),
        "fixed_coefficients": result.fixed,
        "board": config.board.to_json(),
        "views": views,
    }
    if result.model_note:
        cam.extras["note"] = result.model_note
    return cam


# ---------------------------------------------------------------------------------- outputs
def write_opencv_yaml(path: Path, entries: dict[str, object], comment: str) -> Path:
    """Write ``entries`` (numbers, strings, arrays) as an OpenCV FileStorage YAML, atomically."""
    with atomic_path(path) as tmp:
        fs = cv2.FileStorage(str(tmp), cv2.FILE_STORAGE_WRITE)
        for line in comment.splitlines():
            fs.writeComment(line)
        for key, value in entries.items():
            if isinstance(value, np.ndarray):
                fs.write(key, value.astype(np.float64))
            elif isinstance(value, (bool, np.bool_)):
                fs.write(key, int(value))
            elif isinstance(value, (int, np.integer)):
                fs.write(key, int(value))
            elif isinstance(value, (float, np.floating)):
                fs.write(key, float(value))
            else:
                fs.write(key, str(value))
        fs.release()
    return path


_YAML_NOTE = ("recon3d calibration in OpenCV's convention: pixel centres on integers (K[0,2] = cx - 0.5 "
              "of the JSON file,\nwhich uses COLMAP pixel centres). Load with cv2.FileStorage(path, cv2.FILE_STORAGE_READ).")


def camera_yaml_entries(camera: Camera, prefix: str = "") -> dict[str, object]:
    """FileStorage keys of one camera (OpenCV pixel convention)."""
    return {f"{prefix}image_width": camera.width, f"{prefix}image_height": camera.height,
            f"{prefix}model": camera.model, f"{prefix}camera_matrix": camera.K_opencv,
            f"{prefix}distortion_coefficients": camera.dist.reshape(1, -1)}


def sidecars(output: Path) -> tuple[Path, Path]:
    """The YAML and PNG written beside ``output`` (same stem)."""
    return output.with_suffix(".yaml"), output.with_suffix(".png")


def _check_output(output: Path) -> Path:
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise UserError(f"-o {output}: the output must be a .json file (a .yaml and a .png are written beside it)")
    if output.is_dir():
        raise UserError(f"-o {output}: is a folder; give a file name such as {output / 'camera.json'}")
    return output


def calibrate_mono(inputs: list[Path | str], config: CalibrationConfig, output: Path) -> tuple[Path, MonoResult]:
    """Calibrate one camera from photos; write ``output`` (camera.json), its .yaml and its .png.

    Args:
        inputs: image files and/or folders of images.
        output: the camera.json path.
    Returns:
        ``output`` and the :class:`MonoResult`.
    """
    from recon3d.calibrate_plots import plot_mono

    output = _check_output(output)
    paths = collect_images(inputs)
    detections = detect_all(paths, config)
    result = calibrate_views(detections, config)
    camera = mono_json(result, config)
    yaml_path, png_path = sidecars(output)
    with atomic_path(png_path) as tmp:
        plot_mono(result, config, tmp)
    entries = {"pixel_convention": "opencv", **camera_yaml_entries(camera),
               "avg_reprojection_error": result.rms, "views_used": int(result.used.sum())}
    write_opencv_yaml(yaml_path, entries, _YAML_NOTE)
    camera.save(output)
    return output, result
