"""Which image pairs to match: exhaustive, sequential (with loop detection), spatial (GPS) or
retrieval by a vocabulary tree trained on the photos themselves (:mod:`recon3d.sfm.retrieval`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from recon3d.core.errors import UserError
from recon3d.sfm.config import MatchingConfig


def _id_names(db) -> dict[int, str]:
    return {im.image_id: im.name for im in db.read_all_images()}


def unique_pairs(pairs) -> list[tuple[str, str]]:
    """Unordered pairs without repeats or self-pairs, each as ``(a, b)`` with ``a < b``, sorted.

    COLMAP's retrieval and loop-detection generators answer queries on a thread pool and hand the
    results back in the order the threads finish, so their raw pair lists change order from run
    to run (and list ``(a, b)`` and ``(b, a)`` both); this makes the selection one canonical list.
    """
    return sorted({(min(a, b), max(a, b)) for a, b in pairs if a != b})


def select_pairs(database: Path, config: MatchingConfig, seed: int = 0, num_threads: int = -1,
                 retrieve: Callable | None = None) -> tuple[str, list[tuple[str, str]]]:
    """The pair-selection mode ``auto`` resolves to, and the image pairs it gives (by name).

    ``seed`` and ``num_threads`` go to the vocabulary tree trained for retrieval and loop detection.
    ``retrieve``: what answers retrieval, called as :func:`recon3d.sfm.retrieval.retrieval_pairs`
    (default; :func:`recon3d.sfm.cluster.retrieval_on_cluster` spreads the queries over a cluster).

    The pairs are canonical (:func:`unique_pairs`): the same database and config give the same list.
    """
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        n = db.num_images()
        has_gps = db.num_pose_priors() > 0
        names = _id_names(db)
    finally:
        db.close()
    mode = config.pairing
    if mode == "auto":
        mode = "exhaustive" if n <= config.exhaustive_max_images else ("spatial" if has_gps else "retrieval")
    if mode == "spatial" and not has_gps:
        raise UserError("spatial matching needs GPS positions in the photos' EXIF and these have none; "
                        "use --matching exhaustive, retrieval or sequential")
    from recon3d.sfm.retrieval import NUM_CHECKS, indexed_vocab_tree, retrieval_pairs

    if mode == "retrieval":
        ids, _ = (retrieve or retrieval_pairs)(database, min(config.retrieval_num_images, max(n - 1, 1)), config.vocab_tree,
                                 seed=seed, num_threads=num_threads)
        return mode, unique_pairs((names[a], names[b]) for a, b in ids)
    with tempfile.TemporaryDirectory(prefix="recon3d-vocab-") as tmp:
        if mode == "exhaustive":
            options, generator = pycolmap.ExhaustivePairingOptions(), pycolmap.ExhaustivePairGenerator
        elif mode == "sequential":
            options, generator = pycolmap.SequentialPairingOptions(), pycolmap.SequentialPairGenerator
            options.overlap = config.overlap
            if config.loop_detection:
                options.loop_detection = True
                # indexed here, on one thread: the generator's own indexing depends on thread timing
                indexed, _ = indexed_vocab_tree(database, config.vocab_tree, Path(tmp), seed, num_threads)
                options.vocab_tree_path = str(indexed)
                options.loop_detection_num_checks = NUM_CHECKS
        else:
            options, generator = pycolmap.SpatialPairingOptions(), pycolmap.SpatialPairGenerator
            options.max_num_neighbors = config.spatial_max_neighbors
        if hasattr(options, "num_threads"):
            options.num_threads = num_threads
        db = pycolmap.Database.open(database)
        try:
            raw = generator(options, db).all_pairs()
        finally:
            db.close()
    return mode, unique_pairs((names[a], names[b]) for a, b in raw)
