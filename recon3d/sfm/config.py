"""The SfM config: every setting of ``recon3d sfm`` once, as a dataclass field with its doc.

:class:`SfmConfig` nests one section per step (as hloc keeps one conf per stage):
:class:`ExtractionConfig` (SIFT into ``database.db``), :class:`MatchingConfig` (pair selection,
matching, geometric verification) and :class:`MapperConfig` (mapping and the final refinement).
The command line is generated from these fields (:func:`recon3d.core.config.add_config_arguments`;
``flag`` metadata keeps the historical option names), the docstring under each field is its
``--help`` text, and the resolved config is saved as ``WS/sparse/config.yaml``, which
``recon3d sfm --config`` reads back to repeat a run.

Options of pycolmap that recon3d does not name go through ``pycolmap_options`` of each section
(like hloc's ``mapper_options``): ``{dotted attribute path: value}`` set on pycolmap's options
object after recon3d's own settings (:func:`apply_pycolmap_options`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from recon3d.core.config import option
from recon3d.core.errors import UserError

COLMAP_CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV",
                        "OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "THIN_PRISM_FISHEYE")
"""Camera models a user can ask for (COLMAP names)."""


@dataclass
class ExtractionConfig:
    """SIFT feature extraction (a change extracts the features again)."""

    max_image_size: int = option(1600, flag="--max-image-size", min=-1)
    """Longest image side SIFT sees, pixels (at least 64; -1: full size). Images are downscaled for
    extraction; keypoints are stored at full resolution. 1600 keeps memory near 1 GB on 6-megapixel
    photos with no loss of accuracy."""
    max_num_features: int = option(8192, flag="--max-features", min=16)
    """Most SIFT features kept per photo (at least 16)."""
    peak_threshold: float = option(0.02 / 3, flag="--peak-threshold", min=0.0)
    """SIFT detection threshold (> 0); lower (e.g. 0.002) finds more features on low-texture objects."""
    first_octave: int = option(-1, min=-1)
    """First SIFT octave: -1 upsamples the image once (finer features, slower), 0 does not."""
    affine_shape: bool = option(True, flag="--affine-shape")
    """Fit each SIFT keypoint's affine shape (pycolmap's estimate_affine_shape; CPU extraction). A
    blob on a surface seen at an angle is a skewed blob in the image: with its affine shape fitted,
    the keypoint sits at the projection of the blob's centre. Measured (synthetic scenes, exact
    ground truth): on an 8 deg lens the self-calibrated focal length +0.2 % (without: -0.9 to -1.3 %),
    a 12 deg low-texture ring 16/16 photos at 0.3 deg (without: 9/16, two 117 and 75 deg off), median
    rotation errors 5-16 % lower on four other sets (temple ring: 6 % higher), at about the same
    time. On the CPU only: with a CUDA pycolmap, False puts extraction back on the GPU."""
    adaptive_min_keypoints: int = option(1000, min=0)
    """A photo with fewer SIFT keypoints than this is extracted again with a third of the peak threshold
    and four times the feature count (low-texture photos); 0: never."""
    camera_model: Literal[COLMAP_CAMERA_MODELS] = option("SIMPLE_RADIAL", flag="--camera-model", metavar="MODEL")
    """COLMAP camera model for self-calibration (ignored when a camera file is given): one of
    SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV, OPENCV_FISHEYE,
    SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE, THIN_PRISM_FISHEYE."""
    camera_mode: Literal["auto", "single", "per_image"] = option("auto", flag="--camera-mode")
    """'auto': one shared camera per image size and EXIF camera (make, model, focal length); photos
    without EXIF share one per size. 'single': one per image size, ignoring EXIF. 'per_image': one each."""
    pycolmap_options: dict = field(default_factory=dict)
    """More options of pycolmap.FeatureExtractionOptions, {dotted name: value}, set after recon3d's
    (e.g. {'sift.max_num_orientations': 1}); an unknown name is an error that lists the valid ones."""

    def __post_init__(self) -> None:
        if self.camera_model not in COLMAP_CAMERA_MODELS:
            raise UserError(f"camera model {self.camera_model!r} is unknown; use one of {', '.join(COLMAP_CAMERA_MODELS)}")
        if self.max_image_size < 64 and self.max_image_size != -1:
            raise UserError(f"max_image_size {self.max_image_size} is too small; use at least 64 (or -1 for full size)")
        if self.max_num_features < 16:
            raise UserError(f"max_num_features {self.max_num_features} is too small; use at least 16")

    def key(self) -> dict:
        """What the extracted features depend on (a change means extracting again)."""
        out = {k: getattr(self, k) for k in ("max_image_size", "max_num_features", "peak_threshold",
                                             "first_octave", "camera_model", "camera_mode", "adaptive_min_keypoints")}
        if self.affine_shape:
            out["affine_shape"] = True
        if self.pycolmap_options:
            out["pycolmap_options"] = dict(self.pycolmap_options)
        return out


@dataclass
class MatchingConfig:
    """Pair selection, matching and geometric verification (a change matches again)."""

    pairing: Literal["auto", "exhaustive", "retrieval", "sequential", "spatial"] = option("auto", flag="--matching")
    """Which pairs are matched. 'auto': exhaustive up to exhaustive_max_images photos, else spatial when
    the photos carry GPS, else retrieval (each photo with its retrieval_num_images most similar ones).
    'sequential' suits video frames and photos taken in order."""
    exhaustive_max_images: int = option(150, min=2)
    """Largest folder 'auto' matches exhaustively (at least 2)."""
    overlap: int = option(10, flag="--overlap", min=1)
    """Sequential matching: each photo is matched to this many following photos (plus quadratic overlap)."""
    loop_detection: bool = option(False, flag="--loop-detection")
    """Sequential matching: also match visually similar photos (every 10th photo is a query)."""
    vocab_tree: str = option("", flag="--vocab-tree", metavar="FILE")
    """Vocabulary-tree file for retrieval and loop detection (COLMAP's .bin). '': recon3d trains one on
    the photos' own features; nothing is downloaded."""
    retrieval_num_images: int = option(30, flag="--retrieval-images", min=1)
    """Retrieval matching: most similar photos matched to each photo (at least 1)."""
    spatial_max_neighbors: int = option(50, min=1)
    """Spatial matching: GPS neighbours matched per photo (at least 1)."""
    max_ratio: float = option(0.8, min=0.0, max=1.0)
    """Lowe's ratio test threshold (0 to 1)."""
    cross_check: bool = True
    """Keep only mutual nearest-neighbour matches."""
    min_num_inliers: int = option(15, flag="--min-inliers", min=0)
    """Geometric verification: fewest inliers for a pair to count as verified."""
    max_error: float = option(4.0, min=0.0)
    """Geometric verification: RANSAC inlier threshold, pixels (> 0)."""
    pycolmap_options: dict = field(default_factory=dict)
    """More pycolmap options, {dotted name: value}, on 'matching.' (pycolmap.FeatureMatchingOptions) or
    'verification.' (pycolmap.TwoViewGeometryOptions), e.g. {'verification.ransac.confidence': 0.9999};
    an unknown name is an error that lists the valid ones."""

    def key(self, seed: int) -> dict:
        """What the matches depend on (a change means matching again)."""
        out = {"matching": self.pairing, "seed": seed}
        out.update({k: getattr(self, k) for k in ("exhaustive_max_images", "overlap", "loop_detection", "vocab_tree",
                                                  "retrieval_num_images", "spatial_max_neighbors", "max_ratio",
                                                  "cross_check", "min_num_inliers", "max_error")})
        if self.pycolmap_options:
            out["pycolmap_options"] = dict(self.pycolmap_options)
        return out


@dataclass
class MapperConfig:
    """Mapping (incremental or global) and the final refinement of every model."""

    mapper: Literal["incremental", "global", "hierarchical"] = option("incremental", flag="--mapper")
    """'incremental': COLMAP's incremental mapper with bundle adjustment; 'global': GLOMAP (rotation
    averaging, global positioning, then bundle adjustment); 'hierarchical': the view graph is split
    into overlapping clusters of at most cluster_max_images photos, each mapped incrementally (in
    parallel), then merged: for sets past a few thousand photos."""
    refine_principal_point: Literal["auto", "always", "never"] = option("auto", flag="--refine-principal-point")
    """'auto': refine principal points in a final BA and keep them only where the views determine them
    (see recon3d.sfm.mapping); 'always' / 'never' force it. Ignored with a camera file."""
    min_num_matches: int = option(15, min=1)
    """Fewest verified matches for an image pair to be used in mapping (at least 1)."""
    init_min_num_inliers: int = option(100, min=1)
    """Incremental: fewest inliers of the initial image pair (at least 1)."""
    abs_pose_min_num_inliers: int = option(30, flag="--abs-pose-min-inliers", min=3)
    """Incremental: fewest 2D-3D inliers to register a photo (at least 3; 6 registers more, with more
    risk: judge registration together with pose error)."""
    abs_pose_min_inlier_ratio: float = option(-1.0, min=-1.0, max=1.0)
    """Incremental: smallest 2D-3D inlier ratio to register a photo (0 to 1). -1 (auto): 0.05 when
    abs_pose_min_num_inliers is under 30, else 0.25 (COLMAP's default)."""
    max_reproj_error: float = option(2.0, flag="--max-reproj-error", min=0.0)
    """Final refinement: observations that reproject worse than this (pixels, > 0) are dropped before
    the last BA."""
    min_tri_angle: float = option(1.5, min=0.0)
    """Final refinement: points triangulated under a smaller angle (degrees) are dropped."""
    min_model_size: int = option(3, min=2)
    """Smallest model kept, in photos (at least 2)."""
    cluster_max_images: int = option(500, flag="--cluster-max-images", min=3)
    """Hierarchical: most photos in a leaf cluster before the overlap is added (at least 3)."""
    cluster_overlap: int = option(50, min=1)
    """Hierarchical: photos each cluster shares with its neighbours, for merging (at least 1)."""
    second_pass: bool = option(True, flag="--second-pass")
    """When the largest model leaves photos out, continue registering into it with looser absolute-pose
    thresholds (extend_min_inliers, extend_min_inlier_ratio), keeping a photo only when its reprojection
    error is in line with the model's other photos (recon3d.sfm.policy)."""
    extend_min_inliers: int = option(6, min=3)
    """Second registration pass: fewest 2D-3D inliers to register a photo (at least 3)."""
    extend_min_inlier_ratio: float = option(0.05, min=0.0, max=1.0)
    """Second registration pass: smallest 2D-3D inlier ratio to register a photo (0 to 1)."""
    try_global: Literal["auto", "never"] = option("auto", flag="--try-global")
    """'auto': when incremental mapping still leaves photos out, also run the global mapper on the same
    matches and keep its model when it registers more photos at similar reprojection error and a
    plausible focal length (the report says which mapper won and why); 'never': do not."""
    consistency_min_agreement: float = option(0.5, min=0.0, max=1.0)
    """Two-view consistency check of every model (recon3d.sfm.consistency): a registered photo is
    deregistered when under this share of its verified matches with the other registered photos agree
    with the model's poses (0 to 1; 0: no check). A rightly placed photo agrees with 0.85-1.0 of them."""
    consistency_max_error: float = option(4.0, min=0.0)
    """Two-view consistency check: largest Sampson distance (px) of a verified match that agrees with
    the model (>= 0)."""
    pp_max_sd_frac: float = option(0.002, min=0.0)
    """Principal-point rule: largest standard deviation of a kept principal point, as a fraction of the
    image diagonal."""
    pp_min_sigma: float = option(5.0, min=0.0)
    """Principal-point rule: smallest shift, in standard deviations, for a refined principal point
    to be kept."""
    calibration_min_sigma: float = option(20.0, min=0.0)
    """Calibration-prior rule (``--camera`` without ``--fixed-intrinsics``): smallest joint shift of the
    refined intrinsics, in standard deviations, for the refinement to replace the given calibration.
    Higher than ``pp_min_sigma``: a board calibration is usually better than what SfM views say, and
    bundle-adjustment standard deviations are optimistic (measured on the ``facade`` scene: its exact
    intrinsics moved 6.9 sd, and the median rotation error rose from 0.038 to 0.260 deg)."""
    focal_max_sd_frac: float = option(0.01, min=0.0, max=1.0)
    """Focal-length rule: a focal length whose standard deviation is under this fraction of it (0 to 1)
    counts as determined by the views; otherwise an EXIF prior is kept, or the summary warns
    (recon3d.sfm.focal)."""
    focal_min_sigma: float = option(5.0, min=0.0)
    """Focal-length rule: smallest move from the EXIF focal length, in standard deviations (>= 0), for
    the self-calibrated value to replace it."""
    narrow_focal_factor: float = option(2.75, min=0.0)
    """Narrow-lens rule: when every camera's EXIF focal length exceeds this many times its longer image
    side (a field of view under about 20 deg; >= 0), mapping holds the focal lengths at the EXIF
    values (the focal-length rule may refine them at the end)."""
    pycolmap_options: dict = field(default_factory=dict)
    """More options of pycolmap.IncrementalPipelineOptions (or GlobalPipelineOptions with mapper
    'global'), {dotted name: value}, set after recon3d's (e.g. {'mapper.init_max_error': 6}); with
    mapper 'hierarchical' the incremental ones apply to every cluster, 'clustering.*' names
    pycolmap.SceneClusteringOptions and 'hierarchical.*' the top of HierarchicalPipelineOptions
    (e.g. 'hierarchical.num_workers'); an unknown name is an error that lists the valid ones."""

    def inlier_ratio(self) -> float:
        """``abs_pose_min_inlier_ratio`` with auto (-1) resolved."""
        if self.abs_pose_min_inlier_ratio >= 0:
            return self.abs_pose_min_inlier_ratio
        return 0.05 if self.abs_pose_min_num_inliers < 30 else 0.25


@dataclass
class SfmConfig:
    """Structure from motion (``recon3d sfm``): the camera, shared settings and one section per step."""

    camera_file: str = option("", flag="--camera", metavar="camera.json")
    """A camera.json (from `recon3d calibrate`) with the intrinsics of the camera that took the photos;
    '': self-calibrate."""
    camera_fixed: bool = option(False, flag="--fixed-intrinsics")
    """With camera_file: keep its intrinsics fixed (True), or (False) map with them fixed and refine
    them in a final BA only where the views determine them (recon3d.sfm.intrinsics.calibration_prior_rule)."""
    seed: int = option(0, flag="--seed", min=-1)
    """Random seed of verification RANSAC and mapping (-1: random)."""
    num_threads: int = option(-1, flag="--threads", min=-1)
    """CPU threads (-1: all)."""
    device: Literal["auto", "cpu", "cuda"] = option("auto", flag="--device")
    """Where SIFT extraction and matching run ('auto': CUDA when pycolmap was built with it). pycolmap
    extracts affine shapes (extraction.affine_shape, the default) on the CPU whatever this says."""
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    """Feature extraction."""
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    """Pair selection, matching and geometric verification."""
    mapping: MapperConfig = field(default_factory=MapperConfig)
    """Mapping and the final refinement."""

    def __post_init__(self) -> None:
        if self.camera_fixed and not self.camera_file:
            raise UserError("--fixed-intrinsics needs --camera camera.json (the intrinsics to keep)")

    @property
    def fixed_intrinsics(self) -> bool:
        """Map with the intrinsics fixed (a calibration is given)."""
        return bool(self.camera_file)

    @property
    def calibration_prior(self) -> bool:
        """The calibration is a prior: refine it at the end where the views determine it."""
        return bool(self.camera_file) and not self.camera_fixed


def apply_pycolmap_options(options: dict, what: str, roots: dict[str, Any]) -> None:
    """Set ``options`` (``{dotted attribute path: value}``) on pycolmap options objects.

    Args:
        options: the user's ``pycolmap_options``.
        what: the config section, for messages (e.g. ``mapping.pycolmap_options``).
        roots: the options objects by the key's first component; the root named ``""`` takes keys
            without such a prefix (``{"": IncrementalPipelineOptions()}``).
    Raises :class:`UserError` (exit 2) naming the valid keys when a key is unknown or a value does not fit.
    """
    valid = [name for prefix, obj in roots.items() for name in option_names(obj, f"{prefix}." if prefix else "")]
    for key, value in options.items():
        key = str(key)
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{what}: unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")
        head, _, rest = key.partition(".")
        obj, path = (roots[head], rest.split(".")) if head in roots and rest else (roots[""], key.split("."))
        for part in path[:-1]:
            obj = getattr(obj, part)
        current = getattr(obj, path[-1])
        members = getattr(type(current), "__members__", None)
        if members and isinstance(value, str):  # pycolmap enums by name
            if value not in members:
                raise UserError(f"{what}: {key} = {value!r}; use one of {', '.join(members)}")
            value = members[value]
        try:
            setattr(obj, path[-1], value)
        except (TypeError, ValueError, AttributeError):
            raise UserError(f"{what}: {key} = {value!r} does not fit; pycolmap expects a {type(current).__name__} "
                            f"(now {current!r})") from None


def option_names(obj: Any, prefix: str = "") -> list[str]:
    """The settable names of a pycolmap options object, nested ones dotted (``mapper.init_max_error``)."""
    out = []
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 - a property pycolmap cannot read is not an option
            continue
        if hasattr(value, "todict") and not callable(value):
            out.extend(option_names(value, f"{prefix}{name}."))
        elif not callable(value):
            out.append(prefix + name)
    return out
