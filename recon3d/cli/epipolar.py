"""Two-view geometry of a photo pair: F, E, H, relative pose, and a picture of epipolar lines.

  recon3d epipolar a.jpg b.jpg                      # focal guessed (1.2 x the longer side)
  recon3d epipolar a.jpg b.jpg --camera camera.json # intrinsics from `recon3d calibrate`
  recon3d epipolar a.jpg b.jpg -o pair.png --method colmap --json

Matches SIFT features (pycolmap's, as `recon3d sfm`; ratio test and mutual check), estimates
the fundamental matrix F, the essential matrix E (with the intrinsics) and a homography H robustly (OpenCV USAC/MAGSAC++ or
pycolmap LO-RANSAC), recovers R and t (camera 2 from camera 1, X2 = R X1 + t, |t| = 1) with the
cheirality check, and prints them with inlier counts and Sampson errors. Writes a picture with
the inlier matches and epipolar lines (default: epipolar_<a>_<b>.png in the current folder).
Many H inliers relative to F inliers mean a planar scene or a pure rotation: R is then
reliable but t is not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image1", type=Path, help="first photo")
    parser.add_argument("image2", type=Path, help="second photo")
    parser.add_argument("--camera", type=Path, help="camera.json of the camera (both photos); default: a guess")
    parser.add_argument("--camera2", type=Path, help="camera.json of the second photo when it is another camera")
    parser.add_argument("-o", "--output", type=Path, help="picture to write (default epipolar_<a>_<b>.png)")
    parser.add_argument("--method", choices=["magsac", "colmap"], default="magsac",
                        help="robust estimator: OpenCV USAC MAGSAC++ (default) or pycolmap LO-RANSAC")
    parser.add_argument("--threshold", type=float, default=1.0, help="inlier threshold in pixels (default 1)")
    parser.add_argument("--max-features", type=int, default=8192, help="SIFT features per photo (default 8192)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _load_gray(path: Path) -> np.ndarray:
    import cv2

    from recon3d.core.errors import UserError

    if not path.is_file():
        raise UserError(f"{path}: no such photo")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"{path}: cannot be decoded as an image; give a JPEG or PNG photo")
    return img


def sift_matches(img1: np.ndarray, img2: np.ndarray, max_features: int = 8192,
                 ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """SIFT matches between two BGR images: pycolmap's SIFT and matcher (ratio test + mutual check),
    the same the `sfm` pipeline uses.

    Returns:
        ``(x1 (M, 2), x2 (M, 2))`` matched pixels in COLMAP pixel centres.
    """
    import cv2
    import pycolmap

    pycolmap.logging.minloglevel = 2  # no log lines from the extractor and matcher
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = max_features
    extractor = pycolmap.FeatureExtractor.create(extraction, pycolmap.Device.cpu)
    feats = [extractor.extract_from_uint8_array(np.ascontiguousarray(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY)))
             for i in (img1, img2)]
    if min(len(k) for k, _ in feats) < 8:
        return np.zeros((0, 2)), np.zeros((0, 2))
    matching = pycolmap.FeatureMatchingOptions()
    matching.sift.max_ratio = ratio
    matching.sift.cross_check = True
    matches = pycolmap.FeatureMatcher.create(matching, pycolmap.Device.cpu).match(*feats[0], *feats[1])
    xy = [np.array([(kp.x, kp.y) for kp in k], dtype=np.float64).reshape(-1, 2) for k, _ in feats]
    return xy[0][matches[:, 0]], xy[1][matches[:, 1]]


def _camera(path: Path | None, img: np.ndarray, label: str):
    from recon3d.geometry.camera import Camera
    from recon3d.io.cameras import load_camera
    from recon3d.sfm.extract import camera_for_size

    h, w = img.shape[:2]
    if path is None:
        f = 1.2 * max(w, h)
        return Camera(w, h, [[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]), True
    cam = camera_for_size(load_camera(path), w, h)
    return cam, False


def _undistort(cam, x: np.ndarray) -> np.ndarray:
    if not cam.has_distortion or cam.model == "fisheye":
        return x
    from recon3d.geometry import pixels_from_cam

    return pixels_from_cam(cam.K, cam.rays(x))


def draw(img1: np.ndarray, img2: np.ndarray, x1: np.ndarray, x2: np.ndarray, F: np.ndarray, path: Path,
         max_matches: int = 60, max_lines: int = 16, seed: int = 0) -> Path:
    """Side-by-side picture: inlier matches (thin) and epipolar lines of a few of them (thick)."""
    import cv2

    from recon3d.core.atomic import atomic_path
    from recon3d.geometry.epipolar import epipolar_lines

    h = max(img1.shape[0], img2.shape[0])
    canvas = np.zeros((h, img1.shape[1] + img2.shape[1], 3), dtype=np.uint8)
    canvas[: img1.shape[0], : img1.shape[1]] = img1
    canvas[: img2.shape[0], img1.shape[1]:] = img2
    off = np.array([img1.shape[1], 0.0])
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x1))
    thick = max(1, int(round(max(canvas.shape) / 800)))
    for k, i in enumerate(idx[:max_matches]):
        color = tuple(int(c) for c in cv2.applyColorMap(np.uint8([[int(255 * k / max(1, max_matches))]]),
                                                      cv2.COLORMAP_HSV)[0, 0])
        p1 = tuple(np.round(x1[i] - 0.5).astype(int))
        p2 = tuple(np.round(x2[i] - 0.5 + off).astype(int))
        cv2.line(canvas, p1, p2, color, 1, cv2.LINE_AA)
        for p in (p1, p2):
            cv2.circle(canvas, p, 3 * thick, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.circle(canvas, p, 3 * thick, color, thick, cv2.LINE_AA)
        if k < max_lines:
            for lines, img_w, shift in ((epipolar_lines(F, x1[i:i + 1])[0], img2.shape[1], off[0]),
                                        (epipolar_lines(F.T, x2[i:i + 1])[0], img1.shape[1], 0.0)):
                a, b, c = lines
                if abs(b) < 1e-12:
                    continue
                xs = np.array([0.0, img_w])
                ys = -(a * xs + c) / b
                q1 = (int(xs[0] + shift), int(ys[0] - 0.5))
                q2 = (int(xs[1] + shift - 1), int(ys[1] - 0.5))
                cv2.line(canvas, q1, q2, (0, 0, 0), thick + 3, cv2.LINE_AA)
                cv2.line(canvas, q1, q2, color, thick + 1, cv2.LINE_AA)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), canvas):
            from recon3d.core.errors import UserError

            raise UserError(f"{path}: could not write the picture")
    return path


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError
    from recon3d.geometry import epipolar as ep
    from recon3d.geometry.transforms import rotation_angle_deg

    img1, img2 = _load_gray(args.image1), _load_gray(args.image2)
    cam1, guessed = _camera(args.camera, img1, "1")
    cam2, _ = _camera(args.camera2 or args.camera, img2, "2")
    x1, x2 = sift_matches(img1, img2, args.max_features)
    if len(x1) < 8:
        raise UserError(f"{args.image1.name} / {args.image2.name}: only {len(x1)} SIFT matches; the photos do not "
                        "seem to show the same scene (8 are needed for F)")
    u1, u2 = _undistort(cam1, x1), _undistort(cam2, x2)
    if np.max(np.linalg.norm(u1 - u2, axis=1)) < 0.5:
        raise UserError(f"{args.image1.name} / {args.image2.name}: the photos are identical (no motion); "
                        "two views need different positions")
    try:  # pure geometry: too few matches or no model found is a ValueError
        F, f_inl = ep.estimate_fundamental(u1, u2, args.method, args.threshold, seed=args.seed)
        H, h_inl = ep.estimate_homography(u1, u2, args.method, 2 * args.threshold, seed=args.seed)
        pose = ep.estimate_relative_pose(u1, u2, cam1.K, cam2.K, args.method, args.threshold, seed=args.seed)
    except ValueError as exc:
        raise UserError(f"{args.image1.name} / {args.image2.name}: {exc}") from None
    samp = np.sqrt(ep.sampson_distance(F, u1[f_inl], u2[f_inl]))
    out = args.output or Path(f"epipolar_{args.image1.stem}_{args.image2.stem}.png")
    draw(img1, img2, x1[f_inl], x2[f_inl], F, out, seed=args.seed) if not (cam1.has_distortion or cam2.has_distortion) \
        else draw(img1, img2, u1[f_inl], u2[f_inl], F, out, seed=args.seed)
    result = {
        "matches": int(len(x1)), "F_inliers": int(f_inl.sum()), "E_inliers": int(pose.inliers.sum()),
        "in_front": int(pose.in_front.sum()), "H_inliers": int(h_inl.sum()),
        "sampson_px": {"median": float(np.median(samp)), "max": float(np.max(samp))},
        "F": pose_list(F), "E": pose_list(pose.E), "R": pose_list(pose.R), "t": pose.t.tolist(),
        "rotation_deg": float(rotation_angle_deg(np.eye(3), pose.R)),
        "intrinsics": "guessed (focal 1.2 x longer side)" if guessed else str(args.camera),
        "picture": str(out),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    np.set_printoptions(precision=6, suppress=True)
    print(f"{args.image1.name} -> {args.image2.name}: {len(x1)} SIFT matches, method {args.method}, "
          f"threshold {args.threshold} px")
    print(f"F ({f_inl.sum()} inliers, Sampson error median {np.median(samp):.3f} px):\n{F}")
    print(f"E ({pose.inliers.sum()} inliers; intrinsics {result['intrinsics']}):\n{pose.E}")
    print(f"R (camera 2 from camera 1, {result['rotation_deg']:.2f} deg):\n{pose.R}")
    print(f"t (unit, X2 = R X1 + t): {pose.t}  ({pose.in_front.sum()}/{pose.inliers.sum()} points in front of both cameras)")
    ratio = h_inl.sum() / max(1, f_inl.sum())
    note = " (high: planar scene or pure rotation; t is unreliable)" if ratio > 0.8 else ""
    print(f"H ({h_inl.sum()} inliers, {ratio:.0%} of F's){note}:\n{H}")
    print(f"picture: {out}")
    return 0


def pose_list(M: np.ndarray) -> list:
    return np.asarray(M).tolist()
