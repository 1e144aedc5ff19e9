"""Structure from motion: a folder of photos to cameras and sparse points (a COLMAP model).

  recon3d sfm photos/ -o ws                       # SIFT, exhaustive matching, incremental mapping + BA
  recon3d sfm photos/ -o ws --mapper global       # global SfM (GLOMAP) instead
  recon3d sfm photos/ -o ws --camera camera.json  # known intrinsics (from `recon3d calibrate`) as a prior
  recon3d sfm photos/ -o ws --camera camera.json --fixed-intrinsics
  recon3d sfm frames/ -o ws --matching sequential --overlap 15      # video-like folders
  recon3d sfm many/ -o ws --matching retrieval --retrieval-images 30  # large unordered sets (auto over 150)
  recon3d sfm photos/ -o ws --peak-threshold 0.002 --max-features 32768   # low-texture objects

Writes ws/images/ (the photos, names kept), ws/database.db (features and matches),
ws/sparse/0/{cameras,images,points3D}.bin + points.ply (the largest model; further models in
sparse/1, ...), and ws/reports/sfm.{json,md} with plots (reprojection error per photo, track
lengths, observations per photo, matches graph). Every photo left out is named with the reason.

A rerun reuses the features and matches in database.db and skips mapping when the photos and
options are unchanged (--overwrite maps again). Exit status: 0 done, 2 bad input (no or too few
readable photos, bad options), 3 the photos cannot be reconstructed (e.g. they share no content).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_sfm_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `recon3d sfm` and `recon3d run`."""
    from recon3d.sfm.extract import COLMAP_CAMERA_MODELS

    g = parser.add_argument_group("features and matching")
    g.add_argument("--max-image-size", type=int, default=1600,
                   help="longest side SIFT sees, pixels (default 1600; -1: full size)")
    g.add_argument("--max-features", type=int, default=8192, help="most SIFT features per photo (default 8192)")
    g.add_argument("--peak-threshold", type=float, default=0.02 / 3,
                   help="SIFT detection threshold (default 0.00667; 0.002 finds more on low-texture objects)")
    g.add_argument("--matching", choices=["auto", "exhaustive", "retrieval", "sequential", "spatial"], default="auto",
                   help="pair selection (default auto: exhaustive up to 150 photos, else spatial with GPS, else "
                        "retrieval); sequential for video frames")
    g.add_argument("--overlap", type=int, default=10, help="sequential matching: following photos matched to each (default 10)")
    g.add_argument("--retrieval-images", type=int, default=30,
                   help="retrieval matching: most similar photos matched to each (default 30)")
    g.add_argument("--loop-detection", action="store_true", help="sequential matching: also match similar photos")
    g.add_argument("--vocab-tree", default="",
                   help="COLMAP vocabulary tree file for retrieval and loop detection "
                        "(default: trained on your photos' own features; nothing is downloaded)")
    g.add_argument("--min-inliers", type=int, default=15, help="geometric verification: fewest inliers per pair (default 15)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="SIFT on CPU or CUDA (default auto)")
    c = parser.add_argument_group("cameras")
    c.add_argument("--camera", type=Path, help="camera.json from `recon3d calibrate`: intrinsics of the camera")
    c.add_argument("--fixed-intrinsics", action="store_true", help="with --camera: keep the intrinsics fixed (default: refine them)")
    c.add_argument("--camera-model", choices=COLMAP_CAMERA_MODELS, default="SIMPLE_RADIAL", metavar="MODEL",
                   help="COLMAP model for self-calibration: " + ", ".join(COLMAP_CAMERA_MODELS) + " (default SIMPLE_RADIAL)")
    c.add_argument("--camera-mode", choices=["auto", "single", "per_image"], default="auto",
                   help="auto (default): one camera per image size and EXIF camera/focal length; "
                        "single: one per image size; per_image: one per photo")
    c.add_argument("--refine-principal-point", choices=["auto", "always", "never"], default="auto",
                   help="auto: refine it in a final BA and keep it only where the views determine it (default)")
    m = parser.add_argument_group("mapping")
    m.add_argument("--mapper", choices=["incremental", "global"], default="incremental",
                   help="incremental (COLMAP, default) or global (GLOMAP)")
    m.add_argument("--abs-pose-min-inliers", type=int, default=30,
                   help="incremental: fewest 2D-3D inliers to register a photo (default 30; 6 registers more, riskier)")
    m.add_argument("--max-reproj-error", type=float, default=2.0,
                   help="final refinement: drop observations reprojecting worse, pixels (default 2)")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0; -1 random)")
    m.add_argument("--threads", type=int, default=-1, help="CPU threads (default: all)")


def config_from_args(args: argparse.Namespace):
    """An :class:`recon3d.sfm.SfmConfig` from parsed options."""
    from recon3d.core.errors import UserError
    from recon3d.sfm.extract import FeatureConfig
    from recon3d.sfm.pipeline import SfmConfig

    if args.fixed_intrinsics and not args.camera:
        raise UserError("--fixed-intrinsics needs --camera camera.json (the intrinsics to keep)")
    fc = FeatureConfig(max_image_size=args.max_image_size, max_num_features=args.max_features,
                       peak_threshold=args.peak_threshold, camera_model=args.camera_model,
                       camera_mode=args.camera_mode, matching=args.matching, overlap=args.overlap,
                       loop_detection=args.loop_detection, vocab_tree=args.vocab_tree,
                       retrieval_num_images=args.retrieval_images,
                       min_num_inliers=args.min_inliers, seed=args.seed, num_threads=args.threads,
                       device=args.device)
    ratio = 0.05 if args.abs_pose_min_inliers < 30 else 0.25
    return SfmConfig(features=fc, mapper=args.mapper, camera_file=str(args.camera) if args.camera else "",
                     camera_fixed=args.fixed_intrinsics, refine_principal_point=args.refine_principal_point,
                     abs_pose_min_num_inliers=args.abs_pose_min_inliers, abs_pose_min_inlier_ratio=ratio,
                     max_reproj_error=args.max_reproj_error, seed=args.seed, num_threads=args.threads)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="?",
                        help="folder of photos (default: the workspace's images/ folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="workspace folder (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="map again even if this result exists")
    add_sfm_options(parser)


def run(args: argparse.Namespace) -> int:
    from recon3d.core.progress import progress
    from recon3d.core.workspace import Workspace
    from recon3d.sfm.pipeline import run_sfm

    config = config_from_args(args)
    ws = Workspace(args.output)
    result = run_sfm(ws, args.images, config, overwrite=args.overwrite, progress=progress)
    if result.skipped:
        print(f"{ws.model}: already reconstructed from these photos with these options (use --overwrite to map again)")
    print(result.summary)
    return 0
