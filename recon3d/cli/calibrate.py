"""Camera intrinsics and lens distortion from photos of a checkerboard or ChArUco board; mono or stereo.

  recon3d calibrate photos/ --board 9x6 --square 0.025 -o camera.json
  recon3d calibrate img1.jpg img2.jpg ... --board 9x6 --square 0.025 --model rational -o camera.json
  recon3d calibrate photos/ --board 7x5 --square 0.04 --charuco 4x4_50 --marker 0.03 -o camera.json
  recon3d calibrate --left left/ --right right/ --board 9x6 --square 0.025 -o stereo.json
  recon3d calibrate photos/ --config camera.config.yaml -o again.json   # repeat a run (its saved settings)
  recon3d calibrate photos/ --board 9x6 --set outlier_factor=2.5          # any CalibrationConfig field

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
(R1, R2, P1, P2, Q), the baseline and the per-pair errors. Both also write the resolved settings
(camera.config.yaml / stereo.config.yaml), which --config reads back. Use the result with
`recon3d undistort`, `recon3d sfm --camera camera.json` and `recon3d stereo`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon3d.core.config import DEST


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from recon3d.calibrate.config import CalibrationConfig
    from recon3d.core.config import add_config_arguments

    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGES",
                        help="photos of the board: files and/or folders (mono calibration)")
    parser.add_argument("--left", nargs="+", type=Path, metavar="L", help="stereo: left photos (files/folders)")
    parser.add_argument("--right", nargs="+", type=Path, metavar="R",
                        help="stereo: right photos, paired with --left by sorted position")
    parser.add_argument("--board", metavar="COLSxROWS", dest="board_size",
                        help="checkerboard inner corners (e.g. 9x6), or ChArUco squares with --charuco "
                        "(sets board.cols and board.rows; required unless --config gives them)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output .json (default camera.json, or stereo.json with --left/--right); "
                        ".yaml, .png and .config.yaml (the resolved settings) are written beside it")
    add_config_arguments(parser, CalibrationConfig, title="calibration settings", skip=("board.cols", "board.rows"),
                         example="outlier_factor=2.5",
                         saved="the camera.config.yaml or stereo.config.yaml a run wrote beside its output")


def _given(args: argparse.Namespace, key: str) -> bool:
    """Whether the config field ``key`` was set by a flag, ``--set`` or the ``--config`` file."""
    from recon3d.core.config import load_yaml

    values = vars(args)
    if DEST + key in values or any(s.partition("=")[0].strip() == key for s in values.get(DEST + "set") or []):
        return True
    node = load_yaml(values[DEST + "file"]) if values.get(DEST + "file") is not None else {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is not None


def run(args: argparse.Namespace) -> int:
    from recon3d.calibrate.config import CalibrationConfig, parse_board_size
    from recon3d.calibrate.mono import calibrate_mono
    from recon3d.calibrate.stereo import calibrate_stereo
    from recon3d.core.config import config_from_args
    from recon3d.core.errors import UserError

    stereo = bool(args.left or args.right)
    if stereo and args.images:
        raise UserError("give either IMAGES (one camera) or --left and --right (a stereo rig), not both")
    if stereo and not (args.left and args.right):
        raise UserError("stereo calibration needs both --left and --right photos")
    if not stereo and not args.images:
        raise UserError("no photos given; pass IMAGES (files or folders), or --left and --right for a rig")
    if args.board_size is not None:
        cols, rows = parse_board_size(args.board_size)
        setattr(args, DEST + "board.cols", cols)
        setattr(args, DEST + "board.rows", rows)
    elif not (_given(args, "board.cols") and _given(args, "board.rows")):
        raise UserError("no board size; give --board COLSxROWS (e.g. --board 9x6 for a checkerboard of 10x7 "
                        "squares), or --config with a saved calibration config")
    if stereo and not _given(args, "board.square"):
        raise UserError("stereo calibration needs --square (the square side in metres) to give the baseline in metres")
    config = config_from_args(CalibrationConfig, args)
    output = args.output or Path("stereo.json" if stereo else "camera.json")
    if stereo:
        result = calibrate_stereo(args.left, args.right, config, output)
    else:
        result = calibrate_mono(args.images, config, output)
    from recon3d.cli.output import show, stage_data

    show(args, result.summary, {"mode": "stereo" if stereo else "mono", **stage_data(result)})
    return 0
