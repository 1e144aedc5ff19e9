"""Image retrieval for pair selection: a vocabulary tree trained on the photos' own SIFT features.

COLMAP's retrieval matching needs a vocabulary-tree file, which COLMAP downloads from the
internet. recon3d downloads nothing: :func:`build_vocab_tree` trains one (pycolmap's
``VisualIndex``: k-means visual words plus a Hamming embedding) on a sample of the descriptors
already in ``database.db``, and :func:`retrieval_pairs` asks pycolmap's vocabulary-tree pair
generator for each image's most similar images. A tree given by the user (COLMAP's
``vocab_tree_*.bin``) works the same way.

On a cluster (:func:`recon3d.sfm.cluster.retrieval_on_cluster`) the same work is split:
:func:`index_vocab_tree` indexes every photo into the tree once, as the pair generator does before
its first query, and writes the indexed tree; :func:`query_vocab_tree` runs pycolmap's own generator
on that file for any subset of the photos (it finds them indexed and only queries), so the union of
the subsets' pairs is :func:`retrieval_pairs`' list.

Determinism: the same database and seed give the same tree file, byte for byte, and the same pair
set, on one machine and on a cluster. What could vary and why it does not: the sample is drawn
with a seeded numpy generator; the Hamming-embedding projection comes from COLMAP's thread-local
PRNG, which ``pycolmap.set_random_seed`` seeds right before every build, in the calling thread;
faiss k-means and the IVF/ITQ word index use faiss's own fixed seeds; the number of OpenMP threads
(1 to 16) gives the same tree. *Indexing* the photos into the tree is not deterministic on more
than one thread: measured on the 12-view orbit database, 3 of 60 indexings on 2 threads wrote a
different file, and queries on such a file gave a different pair once in six (the cause of the
cluster test's rare failures). So both paths index on one thread, through
:func:`index_vocab_tree`, and query the indexed file (queries are read-only and are spread over
threads or tasks). What does vary is the *order* of COLMAP's pair list: the pair generator answers
queries on a thread pool and returns results in the order the threads finish, so
:func:`retrieval_pairs` (and :func:`recon3d.sfm.pairs.select_pairs`) return sorted, de-duplicated
pairs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from recon3d.core.errors import UserError

MIN_POINTS_PER_WORD = 40
"""k-means needs about this many training descriptors per visual word (faiss warns below 39)."""


def vocab_size(num_descriptors: int, max_words: int = 16384) -> int:
    """Visual words for ``num_descriptors`` training descriptors: the largest power of two with at
    least :data:`MIN_POINTS_PER_WORD` descriptors each, between 64 and ``max_words``."""
    words = 64
    while words * 2 * MIN_POINTS_PER_WORD <= num_descriptors and words * 2 <= max_words:
        words *= 2
    return words


def sample_descriptors(database: Path, max_descriptors: int = 200_000, seed: int = 0) -> np.ndarray:
    """An even sample of the SIFT descriptors in ``database.db``.

    Returns:
        ``(M, 128)`` float32, at most ``max_descriptors`` rows, the same share from every image.
    """
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        ids = sorted(im.image_id for im in db.read_all_images() if db.exists_descriptors(im.image_id))
        if not ids:
            raise UserError(f"{database} holds no features; extract them first (recon3d sfm does)")
        per_image = max(32, max_descriptors // len(ids))
        rng = np.random.default_rng(seed)
        parts = []
        for image_id in ids:
            desc = db.read_descriptors(image_id).to_float().data
            parts.append(desc[rng.permutation(len(desc))[:per_image]] if len(desc) > per_image else desc)
    finally:
        db.close()
    return np.ascontiguousarray(np.concatenate(parts)[:max_descriptors], dtype=np.float32)


def build_vocab_tree(database: Path, out: Path, max_descriptors: int = 200_000, seed: int = 0,
                     num_threads: int = -1) -> dict:
    """Train a vocabulary tree on the photos' own descriptors and write it (COLMAP's format) to ``out``.

    Args:
        database: ``database.db`` with extracted SIFT features.
        out: the tree file to write.
        max_descriptors: training sample size (memory: 512 bytes each).
        seed: seed for the sample and for k-means.
        num_threads: CPU threads (-1: all).
    Returns:
        ``{"words": int, "descriptors": int, "seconds": float}``.
    """
    import pycolmap

    t0 = time.perf_counter()
    desc = sample_descriptors(database, max_descriptors, seed)
    if len(desc) < 64 * MIN_POINTS_PER_WORD // 4:
        raise UserError(f"{database} holds only {len(desc)} features: too few to train a vocabulary tree; "
                        "use --matching exhaustive")
    words = vocab_size(len(desc))
    options = pycolmap.VisualIndex.BuildOptions()
    options.num_visual_words = words
    options.num_iterations = 20
    options.num_rounds = 1
    options.num_threads = num_threads
    pycolmap.set_random_seed(max(seed, 0))
    index = pycolmap.VisualIndex.create(128, 64)
    with _stderr_silenced():  # faiss's k-means prints sample-size advice we have already followed
        index.build(options, pycolmap.FeatureDescriptorsFloat(pycolmap.FeatureExtractorType.SIFT, desc))
    out.parent.mkdir(parents=True, exist_ok=True)
    index.write(out)
    return {"words": words, "descriptors": int(len(desc)), "seconds": time.perf_counter() - t0}


def vocab_tree_file(database: Path, vocab_tree: Path | str, tmp: Path, seed: int = 0,
                    num_threads: int = -1) -> tuple[Path, dict]:
    """The user's vocabulary tree, or one trained on ``database``'s features and written under ``tmp``.

    Returns:
        ``(tree file, info)`` with info ``{"vocab_tree": path}`` or ``{"vocab_tree": "built", "words": ...}``.
    """
    if vocab_tree:
        tree = Path(vocab_tree)
        if not tree.is_file():
            raise UserError(f"vocabulary tree {tree} not found; give COLMAP's vocab_tree_*.bin, "
                            "or leave --vocab-tree out and recon3d trains one on your photos")
        return tree, {"vocab_tree": str(tree)}
    tree = Path(tmp) / "vocab_tree.bin"
    return tree, {"vocab_tree": "built", **build_vocab_tree(database, tree, seed=seed, num_threads=num_threads)}


def retrieval_pairs(database: Path, num_images: int, vocab_tree: Path | str = "", seed: int = 0,
                    num_threads: int = -1) -> tuple[list[tuple[int, int]], dict]:
    """Each image paired with its ``num_images`` most similar images (by image id).

    Args:
        database: ``database.db`` with extracted SIFT features.
        num_images: neighbours retrieved per image.
        vocab_tree: a COLMAP vocabulary-tree file; '' trains one on this database (:func:`build_vocab_tree`).
        seed: seed for training the tree.
        num_threads: CPU threads (-1: all).
    Returns:
        ``(pairs, info)``: unordered pairs ``(a, b)`` with ``a < b``, sorted, and what was done
        (``{"vocab_tree": "built"|path, "words": ..., "seconds": ...}``).
    """
    import pycolmap

    with tempfile.TemporaryDirectory(prefix="recon3d-vocab-") as tmp:
        indexed, info = indexed_vocab_tree(database, vocab_tree, Path(tmp), seed, num_threads)
        options = pycolmap.VocabTreePairingOptions()
        options.vocab_tree_path = str(indexed)  # every photo found indexed: the generator only queries
        options.num_images = num_images + 1  # an image retrieves itself first
        options.num_checks = NUM_CHECKS
        options.num_threads = num_threads
        db = pycolmap.Database.open(database)
        try:
            raw = pycolmap.VocabTreePairGenerator(options, db).all_pairs()
        finally:
            db.close()
    pairs = sorted({(min(a, b), max(a, b)) for a, b in raw if a != b})
    return pairs, info


# ------------------------------------------------------- queries spread over processes (--cluster)
NUM_CHECKS = 64
"""Nearest-neighbour checks of indexing and queries: pycolmap's ``VocabTreePairingOptions.num_checks``
default, which :func:`retrieval_pairs` leaves as it is."""


def feature_keypoints(keypoints: np.ndarray):
    """``(N, 6)`` keypoint rows (x, y, a11, a12, a21, a22: what ``Database.read_keypoints`` gives) as
    ``pycolmap.FeatureKeypoints``."""
    import pycolmap

    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 6)
    return pycolmap.FeatureKeypoints([pycolmap.FeatureKeypoint(x=r[0], y=r[1], a11=r[2], a12=r[3], a21=r[4], a22=r[5])
                                      for r in kp.tolist()])


def index_vocab_tree(tree: Path, database: Path, out: Path) -> dict:
    """Index every photo of ``database`` into the vocabulary tree ``tree`` and write the result to ``out``.

    On one thread: on more, the file depends on thread timing (see the module's note on determinism).

    What pycolmap's ``VocabTreePairGenerator`` does before its first query (each feature assigned to
    one visual word, :data:`NUM_CHECKS` checks, then the tf-idf weights), so a generator reading
    ``out`` finds every photo already indexed and only queries: :func:`query_vocab_tree` on any
    machine gives the pairs :func:`retrieval_pairs` gives here. Photos without features are left out.

    Returns:
        ``{"indexed": photos, "features": int, "index_bytes": size of out, "index_seconds": float}``.
    """
    import pycolmap

    t0 = time.perf_counter()
    index = pycolmap.VisualIndex.read(tree)
    options = pycolmap.VisualIndex.IndexOptions()
    options.num_neighbors = 1
    options.num_checks = NUM_CHECKS
    options.num_threads = 1
    db = pycolmap.Database.open(database)
    features = indexed = 0
    try:
        for image_id in sorted(im.image_id for im in db.read_all_images()):
            if not db.exists_descriptors(image_id):
                continue
            desc = db.read_descriptors(image_id)
            index.add(options, image_id, feature_keypoints(db.read_keypoints(image_id)), desc.to_float())
            features += desc.data.shape[0]
            indexed += 1
    finally:
        db.close()
    index.prepare()
    out.parent.mkdir(parents=True, exist_ok=True)
    index.write(out)
    return {"indexed": indexed, "features": features, "index_bytes": out.stat().st_size,
            "index_seconds": time.perf_counter() - t0}


def indexed_vocab_tree(database: Path, vocab_tree: Path | str, tmp: Path, seed: int = 0,
                       num_threads: int = -1) -> tuple[Path, dict]:
    """:func:`vocab_tree_file` with every photo of ``database`` indexed into it (:func:`index_vocab_tree`),
    written under ``tmp``: what retrieval, its cluster twin and loop detection query.

    Returns:
        ``(indexed tree file, info of both steps)``.
    """
    tree, info = vocab_tree_file(database, vocab_tree, tmp, seed, num_threads)
    indexed = Path(tmp) / "indexed.bin"
    try:
        info.update(index_vocab_tree(tree, database, indexed))
    except Exception as exc:  # a corrupt or foreign tree file
        raise UserError(f"vocabulary tree {tree} could not be used ({exc}); "
                        "leave --vocab-tree out and recon3d trains one on your photos") from None
    return indexed, info


def query_vocab_tree(skeleton: bytes, indexed_tree: bytes, features: dict, num_images: int,
                     num_threads: int = 1) -> list[tuple[int, int]]:
    """The retrieval pairs of the photos ``features`` (image id -> ``(keypoints, pycolmap.FeatureDescriptors)``).

    Args:
        skeleton: bytes of a copy of ``database.db`` without features (every photo's row).
        indexed_tree: bytes of a tree file from :func:`index_vocab_tree` on that database.
        features: the query photos' features.
        num_images: neighbours per photo (as :func:`retrieval_pairs`).
        num_threads: CPU threads.
    Returns:
        ``(query id, neighbour id)`` pairs, neighbours of each query as pycolmap's generator gives them.
    """
    import pycolmap

    from recon3d.sfm.extract import alias_image_names

    empty_kp = np.zeros((0, 6), np.float32)
    empty_desc = pycolmap.FeatureDescriptors(pycolmap.FeatureExtractorType.SIFT, np.zeros((0, 128), np.uint8))
    with tempfile.TemporaryDirectory(prefix="recon3d-query-") as tmp:
        path, tree, queries = Path(tmp) / "query.db", Path(tmp) / "tree.bin", Path(tmp) / "queries.txt"
        path.write_bytes(skeleton)
        tree.write_bytes(indexed_tree)
        db = pycolmap.Database.open(path)
        try:
            with pycolmap.DatabaseTransaction(db):
                # the generator reads every photo's features (and finds it indexed already): the others
                # get none, of the right type
                for im in db.read_all_images():
                    kp, desc = features.get(im.image_id, (empty_kp, empty_desc))
                    db.write_keypoints(im.image_id, kp)
                    db.write_descriptors(im.image_id, desc)
                alias_image_names(db)  # the query list is text, one name a line
            names = {im.image_id: im.name for im in db.read_all_images()}
        finally:
            db.close()
        queries.write_text("".join(f"{names[i]}\n" for i in sorted(features)), encoding="utf-8")
        options = pycolmap.VocabTreePairingOptions()
        options.vocab_tree_path = str(tree)
        options.match_list_path = str(queries)
        options.num_images = num_images + 1  # an image retrieves itself first
        options.num_checks = NUM_CHECKS
        options.num_threads = num_threads
        db = pycolmap.Database.open(path)
        try:
            return [(int(a), int(b)) for a, b in pycolmap.VocabTreePairGenerator(options, db).all_pairs()]
        finally:
            db.close()


@contextlib.contextmanager
def _stderr_silenced():
    """Silence the C-level stderr (file descriptor 2) for the duration."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
