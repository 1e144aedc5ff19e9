"""Camera intrinsics and lens distortion from photos of a checkerboard or ChArUco board; mono or stereo.

  recon3d calibrate photos/ --board 9x6 --square 0.025 -o camera.json
  recon3d calibrate img1.jpg img2.jpg ... --board 9x6 --square 0.025 --model rational -o camera.json
  recon3d calibrate photos/ --board 7x5 --square 0.04 --charuco 4x4_50 --marker 0.03 -o camera.json
  recon3d calibrate --left left/ --right right/ --board 9x6 --square 0.025 -o stereo.json

--board counts a checkerboard's INNER corners (a board of 10x7 squares is 9x6) and a ChArUco
board's squares. --square is the side of one square in metres; it sets the unit of the stereo
baseline. Views where the board is not found are listed and skipped; views whose error is far
above the rest are dropped and the camera calibrated again. At least 5 usable views are needed.
If the board never reached the image edges and the fitted distortion bends back there, k3 (then
k2) is held at 0 and a note says so; photos with the board near the edges and corners help most.

Writes camera.json (K in COLMAP pixel centres, dist in OpenCV order, rms_px, coverage and a
per-view table), camera.yaml (the same for OpenCV's cv2.FileStorage, OpenCV pixel centres) and
camera.png (detected corners, per-view errors, where corners fell on the sensor, distortion).
A stereo run writes stereo.json/.yaml/.png with R, T (right_from_left), E, F, the rectification
(R1, R2, P1, P2, Q), the baseline and the per-pair errors. Use the result with
`recon3d undistort`, `recon3d sfm --camera camera.json` and `recon3d stereo`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGES",
                        help="photos of the board: files and/or folders (mono calibration)")
    parser.add_argument("--left", nargs="+", type=Path, metavar="L", help="stereo: left photos (files/folders)")
    parser.add_argument("--right", nargs="+", type=Path, metavar="R",
                        help="stereo: right photos, paired with --left by sorted position")
    parser.add_argument("--board", required=True, metavar="COLSxROWS",
                        help="checkerboard inner corners (e.g. 9x6), or ChArUco squares with --charuco")
    parser.add_argument("--square", type=float, default=None, metavar="M",
                        help="square side in metres (required for stereo; mono default 1 = translations in squares)")
    parser.add_argument("--charuco", metavar="DICT", default=None,
                        help="the board is a ChArUco board with this ArUco dictionary (e.g. 4x4_50, 5x5_100)")
    parser.add_argument("--marker", type=float, default=None, metavar="M",
                        help="ChArUco marker side in metres (default 0.75 x --square)")
    parser.add_argument("--legacy-charuco", action="store_true",
                        help="ChArUco board made by OpenCV < 4.6 (matters for an even number of rows)")
    parser.add_argument("--model", default="pinhole", choices=["pinhole", "rational", "fisheye"],
                        help="lens model: pinhole = k1,k2,p1,p2,k3 (default); rational adds k4..k6 (wide lenses); "
                        "fisheye = k1..k4 (mono only)")
    parser.add_argument("--min-views", type=int, default=5, help="fewest usable views or pairs (default 5)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output .json (default camera.json, or stereo.json with --left/--right); "
                        ".yaml and .png are written beside it")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from recon3d.calibrate.board import Board, parse_board_size
    from recon3d.calibrate.common import CalibrationConfig, sidecars
    from recon3d.calibrate.mono import calibrate_mono
    from recon3d.calibrate.stereo import calibrate_stereo
    from recon3d.core.errors import UserError
    from recon3d.core.progress import summary
    from recon3d.geometry import rotation_angle_deg

    stereo = bool(args.left or args.right)
    if stereo and args.images:
        raise UserError("give either IMAGES (one camera) or --left and --right (a stereo rig), not both")
    if stereo and not (args.left and args.right):
        raise UserError("stereo calibration needs both --left and --right photos")
    if not stereo and not args.images:
        raise UserError("no photos given; pass IMAGES (files or folders), or --left and --right for a rig")
    if stereo and args.square is None:
        raise UserError("stereo calibration needs --square (the square side in metres) to give the baseline in metres")
    cols, rows = parse_board_size(args.board)
    board = Board(cols, rows, 1.0 if args.square is None else args.square, args.charuco, args.marker,
                  args.legacy_charuco)
    config = CalibrationConfig(board=board, model=args.model, min_views=args.min_views)
    output = args.output or Path("stereo.json" if stereo else "camera.json")
    yaml_path, png_path = sidecars(output)

    if not stereo:
        path, res = calibrate_mono(args.images, config, output)
        cam = res.camera
        rows_ = [("board", board.describe()), ("model", cam.model),
                 ("fx, fy", f"{cam.K[0, 0]:.2f}, {cam.K[1, 1]:.2f} px"),
                 ("cx, cy", f"{cam.K[0, 2]:.2f}, {cam.K[1, 2]:.2f} px (COLMAP pixel centres)"),
                 ("dist", np.array2string(cam.dist, precision=5, separator=", ")),
                 ("RMS error", f"{res.rms:.3f} px"),
                 ("views", f"{int(res.used.sum())} used of {len(res.detections)} "
                           f"({sum(d.found for d in res.detections)} with the board)"),
                 ("coverage", f"{cam.extras['coverage']:.0%} of the sensor"),
                 ("wrote", f"{path}, {yaml_path}, {png_path}")]
        print(summary(f"calibrated {cam.width}x{cam.height} camera", rows_))
        _print_skipped([(d.image, res.notes[i]) for i, d in enumerate(res.detections) if i in res.notes])
        if res.model_note:
            print(f"note: {res.model_note}")
        _coverage_hint(cam.extras["coverage"])
        return 0

    path, res = calibrate_stereo(args.left, args.right, config, output)
    rig = res.rig
    rows_ = [("board", board.describe()), ("model", rig.left.model),
             ("baseline", f"{rig.baseline * 1000:.2f} mm"),
             ("rotation", f"{float(rotation_angle_deg(np.eye(3), rig.R)):.3f} deg between the cameras"),
             ("left fx, fy, cx, cy", ", ".join(f"{v:.2f}" for v in rig.left.K[[0, 1, 0, 1], [0, 1, 2, 2]])),
             ("right fx, fy, cx, cy", ", ".join(f"{v:.2f}" for v in rig.right.K[[0, 1, 0, 1], [0, 1, 2, 2]])),
             ("RMS error", f"{res.rms:.3f} px (left alone {res.left.rms:.3f}, right alone {res.right.rms:.3f})"),
             ("rectified", f"vertical disparity {res.epipolar_rms:.3f} px RMS"),
             ("pairs", f"{sum(p['used'] for p in res.pairs)} used of {len(res.pairs)}"),
             ("wrote", f"{path}, {yaml_path}, {png_path}")]
    print(summary(f"calibrated stereo rig ({rig.left.width}x{rig.left.height})", rows_))
    _print_skipped([(f"{Path(p['left']).name} / {Path(p['right']).name}", p["note"])
                    for p in res.pairs if "note" in p])
    for side, cam in (("left", rig.left), ("right", rig.right)):
        if cam.extras.get("note"):
            print(f"note ({side}): {cam.extras['note']}")
    _coverage_hint(min(rig.left.extras["coverage"], rig.right.extras["coverage"]))
    return 0


def _print_skipped(items: list[tuple[str, str]]) -> None:
    if items:
        print(f"skipped {len(items)}:")
        for name, why in items:
            print(f"  {name}: {why}")


def _coverage_hint(cov: float) -> None:
    if cov < 0.6:
        print(f"note: the board's corners cover only {cov:.0%} of the sensor; for a distortion model that "
              "holds at the image edges add photos with the board near the edges and corners")
