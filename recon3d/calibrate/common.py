"""What mono and stereo calibration share: the config, board detection over many photos,
outlier rules, coverage, results and the OpenCV YAML side files.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from recon3d.calibrate.board import Detection, board_size_shown, detect_board
from recon3d.calibrate.config import CalibrationConfig as CalibrationConfig
from recon3d.calibrate.config import config_path as config_path
from recon3d.core.atomic import atomic_path
from recon3d.core.errors import UserError
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import Rectification, StereoRig
from recon3d.io.images import IMAGE_EXTENSIONS, list_images


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
    from recon3d.core.progress import progress

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
    check_board_size(paths, detections, config)
    return detections


PROBE_VIEWS = 5
"""How many photos :func:`check_board_size` measures the photographed board in."""


def check_board_size(paths: list[Path], detections: list[Detection], config: CalibrationConfig) -> None:
    """A :class:`UserError` naming the size the photos show when it is not ``--board``.

    A checkerboard smaller than the photographed one is found inside it and calibrates to garbage
    (a 7x5 grid inside a 9x6 board: focal length 4x off, fx/fy 1.25); a larger one is found nowhere.
    The whole board is measured in up to :data:`PROBE_VIEWS` photos (those where ``--board`` was
    found first); the size most of them show, when it differs from ``--board``, stops the run.
    """
    board = config.board
    if board.charuco:
        return
    order = sorted(range(len(paths)), key=lambda i: not detections[i].found)[:PROBE_VIEWS]
    shown = [board_size_shown(read_gray(paths[i]), board, config.max_detect_size) for i in order]
    votes = [s for s in shown if s is not None]
    if not votes:
        return
    best = max(set(votes), key=votes.count)
    if 2 * votes.count(best) <= len(votes) or sorted(best) == sorted((board.cols, board.rows)):
        return
    raise UserError(f"the photos show a checkerboard of {best[0]}x{best[1]} inner corners, not --board "
                    f"{board.cols}x{board.rows} (in {votes.count(best)} of the {len(order)} photos measured); "
                    f"rerun with --board {best[0]}x{best[1]}")


# ----------------------------------------------------------------------------- single camera
def opencv_flag(name: str) -> int:
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


MAX_DROPS = 10


"""At most this many views (pairs) are dropped, one per round, each followed by a new fit."""


def outlier_views(errors: np.ndarray, config: CalibrationConfig, keep_at_least: int) -> np.ndarray:
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


def too_few(n: int, total: int, config: CalibrationConfig, what: str = "images") -> UserError:
    board = config.board
    if n == 0:
        return UserError(f"the {board.describe()} was found in none of the {total} {what}; check --board "
                         f"(COLSxROWS of {'squares' if board.charuco else 'inner corners: a board of 10x7 squares is 9x6'})"
                         f"{' and --charuco' if board.charuco else ''}, and that the whole board is visible")
    return UserError(f"only {n} of the {total} {what} show the board{' to both cameras' if what == 'pairs' else ''} "
                     f"(need at least {config.min_views}); add photos with the whole board in view")


def solve_board_pose(camera: Camera, obj: np.ndarray, pixels: np.ndarray) -> np.ndarray:
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


YAML_NOTE = ("recon3d calibration in OpenCV's convention: pixel centres on integers (K[0,2] = cx - 0.5 "
              "of the JSON file,\nwhich uses COLMAP pixel centres). Load with cv2.FileStorage(path, cv2.FILE_STORAGE_READ).")


def camera_yaml_entries(camera: Camera, prefix: str = "") -> dict[str, object]:
    """FileStorage keys of one camera (OpenCV pixel convention)."""
    return {f"{prefix}image_width": camera.width, f"{prefix}image_height": camera.height,
            f"{prefix}model": camera.model, f"{prefix}camera_matrix": camera.K_opencv,
            f"{prefix}distortion_coefficients": camera.dist.reshape(1, -1)}


def sidecars(output: Path) -> tuple[Path, Path]:
    """The YAML and PNG written beside ``output`` (same stem)."""
    return output.with_suffix(".yaml"), output.with_suffix(".png")


def check_output(output: Path) -> Path:
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise UserError(f"-o {output}: the output must be a .json file (a .yaml and a .png are written beside it)")
    if output.is_dir():
        raise UserError(f"-o {output}: is a folder; give a file name such as {output / 'camera.json'}")
    return output


@dataclass
class StereoResult:
    """A calibrated rig and what each pair contributed."""

    rig: StereoRig
    rect: Rectification
    left: MonoResult
    right: MonoResult
    pairs: list[dict]
    """Per pair: left, right, found, used, rms_px, epipolar_px, note."""
    rms: float
    """RMS reprojection error of the stereo calibration over the used pairs (px)."""
    epipolar_rms: float
    """RMS vertical disparity of the detected corners after rectification, used pairs (px)."""


def skipped_lines(items: list[tuple[str, str]]) -> list[str]:
    """'skipped N:' and one line per skipped view or pair (none when nothing was skipped)."""
    return [f"skipped {len(items)}:", *(f"  {name}: {why}" for name, why in items)] if items else []


def coverage_hint(cov: float) -> list[str]:
    """A note when the board's corners cover little of the sensor."""
    if cov < 0.6:
        return [f"note: the board's corners cover only {cov:.0%} of the sensor; for a distortion model that "
                "holds at the image edges add photos with the board near the edges and corners"]
    return []
