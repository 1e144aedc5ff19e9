"""The two-photo stereo stage: rectify, match, and write disparity, depth and a point cloud.

Output folder of one pair (``recon3d stereo LEFT RIGHT -o OUT``)::

    disparity.pfm          float32 rectified-left disparity (px), inf where invalid (Middlebury PFM)
    disparity.png          the same, coloured (near = red, far = blue, invalid = black)
    depth.npy              float32 z-depth (m) in the rectified-left camera, NaN where invalid (calibrated only)
    points.ply             coloured points in the left camera's frame (calibrated only)
    left_rectified.png, right_rectified.png    the rectified photos (raw input only)
    stereo.json            what was done: inputs, geometry, disparity range, density, timings, config

Everything is computed before the first file is written, and files are moved into place from a
temporary folder, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from recon3d.core.atomic import check_writable
from recon3d.core.config import save_config, to_dict, validate
from recon3d.core.errors import UserError
from recon3d.core.workspace import StageResult
from recon3d.io.images import IMAGE_EXTENSIONS
from recon3d.stereo.config import PairConfig as PairConfig
from recon3d.stereo.depth import (
    colorize_disparity,
    depth_from_disparity,
    ply_bytes,
    points_from_depth,
)
from recon3d.stereo.disparity import compute_disparity, search_range
from recon3d.stereo.pfm import write_pfm
from recon3d.stereo.rectify import (
    RectifiedPair,
    check_calibration_size,
    check_same_size,
    load_calibration,
    load_image,
    rectified_pair,
    rectify_pair,
)

MIN_DENSITY = 0.001
"""Fewer valid disparities than this fraction of the pixels counts as an empty result."""


IDENTICAL_LEVELS = 0.5
"""Left and right photos differing by less than this mean grey level (of 255) count as identical."""


def load_pair(left_path: Path, right_path: Path, calib: Path | None = None, rectified: bool = False) -> RectifiedPair:
    """Read a pair and rectify it (``calib``) or take it as rectified (``rectified``).

    Raises:
        UserError: unreadable images, different sizes, identical photos, a calibration for another image size,
            or neither a calibration nor ``rectified``.
    """
    left, right = load_image(left_path), load_image(right_path)
    check_same_size(left, right, str(left_path), str(right_path))
    if np.mean(np.abs(left.astype(np.int16) - right.astype(np.int16))) < IDENTICAL_LEVELS:
        raise UserError(f"{left_path.name} / {right_path.name}: the photos are identical (no baseline); "
                        "a stereo pair needs two views from different positions")
    if calib is None:
        if not rectified:
            raise UserError(f"{left_path}: raw photos need the rig's calibration; give --calib stereo.json "
                            "(from `recon3d calibrate`), or --rectified if the pair is already rectified")
        return rectified_pair(left, right, None)
    rig, rect = load_calibration(calib)
    check_calibration_size(rig, left, str(calib), str(left_path))
    return rectified_pair(left, right, rect) if rectified else rectify_pair(rig, rect, left, right)


def process_pair(pair: RectifiedPair, config: PairConfig, name: str = "pair") -> dict:
    """Match a rectified pair; returns the arrays and facts to write (see :func:`write_pair`).

    Raises:
        UserError: when (almost) no pixel could be matched.
    """
    t0 = time.perf_counter()
    disp = compute_disparity(pair.left, pair.right, config.sgbm, pair.left_valid)
    seconds = time.perf_counter() - t0
    h, w = disp.shape
    density = float(np.isfinite(disp).mean())
    if density < MIN_DENSITY:
        raise UserError(f"{name}: no pixel could be matched (disparity is empty); check that the photos form a "
                        "rectified pair (or give --calib) and that --max-disparity covers the scene")
    s = config.sgbm.downscale
    lo, num = search_range(config.sgbm, w, s if s < 1 else 1.0)
    scale = 1.0 / s if s < 1 else 1.0
    result = {"disparity": disp, "info": {
        "name": name, "width": w, "height": h, "density": density,
        "disparity_range": [lo * scale, (lo + num) * scale],
        "disparity_median": float(np.nanmedian(disp)), "match_seconds": seconds,
        "calibrated": pair.calibrated, "config": to_dict(config)}}
    if pair.calibrated:
        depth = depth_from_disparity(disp, pair.focal, pair.baseline)
        pts_depth = depth if config.max_depth <= 0 else np.where(depth <= config.max_depth, depth, np.nan)
        pts, rgb = points_from_depth(pts_depth, pair.camera.K, pair.left, max(1, config.point_stride))
        if pair.left_from_rect is not None:
            pts = (pts.astype(np.float64) @ pair.left_from_rect.T).astype(np.float32)
        result.update(depth=depth, points=pts, colors=rgb)
        result["info"].update(focal=pair.focal, baseline=pair.baseline, K=pair.camera.K.tolist(),
                              depth_median=float(np.nanmedian(depth)), points=int(len(pts)))
    return result


def write_pair(result: dict, out: Path, pair: RectifiedPair | None = None) -> list[Path]:
    """Write a processed pair into ``out`` (staged in a temporary folder, then moved in).

    Returns:
        The written paths.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give an output folder with -o")
    check_writable(out / "x")
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".stereo.", suffix=".tmp", dir=out))
    try:
        write_pfm(stage / "disparity.pfm", result["disparity"])
        cv2.imwrite(str(stage / "disparity.png"), colorize_disparity(result["disparity"]))
        if "depth" in result:
            np.save(stage / "depth.npy", result["depth"])
            (stage / "points.ply").write_bytes(ply_bytes(result["points"], result["colors"]))
        if pair is not None and pair.left_valid is not None:
            cv2.imwrite(str(stage / "left_rectified.png"), pair.left)
            cv2.imwrite(str(stage / "right_rectified.png"), pair.right)
        (stage / "stereo.json").write_text(json.dumps(result["info"], indent=2) + "\n")
        written = []
        for f in sorted(stage.iterdir(), key=lambda p: p.name == "stereo.json"):  # summary last
            os.replace(f, out / f.name)
            written.append(out / f.name)
        return written
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def match_folders(left_dir: Path, right_dir: Path) -> list[tuple[Path, Path]]:
    """Pairs of images with the same file stem in two folders.

    Raises:
        UserError: empty folders, or images without a partner.
    """
    def images(d: Path) -> dict[str, Path]:
        found = {p.stem: p for p in sorted(d.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}
        if not found:
            raise UserError(f"{d}: no images found; give folders of left and right photos with matching names")
        return found

    left, right = images(left_dir), images(right_dir)
    alone = sorted(set(left) ^ set(right))
    if alone:
        more = f" and {len(alone) - 3} more" if len(alone) > 3 else ""
        raise UserError(f"{left_dir} and {right_dir}: {', '.join(alone[:3])}{more} have no partner with the same "
                        "name in the other folder; give folders of matching pairs")
    return [(left[k], right[k]) for k in sorted(left)]


def stereo_pairs(left: Path, right: Path, out: Path, config: PairConfig | None = None, calib: Path | None = None,
                 rectified: bool = False, overwrite: bool = False, progress=None) -> StageResult:
    """The stage: one pair (two files) into ``out``, or folders of pairs into ``out/<name>/``.

    Args:
        left, right: two images, or two folders of images with matching names.
        out: output folder.
        config: settings; calib: ``stereo.json``; rectified: the input is already rectified.
        overwrite: recompute pairs whose output exists (folder mode skips them otherwise).
        progress: optional ``tqdm``-like wrapper.
    Returns:
        A :class:`~recon3d.core.workspace.StageResult`: ``outputs`` the output folder and the resolved
        config (``OUT/config.yaml``, which ``recon3d stereo --config`` reads back); ``data`` the
        ``stereo.json`` summary of each pair; ``skipped`` when every pair of a folder was done before;
        ``summary`` the lines ``recon3d stereo`` prints.
    """
    config = validate(config or PairConfig())
    left, right, out = Path(left), Path(right), Path(out)
    for p in (left, right):
        if not p.exists():
            raise UserError(f"{p}: no such file or folder; give two photos, or two folders of photos")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give an output folder with -o")
    if calib is not None:
        load_calibration(calib)  # fail early on a bad calibration
    if left.is_dir() != right.is_dir():
        raise UserError(f"{left} and {right}: give two image files or two folders, not one of each")
    if not left.is_dir():
        pair = load_pair(left, right, calib, rectified)
        result = process_pair(pair, config, left.name)
        write_pair(result, out, pair)
        return _finish([result["info"]], left, right, out, config, skipped=False)
    jobs = match_folders(left, right)
    infos = []
    reused = 0
    it = progress(jobs, desc="stereo", unit="pair") if progress else jobs
    for lp, rp in it:
        dest = out / lp.stem
        if not overwrite and (dest / "stereo.json").is_file():
            infos.append(json.loads((dest / "stereo.json").read_text()))
            reused += 1
            continue
        pair = load_pair(lp, rp, calib, rectified)
        result = process_pair(pair, config, lp.name)
        write_pair(result, dest, pair)
        infos.append(result["info"])
    return _finish(infos, left, right, out, config, skipped=reused == len(jobs))


def _finish(infos: list[dict], left: Path, right: Path, out: Path, config: PairConfig, skipped: bool) -> StageResult:
    cfg = save_config(config, out / "config.yaml")
    return StageResult({"output": out, "config": cfg}, skipped=skipped,
                       summary=pairs_summary(infos, left, right, out), data=infos)


def pairs_summary(infos: list[dict], left: Path, right: Path, out: Path) -> str:
    """What ``recon3d stereo LEFT RIGHT`` prints."""
    from recon3d.core.progress import summary

    rows = [("pairs", len(infos)),
            ("valid pixels", f"{100 * sum(i['density'] for i in infos) / len(infos):.1f} % (mean)"),
            ("disparity range", f"{infos[0]['disparity_range'][0]:g} .. {infos[0]['disparity_range'][1]:g} px"),
            ("match time", f"{sum(i['match_seconds'] for i in infos):.2f} s")]
    if infos[0].get("calibrated"):
        rows += [("median depth", f"{infos[0]['depth_median']:.3f} m"),
                 ("baseline / focal", f"{infos[0]['baseline']:.4f} m / {infos[0]['focal']:.1f} px")]
    else:
        rows += [("depth", "not computed (no calibration: add --calib stereo.json)")]
    files = "disparity.pfm, disparity.png" + (", depth.npy, points.ply" if infos[0].get("calibrated") else "")
    rows += [("written", f"{out}/{'<name>/' if left.is_dir() else ''}{{{files}, stereo.json}}")]
    return summary(f"stereo: {left} + {right}", rows)
