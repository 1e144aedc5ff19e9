"""Acceptance: ``--mapper hierarchical`` on the 96-view orbit ring registers every view as accurately
as incremental mapping on the same matches.

Kept cheap: the orbit scene with 96 cameras on its ring rendered at 320x240 (no supersampling), SIFT
without upsampling (first octave 0: about 240 features a view), sequential matching with 4 neighbours
(no loop closure: the ring is an open chain, the hard case for merging), clusters forced to 16 photos
+ 6 overlap, so eight or more clusters of about 20 photos are mapped and merged. Incremental mapping
then runs on the same database. About 40 s on 2 busy cores (load 6), 10 s more to render the views
once.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from recon3d.core.workspace import Workspace
from recon3d.evaluate.report import evaluate_workspace
from recon3d.scenes import load_spec, render_scene_cached
from recon3d.sfm.config import MapperConfig, MatchingConfig, SfmConfig
from recon3d.sfm.pipeline import run_sfm

VIEWS = 96


@pytest.fixture(scope="module")
def ring_scene(tmp_path_factory) -> Path:
    """The orbit scene with 96 views at 320x240 (about 10 s to render; kept in ``$RECON3D_TEST_CACHE``)."""
    spec = load_spec("orbit")
    spec = dataclasses.replace(spec, name="orbit96_320x240", supersample=1,
                               views=dataclasses.replace(spec.views, count=VIEWS),
                               camera=dataclasses.replace(spec.camera, width=320, height=240, fx=260.0, fy=260.0))
    cache = os.environ.get("RECON3D_TEST_CACHE")
    root = Path(cache) / spec.name if cache else tmp_path_factory.mktemp(spec.name)
    render_scene_cached(spec, root)
    return root


def _config(mapper: str) -> SfmConfig:
    config = SfmConfig(matching=MatchingConfig(pairing="sequential", overlap=4),
                       mapping=MapperConfig(mapper=mapper, cluster_max_images=16, cluster_overlap=6))
    config.extraction.first_octave = 0  # 4 times fewer pixels than the default; ~240 features a view
    config.extraction.adaptive_min_keypoints = 0  # all views are alike here: none is low-texture
    return config


@pytest.mark.slow
def test_hierarchical_mapper_on_the_96_view_ring(ring_scene, tmp_path):
    ws = Workspace(tmp_path / "hierarchical")
    result = run_sfm(ws, ring_scene / "images", _config("hierarchical"))
    clusters = result.report["notes"]["hierarchical"]
    assert clusters["clusters"] >= 8 and clusters["merges"] == clusters["clusters"] - 1
    assert max(clusters["cluster_sizes"]) <= 16 + 2 * 6
    assert len(result.report["models"]) == 1  # clusters' leftover models inside the merged one are dropped
    ws2 = Workspace(tmp_path / "incremental")  # the same database: only mapping differs
    shutil.copytree(ws.images, ws2.images)
    shutil.copy(ws.database, ws2.database)
    shutil.copytree(ws.reports / "stages", ws2.reports / "stages")
    result2 = run_sfm(ws2, None, _config("incremental"))
    assert result2.report["features"]["extracted"] == 0 and result2.report["mapper"] == "incremental"

    gt = ring_scene / "gt" / "sparse" / "0"
    hier, inc = evaluate_workspace(ws, gt=gt)["gt"], evaluate_workspace(ws2, gt=gt)["gt"]
    for rep, res in ((hier, result), (inc, result2)):
        assert rep["common_images"] == VIEWS and rep["missing_images"] == [] and res.report["unregistered"] == []
    # measured (2-core x86-64): rotation median / max 0.41 / 0.97 deg hierarchical, 0.34 / 0.82 incremental;
    # position 0.33 / 0.66 % of the ring's extent against 0.19 / 0.43 %; relative-pose AUC@1 0.46 against
    # 0.50. Merged clusters left unadjusted before the observation filter (the bug this guards) gave 7.1 deg.
    for stat in ("median", "max"):
        assert hier["rotation_deg"][stat] <= 1.5 * inc["rotation_deg"][stat] + 0.05, (hier, inc)
        assert hier["position_rel_extent"][stat] <= 2 * inc["position_rel_extent"][stat] + 0.001, (hier, inc)
    assert hier["auc"]["1"] >= inc["auc"]["1"] - 0.1
    assert hier["rotation_deg"]["max"] < 1.5 and hier["position_rel_extent"]["max"] < 0.01
