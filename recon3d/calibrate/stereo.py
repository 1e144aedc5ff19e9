"""Stereo rig calibration: each camera alone, then the rig (R, T right_from_left), then jointly.

  calibrate_stereo([Path("left/")], [Path("right/")], CalibrationConfig(board=Board(9, 6, 0.025)),
                   Path("stereo.json"))

Writes ``stereo.json`` (:class:`recon3d.geometry.rig.StereoRig`: both cameras, R, T, E, F, the
rectification R1, R2, P1, P2, Q in COLMAP pixel centres, the baseline, and ``pairs`` with each
pair's reprojection and rectified vertical error), ``stereo.yaml`` (OpenCV FileStorage, OpenCV
pixel centres) and ``stereo.png``. See :mod:`recon3d.calibrate` for the single-camera half.
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
    StereoResult,
    camera_yaml_entries,
    check_output,
    collect_images,
    config_path,
    coverage,
    coverage_hint,
    detect_all,
    outlier_views,
    sidecars,
    skipped_lines,
    too_few,
    write_opencv_yaml,
)
from recon3d.calibrate.mono import calibrate_views, distortion_folds
from recon3d.core.atomic import atomic_path
from recon3d.core.config import save_config, validate
from recon3d.core.errors import UserError
from recon3d.core.workspace import StageResult
from recon3d.geometry.camera import Camera
from recon3d.geometry.rig import StereoRig
from recon3d.io.cameras import save_rig


def _opencv_P(P: np.ndarray) -> np.ndarray:
    """A ``(3, 4)`` rectified projection from COLMAP to OpenCV pixel centres."""
    P = np.array(P, dtype=np.float64, copy=True)
    P[0, 3] -= 0.5 * P[2, 3]
    P[1, 3] -= 0.5 * P[2, 3]
    P[0, 2] -= 0.5
    P[1, 2] -= 0.5
    return P


def _opencv_Q(Q: np.ndarray) -> np.ndarray:
    """The ``(4, 4)`` disparity-to-depth matrix from COLMAP to OpenCV pixel centres."""
    Q = np.array(Q, dtype=np.float64, copy=True)
    Q[0, 3] += 0.5
    Q[1, 3] += 0.5
    return Q




def _common(dl: Detection, dr: Detection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corner ids seen in both views and their pixels, ``(N,), (N, 2), (N, 2)``."""
    ids, il, ir = np.intersect1d(dl.ids, dr.ids, return_indices=True)
    return ids, dl.corners[il], dr.corners[ir]


def rectified_points(camera: Camera, R: np.ndarray, P: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Pixels of raw pixels in a rectified camera, ``(N, 2) -> (N, 2)`` (COLMAP centres, as ``P`` is)."""
    rays = camera.rays(np.asarray(pixels, np.float64)) @ np.asarray(R).T
    return geometry.pixels_from_cam(np.asarray(P)[:3, :3], rays)


def _stereo_fit(obj: list[np.ndarray], pl: list[np.ndarray], pr: list[np.ndarray], left: Camera, right: Camera,
                size: tuple[int, int], refine: bool, fixed: set[str]):
    """``cv2.stereoCalibrate`` with fixed intrinsics, then (``refine``) everything jointly.

    Args:
        obj, pl, pr: per pair ``(N_k, 3)`` board points and their ``(N_k, 2)`` left / right pixels (COLMAP).
        left, right: the cameras calibrated alone (initial values).
        fixed: distortion coefficients held at 0 (as in the single-camera fits).
    Returns:
        left and right cameras, R ``(3, 3)``, T ``(3,)`` (right_from_left), total RMS, ``(K,)`` per-pair RMS.
        The joint refinement is kept only when it does not raise the error, move a focal length by
        5 % or more, or make a distortion fold back.
    """
    W, H = size
    obj32 = [o.astype(np.float32) for o in obj]
    l32 = [(p - 0.5).astype(np.float32) for p in pl]
    r32 = [(p - 0.5).astype(np.float32) for p in pr]
    crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    try:
        out = cv2.stereoCalibrateExtended(obj32, l32, r32, left.K_opencv, left.dist, right.K_opencv, right.dist,
                                          (W, H), None, None, flags=cv2.CALIB_FIX_INTRINSIC, criteria=crit)
        rms, R, T, errs = out[0], out[5], out[6], out[-1]
        K1, D1, K2, D2 = left.K_opencv, left.dist, right.K_opencv, right.dist
        if refine:
            flags = cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_USE_EXTRINSIC_GUESS
            if left.model == "rational":
                flags |= cv2.CALIB_RATIONAL_MODEL
            for name in fixed:
                flags |= getattr(cv2, f"CALIB_FIX_{name.upper()}")
            out2 = cv2.stereoCalibrateExtended(obj32, l32, r32, K1.copy(), D1.copy(), K2.copy(), D2.copy(), (W, H),
                                               R.copy(), T.copy(), flags=flags, criteria=crit)
            f_change = max(abs(out2[1][0, 0] / K1[0, 0] - 1), abs(out2[3][0, 0] / K2[0, 0] - 1))
            folds = any(distortion_folds(Camera(W, H, geometry.K_colmap_from_opencv(K), np.asarray(D).reshape(-1),
                                                left.model)) for K, D in ((out2[1], out2[2]), (out2[3], out2[4])))
            if np.isfinite(out2[0]) and out2[0] <= rms * 1.05 and f_change < 0.05 and not folds:
                rms, K1, D1, K2, D2, R, T, errs = out2[0], out2[1], out2[2], out2[3], out2[4], out2[5], out2[6], out2[-1]
    except cv2.error as exc:
        raise UserError(f"OpenCV could not calibrate the rig ({str(exc).strip().splitlines()[-1]}); "
                        "take more pairs with the whole board seen by both cameras") from None
    lc = Camera(W, H, geometry.K_colmap_from_opencv(K1), np.asarray(D1).reshape(-1), left.model)
    rc = Camera(W, H, geometry.K_colmap_from_opencv(K2), np.asarray(D2).reshape(-1), right.model)
    pair_rms = np.sqrt(np.mean(np.asarray(errs).reshape(-1, 2) ** 2, axis=1))
    return lc, rc, np.asarray(R, np.float64), np.asarray(T, np.float64).reshape(3), float(rms), pair_rms


def calibrate_rig(left: list[Detection], right: list[Detection], config: CalibrationConfig) -> StereoResult:
    """Calibrate a stereo rig from per-pair detections (pair k = ``left[k]``, ``right[k]``).

    Each camera is calibrated alone first (from every view that shows the board), then the rig
    (R, T right_from_left) with the intrinsics fixed, then, with ``config.refine_rig``, everything
    jointly. Pairs far above the rest are dropped and the rig calibrated again.
    """
    if config.model == "fisheye":
        raise UserError("--model fisheye is not supported for stereo rigs yet; calibrate the rig with "
                        "--model pinhole or rational, or each fisheye camera alone")
    if len(left) != len(right):
        raise UserError(f"{len(left)} left and {len(right)} right images; give the same number, "
                        "in the same order (pairs are matched by sorted position)")
    if left[0].size != right[0].size:
        raise UserError(f"left images are {left[0].size[0]}x{left[0].size[1]} but right images "
                        f"{right[0].size[0]}x{right[0].size[1]}; a rig needs two cameras of the same image size")
    try:
        lres = calibrate_views(left, config)
    except UserError as exc:
        raise UserError(f"left camera: {exc}") from None
    try:
        rres = calibrate_views(right, config)
    except UserError as exc:
        raise UserError(f"right camera: {exc}") from None
    board = config.board
    size = left[0].size
    obj_all = board.object_points()
    pairs: list[dict] = []
    data: dict[int, tuple] = {}
    for k, (dl, dr) in enumerate(zip(left, right)):
        p = {"left": dl.image, "right": dr.image, "found": False, "used": False, "rms_px": None, "epipolar_px": None}
        if not (dl.found and dr.found):
            p["note"] = ("board not found in " + " and ".join(s for s, d in (("left", dl), ("right", dr)) if not d.found))
        else:
            ids, pl, pr = _common(dl, dr)
            if len(ids) < max(6, config.min_corners if board.charuco else 0):
                p["note"] = f"only {len(ids)} corners seen by both cameras"
            else:
                p["found"] = True
                data[k] = (obj_all[ids], pl, pr)
        pairs.append(p)
    used = sorted(data)
    if len(used) < config.min_views:
        raise too_few(len(used), len(pairs), config, "pairs")
    for rounds in range(MAX_DROPS + 1):  # fit, drop the worst pair if far above the rest, fit again
        lc, rc, R, T, rms, pair_rms = _stereo_fit([data[k][0] for k in used], [data[k][1] for k in used],
                                                  [data[k][2] for k in used], lres.camera, rres.camera, size,
                                                  config.refine_rig, set(lres.fixed) | set(rres.fixed))
        bad = outlier_views(pair_rms, config, config.min_views) if rounds < MAX_DROPS else []
        if len(bad) == 0:
            break
        med = float(np.median(pair_rms))
        for b in bad:
            pairs[used[b]]["rms_px"] = float(pair_rms[b])
            pairs[used[b]]["note"] = f"dropped: error {pair_rms[b]:.2f} px is {pair_rms[b] / med:.1f}x the median {med:.2f} px"
        used = [u for j, u in enumerate(used) if j not in set(bad.tolist())]
    for j, k in enumerate(used):
        pairs[k]["used"] = True
        pairs[k]["rms_px"] = float(pair_rms[j])
    how = "alone, then refined jointly with the rig" if config.refine_rig else "alone"
    for cam, res in ((lc, lres), (rc, rres)):
        used_pts = np.concatenate([res.detections[i].corners for i in np.flatnonzero(res.used)])
        cam.extras = {"rms_px": res.rms, "calibration": how, "views_used": int(res.used.sum()),
                      "coverage": coverage(used_pts, size), "fixed_coefficients": res.fixed}
        if res.model_note:
            cam.extras["note"] = res.model_note
    rig = StereoRig(lc, rc, R, T)
    rect = rig.rectify(alpha=0.0)
    epi = []
    for k, (obj, pl, pr) in data.items():
        yl = rectified_points(lc, rect.R1, rect.P1, pl)[:, 1]
        yr = rectified_points(rc, rect.R2, rect.P2, pr)[:, 1]
        e = float(np.sqrt(np.mean((yl - yr) ** 2)))
        pairs[k]["epipolar_px"] = e
        if pairs[k]["used"]:
            epi.append((yl - yr) ** 2)
    epipolar_rms = float(np.sqrt(np.concatenate(epi).mean()))
    return StereoResult(rig, rect, lres, rres, pairs, rms, epipolar_rms)


def calibrate_stereo(left_inputs: list[Path | str], right_inputs: list[Path | str], config: CalibrationConfig,
                     output: Path) -> StageResult:
    """Calibrate a stereo rig; write ``output`` (stereo.json), its .yaml, its .png and the resolved
    config (``stereo.config.yaml``, which ``recon3d calibrate --config`` reads back).

    Args:
        left_inputs, right_inputs: files and/or folders; pairs are matched by sorted position.
        output: the stereo.json path.
    Returns:
        A :class:`~recon3d.core.workspace.StageResult`: ``outputs`` json, yaml, png and config;
        ``data`` the :class:`StereoResult`; ``summary`` the lines ``recon3d calibrate`` prints.
    """
    from recon3d.calibrate.plots import plot_stereo

    validate(config)
    output = check_output(output)
    lpaths = collect_images(left_inputs, "--left")
    rpaths = collect_images(right_inputs, "--right")
    if len(lpaths) != len(rpaths):
        raise UserError(f"--left has {len(lpaths)} images but --right has {len(rpaths)}; give the same number, "
                        "in the same order (pairs are matched by sorted position)")
    left = detect_all(lpaths, config, "detect board (left)")
    right = detect_all(rpaths, config, "detect board (right)")
    result = calibrate_rig(left, right, config)
    rig = result.rig
    rig.extras = {"rms_px": result.rms, "epipolar_rms_px": result.epipolar_rms,
                  "pairs_used": int(sum(p["used"] for p in result.pairs)), "board": config.board.to_json(),
                  "pairs": result.pairs}
    yaml_path, png_path = sidecars(output)
    with atomic_path(png_path) as tmp:
        plot_stereo(result, config, tmp)
    rect = result.rect
    entries = {"pixel_convention": "opencv", **camera_yaml_entries(rig.left, "left_"),
               **camera_yaml_entries(rig.right, "right_"), "R": rig.R, "T": rig.T.reshape(3, 1),
               "baseline": rig.baseline, "E": rig.E, "F": _F_opencv(rig), "R1": rect.R1, "R2": rect.R2,
               "P1": _opencv_P(rect.P1), "P2": _opencv_P(rect.P2), "Q": _opencv_Q(rect.Q),
               "avg_reprojection_error": result.rms, "epipolar_rms_px": result.epipolar_rms}
    write_opencv_yaml(yaml_path, entries, YAML_NOTE + "\nR, T map left-camera points to the right camera: "
                      "X_r = R X_l + T (metres).")
    save_rig(rig, output, rect)
    cfg_path = save_config(config, config_path(output))
    outputs = {"json": output, "yaml": yaml_path, "png": png_path, "config": cfg_path}
    return StageResult(outputs, skipped=False, summary=stereo_summary(result, config, outputs), data=result)


def stereo_summary(result: StereoResult, config: CalibrationConfig, outputs: dict[str, Path]) -> str:
    """What ``recon3d calibrate --left --right`` prints."""
    from recon3d.core.progress import summary

    rig = result.rig
    rows = [("board", config.board.describe()), ("model", rig.left.model),
            ("baseline", f"{rig.baseline * 1000:.2f} mm"),
            ("rotation", f"{float(geometry.rotation_angle_deg(np.eye(3), rig.R)):.3f} deg between the cameras"),
            ("left fx, fy, cx, cy", ", ".join(f"{v:.2f}" for v in rig.left.K[[0, 1, 0, 1], [0, 1, 2, 2]])),
            ("right fx, fy, cx, cy", ", ".join(f"{v:.2f}" for v in rig.right.K[[0, 1, 0, 1], [0, 1, 2, 2]])),
            ("RMS error", f"{result.rms:.3f} px (left alone {result.left.rms:.3f}, right alone "
                          f"{result.right.rms:.3f})"),
            ("rectified", f"vertical disparity {result.epipolar_rms:.3f} px RMS"),
            ("pairs", f"{sum(p['used'] for p in result.pairs)} used of {len(result.pairs)}"),
            ("wrote", f"{outputs['json']}, {outputs['yaml']}, {outputs['png']}")]
    lines = [summary(f"calibrated stereo rig ({rig.left.width}x{rig.left.height})", rows)]
    lines += skipped_lines([(f"{Path(p['left']).name} / {Path(p['right']).name}", p["note"])
                            for p in result.pairs if "note" in p])
    for side, cam in (("left", rig.left), ("right", rig.right)):
        if cam.extras.get("note"):
            lines.append(f"note ({side}): {cam.extras['note']}")
    lines += coverage_hint(min(rig.left.extras["coverage"], rig.right.extras["coverage"]))
    return "\n".join(lines)


def _F_opencv(rig: StereoRig) -> np.ndarray:
    """(3, 3) fundamental matrix for OpenCV pixel centres."""
    return np.linalg.inv(rig.right.K_opencv).T @ rig.E @ np.linalg.inv(rig.left.K_opencv)
