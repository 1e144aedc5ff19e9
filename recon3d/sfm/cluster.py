"""Feature extraction and matching as Ray tasks (``recon3d sfm --cluster ADDRESS``).

The driver (the ``recon3d sfm`` process) keeps the single-machine data flow and is the only
writer of ``database.db``:

* :func:`extract_on_cluster`: the driver imports the photos (cameras, images) as
  :func:`recon3d.sfm.extract.extract` does; each task takes a shard of photos, reads them from the
  path every node sees (or gets their bytes through the object store with ``ship_images``), runs
  pycolmap's SIFT on them exactly as ``pycolmap.extract_features`` does (same downscaling, keypoints
  back at full resolution) and returns keypoints and descriptors; the driver writes each shard in
  one transaction. A killed driver resumes from the shards already written.
* :func:`match_on_cluster`: the pairs are selected on the driver (:func:`recon3d.sfm.pairs.select_pairs`,
  canonical order), cut into blocks; each task gets the features of its block's images from the
  object store and runs pycolmap's own matcher and geometric verification on them in a private
  scratch database (so results are those of the single-machine path, whatever the blocks); the
  driver writes each block's matches and two-view geometries in one transaction. Pairs already
  in the database are reused.
* :func:`retrieval_on_cluster` (``--matching retrieval``): the driver trains the vocabulary tree on
  the photos' features and indexes every photo into it (:func:`recon3d.sfm.retrieval.index_vocab_tree`);
  each task gets the indexed tree and a block of photos and runs pycolmap's own retrieval queries
  for them (:func:`recon3d.sfm.retrieval.query_vocab_tree`): the pairs equal the single-machine
  ones. A photo whose query fails twice is queried on the driver.

Faults (:func:`recon3d.core.cluster.run_jobs`): a failed task's photos or pairs get one more task
each; a photo or pair that fails twice is skipped with a warning naming it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from recon3d.core.cluster import ClusterSession, Job, node_id, run_jobs
from recon3d.sfm.config import ExtractionConfig, MatchingConfig
from recon3d.sfm.extract import (
    alias_image_names,
    camera_for_size,
    extract_sparse_again,
    extraction_options,
    quiet_glog,
    restore_image_names,
    sift_device,
    split_chunks,
)
from recon3d.sfm.images import InputImage


# ------------------------------------------------------------------------------ extraction
def sift_of_bitmap(extractor, bitmap, max_image_size: int) -> tuple[np.ndarray, object]:
    """SIFT of one ``pycolmap.Bitmap`` as ``pycolmap.extract_features`` computes it.

    Returns ``((N, 6) float32 keypoints x, y, a11, a12, a21, a22 at full resolution, FeatureDescriptors (N, 128))``.
    """
    width, height = bitmap.width, bitmap.height
    if 0 < max_image_size < max(width, height):
        scale = max_image_size / max(width, height)  # COLMAP rounds to the nearest pixel, halves up
        bitmap.rescale(int(np.floor(width * scale + 0.5)), int(np.floor(height * scale + 0.5)))
    keypoints, descriptors = extractor.extract(bitmap)
    if (bitmap.width, bitmap.height) != (width, height):
        sx, sy = width / bitmap.width, height / bitmap.height
        for k in keypoints:
            k.rescale(sx, sy)
    kp = np.array([[k.x, k.y, k.a11, k.a12, k.a21, k.a22] for k in keypoints], dtype=np.float32).reshape(-1, 6)
    return kp, descriptors


def extract_shard(image_dir: str, names: list[str], blobs: list | None, config: ExtractionConfig,
                  device: str = "cpu") -> dict:
    """Ray task: SIFT of the photos ``names`` (read from ``image_dir``, or from ``blobs``: their bytes).

    Returns ``{"node", "pid", "seconds", "cpu_s", "features": [(name, (N, 6) keypoints, descriptors)],
    "failed": [(name, reason)]}``; a photo that cannot be read or fails is listed in ``failed``.
    """
    import pycolmap

    t0, c0 = time.perf_counter(), time.process_time()
    quiet_glog()
    ext = extraction_options(config, num_threads=1)
    extractor = pycolmap.FeatureExtractor.create(ext, sift_device(device))
    features, failed = [], []
    with tempfile.TemporaryDirectory(prefix="recon3d-shard-") as tmp:
        for k, name in enumerate(names):
            path = Path(image_dir) / name
            try:
                if blobs is not None:
                    path = Path(tmp) / f"{k}{Path(name).suffix}"
                    path.write_bytes(blobs[k])
                bitmap = pycolmap.Bitmap.read(str(path), ext.requires_rgb())
                if bitmap is None:
                    raise OSError(f"cannot read {path}")
                kp, desc = sift_of_bitmap(extractor, bitmap, ext.eff_max_image_size())
                features.append((name, kp, desc))
            except Exception as e:  # noqa: BLE001 - reported per photo, the driver tries it once more
                failed.append((name, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"))
    return {"node": node_id(), "pid": os.getpid(), "seconds": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "features": features, "failed": failed}


def extract_on_cluster(session: ClusterSession, database: Path, image_dir: Path, images: list[InputImage],
                       config: ExtractionConfig, camera=None, progress: Callable | None = None, device: str = "auto",
                       log: Callable[[str], None] = print, shard_size: int = 0) -> dict:
    """:func:`recon3d.sfm.extract.extract` with the SIFT done by Ray tasks (arguments and return value alike,
    plus ``"skipped"``: photos whose extraction failed twice, ``"shards"``)."""
    import pycolmap
    import ray

    quiet_glog()
    database.parent.mkdir(parents=True, exist_ok=True)
    db = pycolmap.Database.open(database)
    try:
        restore_image_names(db)
        existing = {im.name for im in db.read_all_images() if db.exists_keypoints(im.image_id)}
    finally:
        db.close()
    todo = [im for im in images if im.name not in existing]
    mode = pycolmap.CameraMode.PER_IMAGE if config.camera_mode == "per_image" else pycolmap.CameraMode.SINGLE
    groups: dict[tuple, list[InputImage]] = {}
    for im in todo:
        key = (im.width, im.height) + ((im.exif_camera,) if config.camera_mode == "auto" else ())
        groups.setdefault(key, []).append(im)
    for key, group in groups.items():  # cameras and images: the driver, as the single-machine path
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        if camera is not None:
            model, params = camera_for_size(camera, *key[:2]).colmap_model()
            reader.camera_model = model
            reader.camera_params = ",".join(f"{p:.12g}" for p in params)
        pycolmap.import_images(database, image_dir, mode, [im.name for im in group], reader)
    names = [im.name for im in todo]
    db = pycolmap.Database.open(database)
    try:
        ids = {im.name: im.image_id for im in db.read_all_images()}
    finally:
        db.close()
    size = shard_size or max(1, min(8, -(-len(names) // (2 * session.cpus))))
    jobs = [Job(chunk) for chunk in (split_chunks(names, -(-len(names) // size)) if names else [])]
    wrap = progress or (lambda it, **kw: it)
    bar = wrap(range(len(names)), desc=f"extracting features (cluster, {session.cpus} CPUs)", unit="img") if names else None
    it = iter(bar) if bar is not None else None
    task = ray.remote(num_cpus=1, max_retries=0)(extract_shard)
    dev = "cpu" if device == "auto" else device
    skipped: list[str] = []

    def submit(job: Job):
        blobs = [(image_dir / n).read_bytes() for n in job.items] if session.ship_images else None
        return task.remote(str(image_dir), job.items, blobs, config, dev)

    def on_result(job: Job, out: dict) -> list:
        db = pycolmap.Database.open(database)
        try:
            with pycolmap.DatabaseTransaction(db):  # one shard, one transaction: all of it or none
                for name, kp, desc in out["features"]:
                    db.write_descriptors(ids[name], desc)
                    db.write_keypoints(ids[name], kp)
        finally:
            db.close()
        for _ in out["features"]:
            next(it, None)
        return out["failed"]

    def on_give_up(name: str, reason: str) -> None:
        skipped.append(name)
        next(it, None)
        log(f"warning: skipping {image_dir / name}: feature extraction failed twice on the cluster ({reason})")

    run_jobs(session, "extract", jobs, submit, on_result, on_give_up)
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    # low-texture photos: extracted again on the driver, as the single-machine path does (few photos)
    again = extract_sparse_again(database, image_dir, [im.name for im in images if im.name not in skipped],
                                 config, device)
    db = pycolmap.Database.open(database)
    try:
        info = {"images": db.num_images(), "cameras": db.num_cameras(), "keypoints": db.num_keypoints(),
                "extracted": len(todo) - len(skipped), "reused": len(existing), "shards": len(jobs),
                "skipped": skipped, "extracted_again": again}
    finally:
        db.close()
    return info


# -------------------------------------------------------------------------------- matching
def skeleton_database(database: Path) -> bytes:
    """The bytes of a copy of ``database`` without features and matches (cameras, rigs, frames, images)."""
    with tempfile.TemporaryDirectory(prefix="recon3d-skeleton-") as tmp:
        path = Path(tmp) / "skeleton.db"
        src = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        dst = sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            src.close()
        try:
            for table in ("keypoints", "descriptors", "matches", "two_view_geometries"):
                dst.execute(f"DELETE FROM {table}")
            dst.commit()
            dst.execute("VACUUM")
        finally:
            dst.close()
        return path.read_bytes()


def match_block(skeleton: bytes, pairs: list[tuple[int, int]], feature_refs: dict, config: MatchingConfig,
                seed: int = 0, device: str = "cpu") -> dict:
    """Ray task: match and verify ``pairs`` (image ids) with pycolmap's own matcher in a scratch database.

    ``feature_refs``: image id -> ObjectRef of ``((N, 6) keypoints, descriptors)``.
    Returns ``{"node", "pid", "seconds", "pairs": [(id1, id2, (M, 2) matches, TwoViewGeometry | None)], "failed": []}``.
    """
    import pycolmap
    import ray

    from recon3d.sfm.match import matching_options

    t0, c0 = time.perf_counter(), time.process_time()
    quiet_glog()
    if seed >= 0:
        pycolmap.set_random_seed(seed)
    mo, vo = matching_options(config, seed, num_threads=1)
    ids = sorted(feature_refs)
    feats = dict(zip(ids, ray.get([feature_refs[i] for i in ids])))
    out = []
    with tempfile.TemporaryDirectory(prefix="recon3d-block-") as tmp:
        path = Path(tmp) / "block.db"
        path.write_bytes(skeleton)
        db = pycolmap.Database.open(path)
        try:
            with pycolmap.DatabaseTransaction(db):
                for i in ids:
                    db.write_keypoints(i, feats[i][0])
                    db.write_descriptors(i, feats[i][1])
            alias_image_names(db)  # COLMAP's pair list is text split on spaces
            names = {im.image_id: im.name for im in db.read_all_images()}
        finally:
            db.close()
        pair_file = Path(tmp) / "pairs.txt"
        pair_file.write_text("".join(f"{names[a]} {names[b]}\n" for a, b in pairs), encoding="utf-8")
        po = pycolmap.ImportedPairingOptions()
        po.match_list_path = str(pair_file)
        pycolmap.match_image_pairs(path, mo, po, vo, sift_device(device))
        db = pycolmap.Database.open(path)
        try:
            for a, b in pairs:
                m = db.read_matches(a, b) if db.exists_matches(a, b) else np.zeros((0, 2), np.uint32)
                tvg = db.read_two_view_geometry(a, b) if db.exists_two_view_geometry(a, b) else None
                out.append((a, b, m, tvg))
        finally:
            db.close()
    return {"node": node_id(), "pid": os.getpid(), "seconds": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "pairs": out, "failed": []}


def retrieve_block(skeleton: bytes, indexed_tree: bytes, feature_refs: dict, num_images: int) -> dict:
    """Ray task: the retrieval pairs of the photos ``feature_refs`` (image id -> ObjectRef of their features).

    Returns ``{"node", "pid", "seconds", "cpu_s", "pairs": [(query id, neighbour id)], "failed": []}``.
    """
    import ray

    from recon3d.sfm.retrieval import query_vocab_tree

    t0, c0 = time.perf_counter(), time.process_time()
    quiet_glog()
    ids = sorted(feature_refs)
    feats = dict(zip(ids, ray.get([feature_refs[i] for i in ids])))
    pairs = query_vocab_tree(skeleton, indexed_tree, feats, num_images, num_threads=1)
    return {"node": node_id(), "pid": os.getpid(), "seconds": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "pairs": pairs, "failed": []}


class SharedInputs:
    """What the driver puts in the object store once for retrieval and matching: the database without
    features and each photo's features."""

    def __init__(self, database: Path):
        self.database = database
        self.skeleton_bytes: bytes | None = None
        self.skeleton = None
        self.refs: dict[int, object] = {}

    def put(self, image_ids) -> None:
        """Put the skeleton (once) and the features of ``image_ids`` not put yet."""
        import pycolmap
        import ray

        if self.skeleton is None:
            self.skeleton_bytes = skeleton_database(self.database)
            self.skeleton = ray.put(self.skeleton_bytes)
        missing = sorted(set(image_ids) - set(self.refs))
        if not missing:
            return
        db = pycolmap.Database.open(self.database)
        try:
            for i in missing:
                self.refs[i] = ray.put((db.read_keypoints(i), db.read_descriptors(i)))
        finally:
            db.close()


def retrieval_on_cluster(session: ClusterSession, database: Path, num_images: int, vocab_tree: Path | str = "",
                         seed: int = 0, num_threads: int = -1, log: Callable[[str], None] = print,
                         shared: SharedInputs | None = None, block_size: int = 0) -> tuple[list, dict]:
    """:func:`recon3d.sfm.retrieval.retrieval_pairs` with the queries done by Ray tasks (same arguments and
    return value; info adds ``indexed``, ``index_bytes``, ``index_seconds``, ``queries``, ``blocks``,
    ``query_seconds``, ``queried_on_driver`` and ``driver_cpu_s``: this process's CPU seconds, training included)."""
    import pycolmap
    import ray

    from recon3d.sfm.retrieval import indexed_vocab_tree, query_vocab_tree

    shared, c0 = shared or SharedInputs(database), time.process_time()
    with tempfile.TemporaryDirectory(prefix="recon3d-vocab-") as tmp:
        path, info = indexed_vocab_tree(database, vocab_tree, Path(tmp), seed, num_threads)
        indexed = path.read_bytes()
    t0 = time.perf_counter()
    db = pycolmap.Database.open(database)
    try:
        ids = sorted(im.image_id for im in db.read_all_images() if db.exists_descriptors(im.image_id))
    finally:
        db.close()
    shared.put(ids)
    tree_ref = ray.put(indexed)
    size = block_size or max(1, min(512, -(-len(ids) // (2 * session.cpus))))
    jobs = [Job(chunk) for chunk in (split_chunks(ids, -(-len(ids) // size)) if ids else [])]
    task = ray.remote(num_cpus=1, max_retries=0)(retrieve_block)
    raw: list[tuple[int, int]] = []
    left: list[int] = []

    def on_result(job: Job, out: dict) -> list:
        raw.extend(out["pairs"])
        return []

    def on_give_up(image_id: int, reason: str) -> None:
        left.append(image_id)
        log(f"warning: the retrieval query of image {image_id} failed twice on the cluster ({reason}); "
            "querying it here")

    run_jobs(session, "retrieve", jobs,
             lambda job: task.remote(shared.skeleton, tree_ref, {i: shared.refs[i] for i in job.items}, num_images),
             on_result, on_give_up)
    if left:  # the same query, in this process: the pairs stay those of one machine
        feats = dict(zip(left, ray.get([shared.refs[i] for i in left])))
        raw.extend(query_vocab_tree(shared.skeleton_bytes, indexed, feats, num_images, num_threads))
    pairs = sorted({(min(a, b), max(a, b)) for a, b in raw if a != b})
    info.update(queries=len(ids), blocks=len(jobs), query_seconds=time.perf_counter() - t0,
                queried_on_driver=len(left), driver_cpu_s=time.process_time() - c0)
    return pairs, info


def match_on_cluster(session: ClusterSession, database: Path, config: MatchingConfig, progress: Callable | None = None,
                     device: str = "auto", seed: int = 0, num_threads: int = -1, log: Callable[[str], None] = print,
                     block_size: int = 0) -> dict:
    """:func:`recon3d.sfm.match.match` with matching and verification done by Ray tasks (same arguments and
    return value, plus ``"reused_pairs"``, ``"blocks"`` and ``"skipped_pairs"``; with retrieval, ``"retrieval"``:
    what :func:`retrieval_on_cluster` did)."""
    import pycolmap
    import ray

    from recon3d.sfm.pairs import select_pairs

    quiet_glog()
    shared, retrieval = SharedInputs(database), {}

    def retrieve(*args, **kwargs):
        pairs, info = retrieval_on_cluster(session, *args, **kwargs, log=log, shared=shared)
        retrieval.update(info)
        return pairs, info

    mode, pairs = select_pairs(database, config, seed=seed, num_threads=num_threads, retrieve=retrieve)
    db = pycolmap.Database.open(database)
    try:
        restore_image_names(db)
        ids = {im.name: im.image_id for im in db.read_all_images()}
        with_features = {i for i in ids.values() if db.exists_keypoints(i)}
        done = {(a, b) for a, b in pairs if db.exists_matches(ids[a], ids[b])}
    finally:
        db.close()
    todo = [(ids[a], ids[b]) for a, b in pairs if (a, b) not in done and ids[a] in with_features and ids[b] in with_features]
    size = block_size or max(1, min(64, -(-len(todo) // (4 * session.cpus))))
    jobs = [Job(chunk) for chunk in (split_chunks(todo, -(-len(todo) // size)) if todo else [])]
    names = {i: n for n, i in ids.items()}
    if jobs:
        shared.put({i for a, b in todo for i in (a, b)})
    refs = shared.refs
    wrap = progress or (lambda it, **kw: it)
    bar = wrap(range(len(todo)), desc=f"matching ({mode}, cluster, {session.cpus} CPUs)", unit="pair") if todo else None
    it = iter(bar) if bar is not None else None
    task = ray.remote(num_cpus=1, max_retries=0)(match_block)
    dev = "cpu" if device == "auto" else device
    skipped: list[str] = []

    def submit(job: Job):
        need = {i for pair in job.items for i in pair}
        return task.remote(shared.skeleton, job.items, {i: refs[i] for i in need}, config, seed, dev)

    def on_result(job: Job, out: dict) -> list:
        db = pycolmap.Database.open(database)
        try:
            with pycolmap.DatabaseTransaction(db):  # one block, one transaction
                for a, b, m, tvg in out["pairs"]:
                    if db.exists_matches(a, b):
                        db.delete_matches(a, b)
                    db.write_matches(a, b, m)
                    if tvg is not None:
                        if db.exists_two_view_geometry(a, b):
                            db.delete_two_view_geometry(a, b)
                        db.write_two_view_geometry(a, b, tvg)
        finally:
            db.close()
        for _ in out["pairs"]:
            next(it, None)
        return []

    def on_give_up(pair, reason: str) -> None:
        skipped.append(f"{names[pair[0]]} / {names[pair[1]]}")
        next(it, None)
        log(f"warning: skipping the pair {names[pair[0]]} / {names[pair[1]]}: matching failed twice on the cluster ({reason})")

    run_jobs(session, "match", jobs, submit, on_result, on_give_up)
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    db = pycolmap.Database.open(database)
    try:
        info = {"mode": mode, "pairs": len(pairs), "matched_pairs": db.num_matched_image_pairs(),
                "verified_pairs": db.num_verified_image_pairs(), "inlier_matches": db.num_inlier_matches(),
                "reused_pairs": len(done), "blocks": len(jobs), "skipped_pairs": skipped}
        if retrieval:
            info["retrieval"] = retrieval
    finally:
        db.close()
    return info
