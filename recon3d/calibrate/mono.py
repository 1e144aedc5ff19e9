"""Camera calibration from checkerboard or ChArUco photos: one camera, or a stereo rig.

  result = calibrate_mono([Path("photos/")], CalibrationConfig(board=Board(9, 6, 0.025)), Path("camera.json"))
  result.data.camera, result.outputs["json"], print(result.summary)          # a StageResult
  calibrate_stereo([Path("left/")], [Path("right/")], config, Path("stereo.json"))  # recon3d.calibrate.stereo

Each finds the board in every photo (:mod:`recon3d.calibrate.board`), calibrates with OpenCV,
drops views whose reprojection error is far above the rest, calibrates again, and writes:

* ``camera.json`` (:class:`recon3d.geometry.camera.Camera`, K in COLMAP pixel centres) with ``rms_px``,
  ``coverage`` and ``views`` (per image: ``image``, ``found``, ``used``, ``rms_px``, ...);
  for a rig ``stereo.json`` (:class:`recon3d.geometry.rig.StereoRig`: R, T, E, F, R1, R2, P1, P2, Q,
  baseline) with ``pairs`` (per pair: reprojection and rectified epipolar error);
* the same as an OpenCV FileStorage YAML beside it (``camera.yaml``; OpenCV pixel centres there,
  as OpenCV tools expect);
* a picture beside it (``camera.png``): detected corners of one view, per-view errors, and where
  the corners fell on the sensor;
* the resolved :class:`~recon3d.calibrate.config.CalibrationConfig` (``camera.config.yaml``).

Nothing is written unless calibration succeeds; every file is written atomically. The stereo
half lives in :mod:`recon3d.calibrate.stereo`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from recon3d import geometry
from recon3d.calibrate.board import Detection
from recon3d.calibrate.common import (
    MAX_DROPS,
    YAML_NOTE,
    CalibrationConfig,
    MonoResult,
    camera_yaml_entries,
    check_output,
    collect_images,
    config_path,
    coverage,
    coverage_hint,
    detect_all,
    opencv_flag,
    outlier_views,
    project_board,
    sidecars,
    skipped_lines,
    solve_board_pose,
    too_few,
    write_opencv_yaml,
)
from recon3d.core.atomic import atomic_path
from recon3d.core.config import save_config, validate
from recon3d.core.errors import UserError
from recon3d.core.workspace import StageResult
from recon3d.geometry.camera import Camera
from recon3d.io.cameras import save_camera


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
            flags = opencv_flag("CALIB_RECOMPUTE_EXTRINSIC") | opencv_flag("CALIB_FIX_SKEW")
            for name in fixed:
                flags |= opencv_flag(f"CALIB_FIX_{name.upper()}")
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


IMPLAUSIBLE_RMS_PX = 5.0
"""A calibration whose RMS reprojection error exceeds this (px) is refused: the board or model is wrong."""
IMPLAUSIBLE_ASPECT = 0.15
"""A calibration whose fx/fy differs from 1 (square pixels) by more than this is refused."""


def check_plausible(camera: Camera, rms: float, config: CalibrationConfig) -> None:
    """:class:`UserError` for a fit no real camera gives: a large RMS error or fx/fy far from square pixels
    (what a board found inside a larger one, or a wrong lens model, calibrates to)."""
    aspect = float(camera.K[0, 0] / camera.K[1, 1])
    if rms > IMPLAUSIBLE_RMS_PX or abs(aspect - 1.0) > IMPLAUSIBLE_ASPECT:
        board = config.board
        raise UserError(f"the calibration is implausible (RMS {rms:.1f} px, fx/fy {aspect:.2f} where square pixels "
                        f"give 1.00), so nothing was written; check --board {board.cols}x{board.rows} "
                        f"({'squares' if board.charuco else 'inner corners'}), --model {config.model}, and that "
                        "every photo shows the same flat board")


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
        raise too_few(len(found), len(detections), config)
    size = detections[found[0]].size
    fold_note = ""
    for fixed in FIX_LEVELS[config.model]:
        used = list(found)
        drop_notes: dict[int, str] = {}
        for rounds in range(MAX_DROPS + 1):  # fit, drop the worst view if far above the rest, fit again
            camera, poses, rms = fit_camera([detections[i].object_points(board) for i in used],
                                            [detections[i].corners for i in used], size, config.model, fixed)
            bad = outlier_views(rms, config, config.min_views) if rounds < MAX_DROPS else []
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
        pose = solve_board_pose(camera, obj, d.corners)
        all_poses[i] = pose
        view_rms[i] = np.sqrt(np.mean(np.sum((project_board(camera, pose, obj) - d.corners) ** 2, -1)))
    used_mask = np.zeros(len(detections), bool)
    used_mask[used] = True
    err2 = np.concatenate([np.sum((project_board(camera, all_poses[i], detections[i].object_points(board))
                                   - detections[i].corners) ** 2, -1) for i in used])
    total = float(np.sqrt(err2.mean()))
    check_plausible(camera, total, config)
    camera.extras = {"rms_px": total}
    return MonoResult(camera, detections, used_mask, view_rms, all_poses, total, notes, list(fixed), fold_note)


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


def calibrate_mono(inputs: list[Path | str], config: CalibrationConfig, output: Path) -> StageResult:
    """Calibrate one camera from photos; write ``output`` (camera.json), its .yaml, its .png and the
    resolved config (``camera.config.yaml``, which ``recon3d calibrate --config`` reads back).

    Args:
        inputs: image files and/or folders of images.
        output: the camera.json path.
    Returns:
        A :class:`~recon3d.core.workspace.StageResult`: ``outputs`` json, yaml, png and config;
        ``data`` the :class:`MonoResult`; ``summary`` the lines ``recon3d calibrate`` prints.
    """
    from recon3d.calibrate.plots import plot_mono

    validate(config)
    output = check_output(output)
    paths = collect_images(inputs)
    detections = detect_all(paths, config)
    result = calibrate_views(detections, config)
    camera = mono_json(result, config)
    yaml_path, png_path = sidecars(output)
    with atomic_path(png_path) as tmp:
        plot_mono(result, config, tmp)
    entries = {"pixel_convention": "opencv", **camera_yaml_entries(camera),
               "avg_reprojection_error": result.rms, "views_used": int(result.used.sum())}
    write_opencv_yaml(yaml_path, entries, YAML_NOTE)
    save_camera(camera, output)
    cfg_path = save_config(config, config_path(output))
    outputs = {"json": output, "yaml": yaml_path, "png": png_path, "config": cfg_path}
    return StageResult(outputs, skipped=False, summary=mono_summary(result, config, outputs), data=result)


def mono_summary(result: MonoResult, config: CalibrationConfig, outputs: dict[str, Path]) -> str:
    """What ``recon3d calibrate`` prints for one camera."""
    from recon3d.core.progress import summary

    cam = result.camera
    rows = [("board", config.board.describe()), ("model", cam.model),
            ("fx, fy", f"{cam.K[0, 0]:.2f}, {cam.K[1, 1]:.2f} px"),
            ("cx, cy", f"{cam.K[0, 2]:.2f}, {cam.K[1, 2]:.2f} px (COLMAP pixel centres)"),
            ("dist", np.array2string(cam.dist, precision=5, separator=", ")),
            ("RMS error", f"{result.rms:.3f} px"),
            ("views", f"{int(result.used.sum())} used of {len(result.detections)} "
                      f"({sum(d.found for d in result.detections)} with the board)"),
            ("coverage", f"{cam.extras['coverage']:.0%} of the sensor"),
            ("wrote", f"{outputs['json']}, {outputs['yaml']}, {outputs['png']}")]
    lines = [summary(f"calibrated {cam.width}x{cam.height} camera", rows)]
    lines += skipped_lines([(d.image, result.notes[i]) for i, d in enumerate(result.detections) if i in result.notes])
    if result.model_note:
        lines.append(f"note: {result.model_note}")
    lines += coverage_hint(cam.extras["coverage"])
    return "\n".join(lines)
