"""Photos in, verified feature matches out: image checks, SIFT extraction and matching (pycolmap).

The stage reads a folder of photos and fills a COLMAP ``database.db``:

1. :func:`scan_images` decodes every photo up front (Pillow, so truncated files are caught),
   applies the EXIF orientation, drops exact duplicates, and explains every skipped file.
2. :func:`ingest_images` copies (hard-links when it can) the photos into ``WS/images`` under
   their own names; rotated photos are written upright.
3. :func:`extract` runs SIFT (CPU or CUDA) through pycolmap into the database: one shared
   camera per image size by default (``camera_mode='single'``), one per image, or COLMAP's EXIF
   grouping; a ``camera.json`` (``recon3d calibrate``) sets the camera model and a prior.
   Images whose features are already in the database are not extracted again.
4. :func:`match` picks image pairs (exhaustive under ``exhaustive_max_images`` images,
   retrieval by a vocabulary tree trained on the photos themselves (:mod:`recon3d.retrieval`),
   sequential with overlap and optional loop detection, or spatial from GPS EXIF), matches
   them, and verifies each pair geometrically (F/E/H by RANSAC; inlier count kept per pair).
   Pairs already in the database are skipped on rerun.

:func:`pair_stats` reads the per-pair raw and verified match counts back for reports.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from recon3d.errors import UserError

COLMAP_CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV",
                        "OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "THIN_PRISM_FISHEYE")
"""Camera models a user can ask for (COLMAP names)."""


@dataclass
class FeatureConfig:
    """Feature extraction and matching options (the features and matches stages)."""

    max_image_size: int = 1600
    """Longest image side SIFT sees (images are downscaled for extraction; keypoints are stored at full
    resolution). 1600 keeps memory near 1 GB on 6-megapixel photos with no loss of accuracy."""
    max_num_features: int = 8192
    """Most SIFT features kept per image."""
    peak_threshold: float = 0.02 / 3
    """SIFT detection threshold; lower (e.g. 0.002) finds more features on low-texture objects."""
    first_octave: int = -1
    """First SIFT octave: -1 upsamples the image once (finer features, slower), 0 does not."""
    camera_model: str = "SIMPLE_RADIAL"
    """COLMAP camera model for self-calibration (ignored when a camera file is given)."""
    camera_mode: Literal["auto", "single", "per_image"] = "auto"
    """'auto': one shared camera per image size and EXIF camera (make, model, focal length); photos
    without EXIF share one per size. 'single': one per image size, ignoring EXIF. 'per_image': one each."""
    matching: Literal["auto", "exhaustive", "retrieval", "sequential", "spatial"] = "auto"
    """Pair selection. 'auto': exhaustive up to exhaustive_max_images images, else spatial when the photos
    carry GPS, else retrieval (each photo with its retrieval_num_images most similar ones). 'sequential'
    suits video frames and photos taken in order."""
    exhaustive_max_images: int = 150
    """Largest folder 'auto' matches exhaustively."""
    overlap: int = 10
    """Sequential matching: each image is matched to this many following images (plus quadratic overlap)."""
    loop_detection: bool = False
    """Sequential matching: also match visually similar images (every 10th image is a query)."""
    vocab_tree: str = ""
    """Vocabulary-tree file for retrieval and loop detection (COLMAP's .bin). '': recon3d trains one on
    the photos' own features; nothing is downloaded."""
    retrieval_num_images: int = 30
    """Retrieval matching: most similar images matched to each image."""
    spatial_max_neighbors: int = 50
    """Spatial matching: GPS neighbours matched per image."""
    max_ratio: float = 0.8
    """Lowe's ratio test threshold."""
    cross_check: bool = True
    """Keep only mutual nearest-neighbour matches."""
    min_num_inliers: int = 15
    """Geometric verification: fewest inliers for a pair to count as verified."""
    max_error: float = 4.0
    """Geometric verification: RANSAC inlier threshold in pixels."""
    seed: int = 0
    """Random seed for RANSAC (verification); -1 for a random one."""
    num_threads: int = -1
    """CPU threads (-1: all)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where SIFT extraction and matching run ('auto': CUDA when pycolmap was built with it)."""

    def __post_init__(self) -> None:
        if self.camera_model not in COLMAP_CAMERA_MODELS:
            raise UserError(f"camera model {self.camera_model!r} is unknown; use one of {', '.join(COLMAP_CAMERA_MODELS)}")
        if self.max_image_size < 64 and self.max_image_size != -1:
            raise UserError(f"max_image_size {self.max_image_size} is too small; use at least 64 (or -1 for full size)")
        if self.max_num_features < 16:
            raise UserError(f"max_num_features {self.max_num_features} is too small; use at least 16")

    def extraction_key(self) -> dict:
        """The fields that change extracted features (a change means extracting again)."""
        return {k: getattr(self, k) for k in ("max_image_size", "max_num_features", "peak_threshold",
                                              "first_octave", "camera_model", "camera_mode")}

    def matching_key(self) -> dict:
        """The fields that change matches (a change means matching again)."""
        return {k: getattr(self, k) for k in ("matching", "exhaustive_max_images", "overlap", "loop_detection",
                                              "vocab_tree", "retrieval_num_images", "spatial_max_neighbors", "max_ratio", "cross_check",
                                              "min_num_inliers", "max_error", "seed")}


# ------------------------------------------------------------------------------------ images
@dataclass
class InputImage:
    """A photo that passed the checks."""

    source: Path
    """Where it was read from."""
    name: str
    """Its name in the workspace (the file name)."""
    width: int
    """Width after EXIF orientation."""
    height: int
    """Height after EXIF orientation."""
    digest: str
    """SHA-1 of the file."""
    transpose: bool = False
    """True when the EXIF orientation says the pixels must be rotated or flipped to stand upright."""
    exif_camera: str = ""
    """EXIF make, model and focal length ('' without EXIF): photos that share it share a camera."""


@dataclass
class ImageScan:
    """Result of :func:`scan_images`."""

    images: list[InputImage]
    """Usable photos in name order."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file name, reason) for every photo left out."""


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan_images(folder: Path | str, progress: Callable | None = None) -> ImageScan:
    """Decode-check every photo of ``folder`` and decide which ones SfM uses.

    A photo is skipped (with a reason) when it cannot be decoded completely (e.g. a truncated
    JPEG), is smaller than 16 pixels, or has the same bytes as an earlier photo.

    Args:
        folder: folder of photos (files with an image extension, not recursive).
        progress: optional tqdm-like wrapper.
    Returns:
        :class:`ImageScan`. Raises :class:`UserError` when the folder holds no image files.
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    from recon3d.workspace import list_images

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    paths = list_images(folder)
    wrap = progress or (lambda it, **kw: it)
    good: list[InputImage] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for path in wrap(paths, desc="checking images", unit="img"):
        try:
            with Image.open(path) as im:
                im.load()
                exif = im.getexif()
                orientation = exif.get(0x0112, 1)
                sub = exif.get_ifd(0x8769) if exif else {}
                exif_camera = "" if not exif or not (exif.get(0x010F) or exif.get(0x0110)) else \
                    f"{exif.get(0x010F, '')}|{exif.get(0x0110, '')}|{sub.get(0x920A, '')}"
                w, h = im.size
        except UnidentifiedImageError:
            skipped.append((path.name, "not an image Pillow can read"))
            continue
        except (OSError, SyntaxError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            skipped.append((path.name, f"broken or truncated file ({msg})"))
            continue
        except Image.DecompressionBombError:
            skipped.append((path.name, "too many pixels"))
            continue
        transpose = orientation not in (None, 0, 1)
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        if min(w, h) < 16:
            skipped.append((path.name, f"too small ({w}x{h} pixels)"))
            continue
        digest = _sha1(path)
        if digest in seen:
            skipped.append((path.name, f"identical to {seen[digest]}"))
            continue
        seen[digest] = path.name
        good.append(InputImage(path, path.name, w, h, digest, transpose, str(exif_camera).strip()))
    return ImageScan(good, skipped)


def ingest_images(images: list[InputImage], dest: Path) -> None:
    """Put the photos into ``dest`` under their names (hard link, else copy; upright when rotated).

    Files already in ``dest`` with the same content are left alone; others in ``dest`` are removed.
    """
    from PIL import Image, ImageOps

    dest.mkdir(parents=True, exist_ok=True)
    wanted = {im.name for im in images}
    for p in dest.iterdir():
        if p.name not in wanted and p.is_file():
            p.unlink()
    for im in images:
        target = dest / im.name
        if target.exists() and target.resolve() == im.source.resolve():
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f".{im.name}.", suffix=f".tmp{Path(im.name).suffix}", dir=dest)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if im.transpose:
                with Image.open(im.source) as src:
                    exif = src.getexif()
                    upright = ImageOps.exif_transpose(src)
                    exif[0x0112] = 1
                    kwargs = {"exif": exif.tobytes()} if exif else {}
                    if (src.format or "").upper() == "JPEG":
                        kwargs["quality"] = 95
                    upright.save(tmp, format=src.format, **kwargs)
            else:
                tmp.unlink()
                try:
                    os.link(im.source, tmp)
                except OSError:
                    shutil.copy2(im.source, tmp)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


# ---------------------------------------------------------------------------------- database
def _device(name: str):
    import pycolmap

    return {"auto": pycolmap.Device.auto, "cpu": pycolmap.Device.cpu, "cuda": pycolmap.Device.cuda}[name]


def _quiet() -> None:
    import pycolmap

    pycolmap.logging.minloglevel = 2  # warnings and errors only; recon3d prints its own progress


def _chunks(items: list, n_chunks: int) -> list[list]:
    size = max(1, -(-len(items) // max(1, n_chunks)))
    return [items[i:i + size] for i in range(0, len(items), size)]


def camera_for_size(camera, width: int, height: int):
    """A ``recon3d.camera.Camera`` rescaled to an image size of the same aspect ratio.

    Raises :class:`UserError` when the aspect ratios differ (the calibration is for another camera).
    """
    if (camera.width, camera.height) == (width, height):
        return camera
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise UserError(f"camera file is for {camera.width}x{camera.height} images but the photos are {width}x{height} "
                        "(another aspect ratio); calibrate this camera or drop --camera")
    return camera.scaled(sx)


def extract(database: Path, image_dir: Path, images: list[InputImage], config: FeatureConfig,
            camera=None, progress: Callable | None = None) -> dict:
    """SIFT features of ``images`` into ``database`` (created if missing); existing ones are kept.

    Args:
        database: path of ``database.db``.
        image_dir: folder holding the photos (``WS/images``).
        images: photos to use (from :func:`scan_images`).
        config: options.
        camera: optional ``recon3d.camera.Camera`` (a calibration): its COLMAP model and
            parameters become every camera's starting values (one camera per image size).
        progress: optional tqdm-like wrapper.
    Returns:
        ``{"images": n, "cameras": n, "keypoints": n, "extracted": n newly extracted}``.
    """
    import pycolmap

    _quiet()
    database.parent.mkdir(parents=True, exist_ok=True)
    db = pycolmap.Database.open(database)
    try:
        existing = {im.name for im in db.read_all_images() if db.exists_keypoints(im.image_id)}
    finally:
        db.close()
    todo = [im for im in images if im.name not in existing]
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = config.max_image_size
    ext.num_threads = config.num_threads
    ext.sift.max_num_features = config.max_num_features
    ext.sift.peak_threshold = config.peak_threshold
    ext.sift.first_octave = config.first_octave
    mode = pycolmap.CameraMode.PER_IMAGE if config.camera_mode == "per_image" else pycolmap.CameraMode.SINGLE
    # One import per group of photos sharing a camera (COLMAP's single mode refuses mixed sizes).
    groups: dict[tuple, list[InputImage]] = {}
    for im in todo:
        key = (im.width, im.height) + ((im.exif_camera,) if config.camera_mode == "auto" else ())
        groups.setdefault(key, []).append(im)
    wrap = progress or (lambda it, **kw: it)
    bar = wrap(range(len(todo)), desc="extracting features", unit="img") if todo else None
    it = iter(bar) if bar is not None else None
    for key, group in groups.items():
        w, h = key[:2]
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = config.camera_model
        if camera is not None:
            cam = camera_for_size(camera, w, h)
            model, params = cam.colmap_model()
            reader.camera_model = model
            reader.camera_params = ",".join(f"{p:.12g}" for p in params)
        names = [im.name for im in group]
        pycolmap.import_images(database, image_dir, mode, names, reader)
        for chunk in _chunks(names, max(1, len(names) // 4)):
            pycolmap.extract_features(database, image_dir, chunk, mode, reader, ext, _device(config.device))
            for _ in chunk:
                next(it, None)
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    db = pycolmap.Database.open(database)
    try:
        info = {"images": db.num_images(), "cameras": db.num_cameras(), "keypoints": db.num_keypoints(),
                "extracted": len(todo)}
    finally:
        db.close()
    return info


def _id_names(db) -> dict[int, str]:
    return {im.image_id: im.name for im in db.read_all_images()}


def select_pairs(database: Path, config: FeatureConfig) -> tuple[str, list[tuple[str, str]]]:
    """The pair-selection mode ``auto`` resolves to, and the image pairs it gives (by name)."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        n = db.num_images()
        has_gps = db.num_pose_priors() > 0
        names = _id_names(db)
    finally:
        db.close()
    mode = config.matching
    if mode == "auto":
        mode = "exhaustive" if n <= config.exhaustive_max_images else ("spatial" if has_gps else "retrieval")
    if mode == "spatial" and not has_gps:
        raise UserError("spatial matching needs GPS positions in the photos' EXIF and these have none; "
                        "use --matching exhaustive, retrieval or sequential")
    from recon3d.retrieval import retrieval_pairs, vocab_tree_file

    if mode == "retrieval":
        ids, _ = retrieval_pairs(database, min(config.retrieval_num_images, max(n - 1, 1)), config.vocab_tree,
                                 seed=config.seed, num_threads=config.num_threads)
        return mode, [(names[a], names[b]) for a, b in ids]
    with tempfile.TemporaryDirectory(prefix="recon3d-vocab-") as tmp:
        if mode == "exhaustive":
            options, generator = pycolmap.ExhaustivePairingOptions(), pycolmap.ExhaustivePairGenerator
        elif mode == "sequential":
            options, generator = pycolmap.SequentialPairingOptions(), pycolmap.SequentialPairGenerator
            options.overlap = config.overlap
            if config.loop_detection:
                options.loop_detection = True
                tree, _ = vocab_tree_file(database, config.vocab_tree, Path(tmp), config.seed, config.num_threads)
                options.vocab_tree_path = str(tree)
        else:
            options, generator = pycolmap.SpatialPairingOptions(), pycolmap.SpatialPairGenerator
            options.max_num_neighbors = config.spatial_max_neighbors
        if hasattr(options, "num_threads"):
            options.num_threads = config.num_threads
        db = pycolmap.Database.open(database)
        try:
            pairs = [(names[a], names[b]) for a, b in generator(options, db).all_pairs()]
        finally:
            db.close()
    return mode, pairs


def matching_options(config: FeatureConfig):
    """pycolmap ``(FeatureMatchingOptions, TwoViewGeometryOptions)`` for ``config``."""
    import pycolmap

    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = config.num_threads
    mo.sift.max_ratio = config.max_ratio
    mo.sift.cross_check = config.cross_check
    vo = pycolmap.TwoViewGeometryOptions()
    vo.min_num_inliers = config.min_num_inliers
    vo.ransac.max_error = config.max_error
    vo.ransac.random_seed = config.seed
    return mo, vo


def match(database: Path, config: FeatureConfig, progress: Callable | None = None) -> dict:
    """Match and verify the selected image pairs; pairs already matched are skipped.

    Args:
        database: ``database.db`` with features.
        config: options.
        progress: optional tqdm-like wrapper.
    Returns:
        ``{"mode": str, "pairs": selected, "matched_pairs": n, "verified_pairs": n, "inlier_matches": n}``.
    """
    import pycolmap

    _quiet()
    if config.seed >= 0:
        pycolmap.set_random_seed(config.seed)
    mode, pairs = select_pairs(database, config)
    mo, vo = matching_options(config)
    chunks = _chunks(pairs, min(40, max(1, len(pairs) // 20)))
    wrap = progress or (lambda it, **kw: it)
    with tempfile.TemporaryDirectory(prefix="recon3d-pairs-") as tmp:
        pair_file = Path(tmp) / "pairs.txt"
        bar = wrap(range(len(pairs)), desc=f"matching ({mode})", unit="pair")
        it = iter(bar)
        for chunk in chunks:
            pair_file.write_text("".join(f"{a} {b}\n" for a, b in chunk))
            po = pycolmap.ImportedPairingOptions()
            po.match_list_path = str(pair_file)
            pycolmap.match_image_pairs(database, mo, po, vo, _device(config.device))
            for _ in chunk:
                next(it, None)
        if hasattr(bar, "close"):
            bar.close()
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
