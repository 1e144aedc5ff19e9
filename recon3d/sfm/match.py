"""Matching and geometric verification (pycolmap): the selected pairs are matched and each is
verified by F/E/H RANSAC; :func:`pair_stats` reads raw and verified counts back for reports.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from recon3d.sfm.config import MatchingConfig, apply_pycolmap_options
from recon3d.sfm.extract import (
    alias_image_names,
    quiet_glog,
    restore_image_names,
    sift_device,
    split_chunks,
)
from recon3d.sfm.pairs import select_pairs


def matching_options(config: MatchingConfig, seed: int = 0, num_threads: int = -1):
    """pycolmap ``(FeatureMatchingOptions, TwoViewGeometryOptions)`` for ``config``, then its ``pycolmap_options``."""
    import pycolmap

    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = num_threads
    mo.sift.max_ratio = config.max_ratio
    mo.sift.cross_check = config.cross_check
    vo = pycolmap.TwoViewGeometryOptions()
    vo.min_num_inliers = config.min_num_inliers
    vo.ransac.max_error = config.max_error
    vo.ransac.random_seed = seed
    apply_pycolmap_options(config.pycolmap_options, "matching.pycolmap_options", {"matching": mo, "verification": vo})
    return mo, vo


def match(database: Path, config: MatchingConfig, progress: Callable | None = None, device: str = "auto",
          seed: int = 0, num_threads: int = -1) -> dict:
    """Match and verify the selected image pairs; pairs already matched are skipped.

    Args:
        database: ``database.db`` with features.
        config: options.
        progress: optional tqdm-like wrapper.
        device: 'auto', 'cpu' or 'cuda' (matching).
        seed: random seed of verification RANSAC and pair selection (-1: random).
        num_threads: CPU threads (-1: all).
    Returns:
        ``{"mode": str, "pairs": selected, "matched_pairs": n, "verified_pairs": n, "inlier_matches": n}``.
    """
    import pycolmap

    quiet_glog()
    if seed >= 0:
        pycolmap.set_random_seed(seed)
    mo, vo = matching_options(config, seed, num_threads)  # a bad pycolmap option fails before any work
    mode, pairs = select_pairs(database, config, seed=seed, num_threads=num_threads)
    blocks = split_chunks(pairs, min(40, max(1, len(pairs) // 20)))
    wrap = progress or (lambda it, **kw: it)
    # COLMAP's pair list is text split on spaces: names it cannot carry go in as reversible aliases
    db = pycolmap.Database.open(database)
    try:
        alias = alias_image_names(db)
    finally:
        db.close()
    try:
        with tempfile.TemporaryDirectory(prefix="recon3d-pairs-") as tmp:
            pair_file = Path(tmp) / "pairs.txt"
            bar = wrap(range(len(pairs)), desc=f"matching ({mode})", unit="pair")
            it = iter(bar)
            for chunk in blocks:
                pair_file.write_text("".join(f"{alias[a]} {alias[b]}\n" for a, b in chunk), encoding="utf-8")
                po = pycolmap.ImportedPairingOptions()
                po.match_list_path = str(pair_file)
                pycolmap.match_image_pairs(database, mo, po, vo, sift_device(device))
                for _ in chunk:
                    next(it, None)
            if hasattr(bar, "close"):
                bar.close()
    finally:
        db = pycolmap.Database.open(database)
        try:
            restore_image_names(db)
        finally:
            db.close()
    db = pycolmap.Database.open(database)
    try:
        info = {"mode": mode, "pairs": len(pairs), "matched_pairs": db.num_matched_image_pairs(),
                "verified_pairs": db.num_verified_image_pairs(), "inlier_matches": db.num_inlier_matches()}
    finally:
        db.close()
    return info


# -------------------------------------------------------------------------------- statistics
@dataclass
class PairStats:
    """Per-image and per-pair counts read from a database."""

    names: list[str]
    """Image names, sorted."""
    keypoints: np.ndarray
    """(N,) features per image."""
    matches: np.ndarray
    """(N, N) symmetric raw match counts (0 where not matched)."""
    inliers: np.ndarray
    """(N, N) symmetric verified inlier counts (0 where the pair failed verification)."""
    camera_ids: np.ndarray
    """(N,) camera id of each image."""


def pair_stats(database: Path) -> PairStats:
    """Read :class:`PairStats` from ``database.db``."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        images = sorted(db.read_all_images(), key=lambda im: im.name)
        index = {im.image_id: i for i, im in enumerate(images)}
        n = len(images)
        kp = np.array([db.num_keypoints_for_image(im.image_id) if db.exists_keypoints(im.image_id) else 0
                       for im in images], dtype=np.int64)
        matches = np.zeros((n, n), dtype=np.int64)
        inliers = np.zeros((n, n), dtype=np.int64)
        for table, (pids, counts) in ((matches, db.read_num_matches()), (inliers, db.read_two_view_geometry_num_inliers())):
            for pid, c in zip(pids, counts):
                a, b = pycolmap.pair_id_to_image_pair(pid)
                if a in index and b in index:
                    table[index[a], index[b]] = table[index[b], index[a]] = c
        cams = np.array([im.camera_id for im in images], dtype=np.int64)
    finally:
        db.close()
    return PairStats([im.name for im in images], kp, matches, inliers, cams)
