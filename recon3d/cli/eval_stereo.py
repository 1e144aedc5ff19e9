"""Score stereo results against ground truth: disparity (EPE, bad-k), depth, and fused meshes.

  recon3d eval-stereo out/disparity.pfm scene/gt/disparity/pair_00.npy   # disparity (+ depth when found)
  recon3d eval-stereo out/ scene/gt/disparity/pair_00.npy                 # a pair's output folder
  recon3d eval-stereo ws                                                  # ws/stereo/mesh.ply against ws/gt
  recon3d eval-stereo mesh.ply scene/gt --threshold 0.05                  # any mesh against a scene's gt/
  add --json for machine-readable output

Disparity GT is a .npy or .pfm map (0 / inf = no surface). Rates are over pixels with valid GT,
in three regions: all, non-occluded (the right view sees the point too, derived from the GT),
and textured (non-occluded, 7x7 grey-level std > 2; needs the left image: --image, or the
left_rectified.png a pair's output holds). EPE = mean |error| over pixels with an estimate;
bad-k = share of pixels with error > k px OR no estimate. Depth: the pair's depth.npy against
the GT depth map (--gt-depth, or gt/depth/NAME.npy beside gt/disparity/NAME.npy); "near" is the
nearest third of the pixels. Meshes: accuracy = distance of mesh vertices to the true surface
(along GT camera rays), completeness = share of GT points within the threshold (default 1 % of
the scene extent = bounding-box diagonal of the GT points).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", type=Path,
                        help="disparity (.pfm/.npy), a `recon3d stereo` output folder, a mesh (.ply) or a workspace")
    parser.add_argument("gt", type=Path, nargs="?",
                        help="GT disparity (.npy/.pfm) or, for meshes, a gt/ folder (default for a workspace: ws/gt)")
    parser.add_argument("--image", type=Path, help="rectified left image, for the 'textured' region")
    parser.add_argument("--depth", type=Path, help="estimated depth .npy (default: depth.npy beside the disparity)")
    parser.add_argument("--gt-depth", type=Path, help="GT depth .npy (inf = no surface)")
    parser.add_argument("--threshold", type=float, help="mesh distance threshold in metres (default 1 %% of the extent)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _load_map(path: Path, what: str):
    import numpy as np

    from recon3d.core.errors import UserError
    from recon3d.stereo.pfm import read_pfm

    if not path.is_file():
        raise UserError(f"{path}: no such file; give the {what} as .pfm or .npy")
    if path.suffix.lower() == ".pfm":
        m = read_pfm(path)
    elif path.suffix.lower() == ".npy":
        try:
            m = np.load(path)
        except (ValueError, OSError) as exc:
            raise UserError(f"{path}: not a numpy array file ({exc})") from None
    else:
        raise UserError(f"{path}: unknown {what} format; give a .pfm or .npy file")
    if m.ndim != 2:
        raise UserError(f"{path}: expected a single-channel (H, W) map, got shape {m.shape}")
    return m.astype(np.float32)


def evaluate_disparity(args: argparse.Namespace) -> dict:
    """Disparity (and depth) metrics of a pair's result; returns the JSON-able report."""
    import cv2
    import numpy as np

    from recon3d.core.errors import UserError
    from recon3d.stereo.evaluate import (
        depth_metrics,
        disparity_metrics,
        nonoccluded_mask,
        textured_mask,
        valid_gt,
    )

    disp_path = args.result / "disparity.pfm" if args.result.is_dir() else args.result
    if args.gt is None:
        raise UserError(f"{args.result}: give the ground-truth disparity map as the second argument")
    est = _load_map(disp_path, "disparity")
    gt = _load_map(args.gt, "ground-truth disparity")
    if est.shape != gt.shape:
        raise UserError(f"{disp_path} is {est.shape[1]}x{est.shape[0]} but {args.gt} is {gt.shape[1]}x{gt.shape[0]}; "
                        "compare maps of the same rectified image size")
    if not valid_gt(gt).any():
        raise UserError(f"{args.gt}: not one pixel of this ground truth holds a disparity (all 0, inf or NaN); "
                        "give the ground-truth map of this pair")
    regions = {"all": None, "nonoccluded": nonoccluded_mask(gt)}
    image = args.image or (disp_path.parent / "left_rectified.png")
    if image.is_file():
        img = cv2.imread(str(image))
        if img is None or img.shape[:2] != gt.shape:
            raise UserError(f"{image}: not an image of the disparity's size {gt.shape[1]}x{gt.shape[0]}")
        regions["textured"] = regions["nonoccluded"] & textured_mask(img)
    report = {"disparity_file": str(disp_path), "gt_file": str(args.gt),
              "disparity": {name: disparity_metrics(est, gt, m) for name, m in regions.items()}}
    depth_path = args.depth or (disp_path.parent / "depth.npy")
    gt_depth = args.gt_depth
    if gt_depth is None and args.gt.parent.name == "disparity":
        cand = args.gt.parent.parent / "depth" / f"{args.gt.stem}.npy"
        gt_depth = cand if cand.is_file() else None
    if depth_path.is_file() and gt_depth is not None:
        est_z, gt_z = _load_map(depth_path, "depth"), _load_map(gt_depth, "ground-truth depth")
        if not (np.isfinite(gt_z) & (gt_z > 0)).any():
            raise UserError(f"{gt_depth}: not one pixel of this ground-truth depth holds a depth (all 0, inf or NaN); "
                            "give the ground-truth depth of this pair")
        report["depth_file"], report["gt_depth_file"] = str(depth_path), str(gt_depth)
        report["depth"] = depth_metrics(est_z, gt_z, regions.get("textured", regions["nonoccluded"]))
        report["depth"]["region"] = "textured" if "textured" in regions else "nonoccluded"
    return report


def evaluate_mesh(args: argparse.Namespace) -> dict:
    """Accuracy and completeness of a mesh against a gt/ folder; returns the report."""
    from recon3d.core.errors import UserError
    from recon3d.stereo.evaluate import GTViews, mesh_metrics
    from recon3d.stereo.fusion import read_mesh

    if args.result.is_dir():
        mesh_path, gt_dir = args.result / "stereo" / "mesh.ply", args.gt or args.result / "gt"
        if not mesh_path.is_file():
            raise UserError(f"{args.result}: no stereo/mesh.ply here; run `recon3d stereo {args.result}` first")
    else:
        mesh_path, gt_dir = args.result, args.gt
        if gt_dir is None:
            raise UserError(f"{mesh_path}: give the scene's gt/ folder (sparse/0 + depth/) as the second argument")
    if not (gt_dir / "sparse" / "0").is_dir() or not (gt_dir / "depth").is_dir():
        raise UserError(f"{gt_dir}: not a ground-truth folder (needs sparse/0 and depth/); "
                        "synthetic scenes from `recon3d scene render` have one")
    if not mesh_path.is_file():
        raise UserError(f"{mesh_path}: no such mesh file")
    vertices, triangles = read_mesh(mesh_path)
    if len(triangles) == 0:
        raise UserError(f"{mesh_path}: no triangles in this file; give a mesh (e.g. ws/stereo/mesh.ply)")
    metrics = mesh_metrics(vertices, triangles, GTViews.load(gt_dir), args.threshold)
    return {"mesh_file": str(mesh_path), "gt_dir": str(gt_dir), "mesh": metrics}


def _table(report: dict) -> str:
    lines = []
    if "disparity" in report:
        lines.append(f"disparity {report['disparity_file']} vs {report['gt_file']}")
        lines.append(f"  {'region':12s} {'pixels':>8s} {'density':>8s} {'EPE':>7s} {'median':>7s} "
                     f"{'bad-1':>7s} {'bad-2':>7s} {'bad-4':>7s}")
        for name, m in report["disparity"].items():
            lines.append(f"  {name:12s} {m['pixels']:8d} {100 * m['density']:7.1f}% {m['epe']:7.3f} {m['median']:7.3f} "
                         f"{100 * m['bad_1']:6.2f}% {100 * m['bad_2']:6.2f}% {100 * m['bad_4']:6.2f}%")
        lines.append("  (EPE in px over pixels with an estimate; bad-k counts missing estimates as bad)")
    if "depth" in report:
        d = report["depth"]
        lines.append(f"depth {report['depth_file']} vs {report['gt_depth_file']} ({d['region']} pixels)")
        lines.append(f"  all:  median |dZ|/Z {100 * d['median_rel']:.2f} %, within 1 %: {100 * d['within_1pct']:.1f} % "
                     f"of pixels")
        if "near_median_rel" in d:
            lines.append(f"  near (Z <= {d['near_max_depth']:.2f} m): median |dZ|/Z {100 * d['near_median_rel']:.2f} %, "
                         f"within 1 %: {100 * d['near_within_1pct']:.1f} % of pixels")
    if "mesh" in report:
        m = report["mesh"]
        lines.append(f"mesh {report['mesh_file']} vs {report['gt_dir']} "
                     f"({m['vertices']} vertices, {m['triangles']} triangles)")
        lines.append(f"  scene extent {m['scene_extent']:.2f} m, threshold {100 * m['threshold']:.1f} cm")
        lines.append(f"  accuracy     median {100 * m['accuracy_median']:.2f} cm "
                     f"({100 * m['accuracy_median'] / m['scene_extent']:.3f} % of the extent), "
                     f"90th pct {100 * m['accuracy_p90']:.1f} cm, {100 * m['accurate_fraction']:.1f} % within threshold")
        lines.append(f"  completeness {100 * m['completeness']:.1f} % of GT points within threshold "
                     f"(median distance {100 * m['completeness_median']:.2f} cm)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from recon3d.core.errors import UserError

    r = args.result
    if not r.exists():
        raise UserError(f"{r}: no such file or folder; give a disparity map, a stereo output folder, a mesh or a workspace")
    is_mesh = r.suffix.lower() == ".ply" or (r.is_dir() and (r / "stereo").is_dir() and not (r / "disparity.pfm").exists())
    report = evaluate_mesh(args) if is_mesh else evaluate_disparity(args)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0
