"""Mapping and final refinement on pycolmap: incremental or global SfM, bundle adjustment, principal point.

:func:`map_database` runs pycolmap's incremental mapper (with bundle adjustment) or its global
mapper (GLOMAP) on a matched ``database.db``. :func:`refine_model` then gives every model the
same finish: drop observations that reproject worse than ``max_reproj_error`` pixels, bundle
adjust, and apply the intrinsics rules of :mod:`recon3d.sfm.intrinsics` (principal point, calibration
prior) and the focal-length rule of :mod:`recon3d.sfm.focal`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from recon3d.core.errors import UserError
from recon3d.sfm.config import MapperConfig, SfmConfig, apply_pycolmap_options
from recon3d.sfm.intrinsics import (
    bundle_adjust,
    calibration_prior_rule,
    principal_point_rule,
)


def _set_seed(o, seed: int) -> None:
    for obj in (o, getattr(o, "mapper", None), getattr(o, "triangulation", None)):
        if obj is not None and hasattr(obj, "random_seed"):
            obj.random_seed = seed


def incremental_options(config: MapperConfig, seed: int = 0, num_threads: int = -1, fixed_intrinsics: bool = False,
                        refine_extra_params: bool = True, hold_focal: bool = False):
    """``pycolmap.IncrementalPipelineOptions`` for ``config``, then its ``pycolmap_options``.

    Args:
        config: the mapping section.
        seed: random seed (-1: random).
        num_threads: CPU threads (-1: all).
        fixed_intrinsics: keep the cameras' intrinsics as they are in the database (a calibration).
        refine_extra_params: refine distortion (False keeps it at the database's values).
        hold_focal: keep the focal lengths at the database's values (the narrow-lens rule,
            :mod:`recon3d.sfm.focal`).
    """
    import pycolmap

    o = pycolmap.IncrementalPipelineOptions()
    _set_seed(o, seed)
    o.num_threads = num_threads
    o.min_num_matches = config.min_num_matches
    o.min_model_size = config.min_model_size
    o.mapper.init_min_num_inliers = config.init_min_num_inliers
    o.mapper.abs_pose_min_num_inliers = config.abs_pose_min_num_inliers
    o.mapper.abs_pose_min_inlier_ratio = config.inlier_ratio()
    o.ba_refine_principal_point = False
    if not refine_extra_params:
        o.ba_refine_extra_params = False
        o.mapper.abs_pose_refine_extra_params = False
    if fixed_intrinsics or hold_focal:
        o.ba_refine_focal_length = False
        o.mapper.abs_pose_refine_focal_length = False
    if fixed_intrinsics:
        o.ba_refine_extra_params = False
        o.mapper.abs_pose_refine_focal_length = False
        o.mapper.abs_pose_refine_extra_params = False
    apply_pycolmap_options(config.pycolmap_options, "mapping.pycolmap_options", {"": o})
    return o


def global_options(config: MapperConfig, seed: int = 0, num_threads: int = -1, fixed_intrinsics: bool = False,
                   refine_extra_params: bool = True, hold_focal: bool = False):
    """``pycolmap.GlobalPipelineOptions`` for ``config`` (arguments as :func:`incremental_options`)."""
    import pycolmap

    o = pycolmap.GlobalPipelineOptions()
    o.random_seed = seed
    o.mapper.random_seed = seed
    o.mapper.rotation_averaging.random_seed = seed
    o.mapper.global_positioning.random_seed = seed
    o.mapper.retriangulation.random_seed = seed
    o.num_threads = num_threads
    o.mapper.num_threads = num_threads
    o.min_num_matches = config.min_num_matches
    o.min_model_size = config.min_model_size
    o.mapper.global_positioning.use_gpu = False
    o.mapper.bundle_adjustment.ceres.use_gpu = False
    o.mapper.bundle_adjustment.refine_principal_point = False
    if not refine_extra_params:
        o.mapper.bundle_adjustment.refine_extra_params = False
    if fixed_intrinsics or hold_focal:
        o.mapper.bundle_adjustment.refine_focal_length = False
    if fixed_intrinsics:
        o.mapper.bundle_adjustment.refine_extra_params = False
    apply_pycolmap_options(config.pycolmap_options, "mapping.pycolmap_options", {"": o})
    return o


def hierarchical_options(config: MapperConfig, seed: int = 0, num_threads: int = -1, fixed_intrinsics: bool = False,
                         refine_extra_params: bool = True, hold_focal: bool = False):
    """``pycolmap.HierarchicalPipelineOptions`` for ``config`` (arguments as :func:`incremental_options`).

    Each cluster is mapped with :func:`incremental_options`' settings; ``pycolmap_options`` keys go
    to those (``mapper.init_max_error``), to the clustering (``clustering.leaf_max_num_images``) or
    to the top level (``hierarchical.num_workers``).
    """
    import pycolmap

    o = pycolmap.HierarchicalPipelineOptions()
    inc = incremental_options(dataclasses.replace(config, pycolmap_options={}), seed, num_threads, fixed_intrinsics,
                              refine_extra_params, hold_focal)
    inc.ba_refine_sensor_from_rig = False  # pycolmap: merging is unreliable when clusters move rig extrinsics
    o.incremental_options = inc
    o.num_threads = num_threads
    o.clustering_options.leaf_max_num_images = config.cluster_max_images
    o.clustering_options.image_overlap = config.cluster_overlap
    apply_pycolmap_options(config.pycolmap_options, "mapping.pycolmap_options",
                           {"": o.incremental_options, "clustering": o.clustering_options, "hierarchical": o})
    return o


def pipeline_options(config: SfmConfig, refine_extra_params: bool = True, hold_focal: bool = False):
    """pycolmap's incremental, global or hierarchical pipeline options for the whole :class:`SfmConfig`."""
    build = {"global": global_options, "hierarchical": hierarchical_options}.get(config.mapping.mapper,
                                                                               incremental_options)
    return build(config.mapping, seed=config.seed, num_threads=config.num_threads,
                 fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params, hold_focal=hold_focal)


def map_database(database: Path, image_dir: Path, out_dir: Path, config: SfmConfig,
                 image_names: list[str] | None = None, on_image: Callable[[], None] | None = None,
                 refine_extra_params: bool = True, on_clusters: Callable[[dict], None] | None = None,
                 hold_focal: bool = False) -> list:
    """Run the mapper; returns the models (``pycolmap.Reconstruction``), largest first.

    Args:
        database: matched ``database.db``.
        image_dir: the photos (for point colours).
        out_dir: scratch folder pycolmap writes its own copies into.
        config: the options (``config.mapping`` and the shared seed and threads).
        image_names: map only these photos (the database may hold others); None: all.
        on_image: called after each registered image (incremental mapper), for progress bars.
        refine_extra_params: refine distortion (False keeps it fixed at the database's values).
        on_clusters: hierarchical mapper: called with what :func:`hierarchical_mapping` says of its clusters.
        hold_focal: keep the focal lengths at the database's (EXIF) values (:mod:`recon3d.sfm.focal`).
    """
    import pycolmap

    from recon3d.core.log import glog_level

    pycolmap.logging.minloglevel = glog_level()  # everything with -v
    if config.seed >= 0:
        pycolmap.set_random_seed(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    o = pipeline_options(config, refine_extra_params, hold_focal)
    if image_names:
        (o.incremental_options if config.mapping.mapper == "hierarchical" else o).image_names = list(image_names)
    if config.mapping.mapper == "global":
        recs = pycolmap.global_mapping(database, image_dir, out_dir, o)
    elif config.mapping.mapper == "hierarchical":
        recs, clusters = hierarchical_mapping(database, image_dir, out_dir, o)
        if image_names:  # pycolmap maps each cluster's photos, whatever image_names says: drop the others
            keep = set(image_names)
            for rec in recs.values():
                for frame_id in {rec.images[i].frame_id for i in rec.reg_image_ids() if rec.images[i].name not in keep}:
                    rec.deregister_frame(frame_id)
        if on_clusters is not None:
            on_clusters(clusters)
        for _ in range(max((r.num_reg_images() for r in recs.values()), default=0) if on_image else 0):
            on_image()  # the clusters report no progress: the bar jumps to the end
    else:
        recs = pycolmap.incremental_mapping(database, image_dir, out_dir, o, next_image_callback=on_image)
    models = [r for r in recs.values() if r.num_reg_images() > 0]
    models.sort(key=lambda r: (-r.num_reg_images(), -r.num_points3D()))
    if config.mapping.mapper == "hierarchical":
        kept, seen = [], set()  # a cluster's leftover model whose photos are all in a larger one adds nothing
        for rec in models:
            names = {rec.images[i].name for i in rec.reg_image_ids()}
            kept += [rec] if names - seen else []
            seen |= names
        for rec in kept if clusters["merges"] else []:  # merged clusters disagree where they meet (by over a
            # pixel): adjust each model whole before refine_model's filter cuts the observations joining them
            bundle_adjust(rec, fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params)
        models = kept
    return models


_CLUSTER_LINE = re.compile(r"Cluster \d+ with (\d+) images")
_MERGE_LINE = re.compile(r"Merged clusters with (\d+) and (\d+) images into (\d+) images")


def hierarchical_mapping(database: Path, image_dir: Path, out_dir: Path, options) -> tuple[dict, dict]:
    """``pycolmap.hierarchical_mapping`` and what it did with the clusters.

    pycolmap reports its partition only in its log, so the log (fd 2) is read for the duration of
    the call; its warnings and errors are passed on to stderr.

    Returns:
        ``({id: pycolmap.Reconstruction}, {"clusters": number of leaf clusters, "cluster_sizes":
        [photos per cluster, overlap included], "merges": number of successful merges})``.
    """
    import pycolmap

    level = pycolmap.logging.minloglevel
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            os.dup2(log.fileno(), 2)
            pycolmap.logging.minloglevel = 0
            recs = pycolmap.hierarchical_mapping(database, image_dir, out_dir, options)
        finally:
            pycolmap.logging.minloglevel = level
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line[:1] in ("W", "E", "F"):
            print(line, file=sys.stderr)
    sizes = [int(m.group(1)) for m in _CLUSTER_LINE.finditer(text)]
    return recs, {"clusters": len(sizes), "cluster_sizes": sizes, "merges": len(_MERGE_LINE.findall(text))}


# ------------------------------------------------------------------------------- refinement
def filter_observations(rec, max_reproj_error: float, min_tri_angle: float) -> int:
    """Drop observations reprojecting worse than ``max_reproj_error`` px, and weak points; returns the count."""
    import pycolmap

    return int(pycolmap.ObservationManager(rec).filter_all_points3D(max_reproj_error, min_tri_angle))


@dataclass
class RefineReport:
    """What :func:`refine_model` did to one model."""

    filtered_observations: int = 0
    principal_point: list[dict] = field(default_factory=list)
    calibration: list[dict] = field(default_factory=list)
    focal: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"filtered_observations": self.filtered_observations, "principal_point": self.principal_point,
                "calibration": self.calibration, "focal": self.focal}


def refine_model(rec, config: SfmConfig, refine_extra_params: bool = True,
                 priors: dict[int, float] | None = None) -> tuple[object, RefineReport]:
    """Final finish of a model: filter, bundle adjust (twice), principal-point rule, focal-length rule
    (:func:`recon3d.sfm.focal.focal_rule`, with the EXIF focal lengths ``priors``), filter.

    Returns ``(the refined reconstruction (``rec`` or a refined copy), what was done)``.
    """
    report = RefineReport()
    for _ in range(2):
        report.filtered_observations += filter_observations(rec, config.mapping.max_reproj_error, config.mapping.min_tri_angle)
        bundle_adjust(rec, fixed_intrinsics=config.fixed_intrinsics, refine_extra_params=refine_extra_params)
    if rec.num_reg_images() >= 3 and rec.num_points3D() >= 20:
        if config.calibration_prior:
            rec, decisions = calibration_prior_rule(rec, config.mapping)
            report.calibration = [d.to_dict() for d in decisions]
        else:
            rec, decisions = principal_point_rule(rec, config.mapping, config.fixed_intrinsics, refine_extra_params)
            report.principal_point = [d.to_dict() for d in decisions]
            if not config.fixed_intrinsics:
                from recon3d.sfm.focal import focal_rule

                rec, focal = focal_rule(rec, priors or {}, config.mapping, refine_extra_params)
                report.focal = [d.to_dict() for d in focal]
    report.filtered_observations += filter_observations(rec, config.mapping.max_reproj_error, config.mapping.min_tri_angle)
    return rec, report


def check_models(models: list) -> None:
    """Raise :class:`UserError` when mapping produced nothing usable."""
    if not models:
        raise UserError("mapping found no model", exit_code=3)
