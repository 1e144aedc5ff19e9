"""Registering every photo that can be registered (recon3d.sfm.policy), against exact ground truth.

Scenes: ``sparse_ring`` (16 views 22.5 deg apart), ``narrow`` (an 8 deg lens) and ``lowtex``
(a near-white object on black through a 12 deg lens, sensor noise). Each reconstruction runs once
per module and several tests read it. The narrow-lens rule (recon3d.sfm.focal) is tested with the
scenes' photos written as JPEG with an EXIF 35 mm focal length, as a camera would write it.
"""

from __future__ import annotations

import numpy as np
import pytest

from recon3d.core.workspace import Workspace
from recon3d.evaluate.report import evaluate_workspace
from recon3d.sfm.config import SfmConfig
from recon3d.sfm.match import PairStats
from recon3d.sfm.pipeline import run_sfm
from recon3d.sfm.policy import HELP, explain_unregistered, unregistered_entries
from recon3d.sfm.report import format_summary


def _sfm(scene, tmp_path_factory, name: str, config: SfmConfig | None = None, images=None, gt=None):
    ws = Workspace(tmp_path_factory.mktemp(name) / "ws")
    result = run_sfm(ws, images or scene / "images", config or SfmConfig())
    return ws, result, evaluate_workspace(ws, gt=gt or scene / "gt" / "sparse" / "0")


def _with_exif(scene, out, focal_px: float):
    """The scene's photos as JPEG (quality 95) with an EXIF 35 mm equivalent focal length for
    ``focal_px`` (COLMAP reads it as ``f35 / 43.27 mm * image diagonal``), and its ground truth renamed
    to match: ``(images folder, ground-truth model folder)``."""
    import pycolmap
    from PIL import Image

    images, gt = out / "images", out / "gt"
    images.mkdir(parents=True)
    gt.mkdir()
    for p in sorted((scene / "images").glob("*.png")):
        im = Image.open(p).convert("RGB")
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "recon3d", "synthetic"
        exif.get_ifd(0x8769)[0xA405] = round(focal_px * 43.2666 / float(np.hypot(*im.size)))
        im.save(images / f"{p.stem}.jpg", quality=95, exif=exif)
    rec = pycolmap.Reconstruction(str(scene / "gt" / "sparse" / "0"))
    for im in rec.images.values():
        im.name = im.name.replace(".png", ".jpg")
    rec.write_binary(str(gt))
    return images, gt


@pytest.fixture(scope="module")
def sparse_ring_sfm(sparse_ring_scene, tmp_path_factory):
    return _sfm(sparse_ring_scene, tmp_path_factory, "sparse_ring")


@pytest.fixture(scope="module")
def narrow_sfm(narrow_scene, tmp_path_factory):
    return _sfm(narrow_scene, tmp_path_factory, "narrow")


def _check_honest(ws: Workspace, report: dict) -> None:
    """Every photo is either in sparse/0 or listed as unregistered with its step and what would help."""
    import pycolmap

    rec = pycolmap.Reconstruction(str(ws.model))
    main = {rec.images[i].name for i in rec.reg_image_ids()}
    assert report["registered"] == len(main)
    listed = {u["name"]: u for u in report["unregistered"]}
    names = {p.name for p in ws.images.iterdir()}
    assert main | set(listed) == names and not main & set(listed)
    for u in listed.values():
        assert u["step"] in HELP and u["help"] == HELP[u["step"]] and u["reason"]
    for m in report["models"][1:]:  # a photo only in sparse/1... is not registered
        assert m["registered"] > 0
    assert report["policy"]["mapper"] in ("incremental", "global") and report["policy"]["why"]


def test_sparse_ring_registers_every_view(sparse_ring_sfm):
    ws, result, ev = sparse_ring_sfm
    assert result.report["registered"] == 16 and result.report["unregistered"] == []
    assert ev["gt"]["rotation_deg"]["median"] < 0.3 and ev["gt"]["rotation_deg"]["max"] < 1.0
    assert ev["gt"]["auc"]["1"] > 0.8
    _check_honest(ws, result.report)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sparse_ring_in_other_runs(sparse_ring_scene, tmp_path_factory, seed):
    """The sparse-ring acceptance in two more runs (seed 0 above): 16/16 at < 0.3 deg."""
    ws, result, ev = _sfm(sparse_ring_scene, tmp_path_factory, f"sparse_ring_{seed}", SfmConfig(seed=seed))
    print(f"sparse_ring seed {seed}: {result.report['registered']}/16, median {ev['gt']['rotation_deg']['median']:.3f} deg")
    assert result.report["registered"] == 16 and result.report["unregistered"] == []
    assert ev["gt"]["rotation_deg"]["median"] < 0.3


def test_narrow_lens_registers_every_view(narrow_sfm, narrow_scene):
    """Issue #17's acceptance on ``narrow`` (an 8 deg lens, no EXIF): every view registered, the
    self-calibrated focal length within 1 % and its standard deviation in the report. Measured +0.2 %
    (sd 0.37 %) in seeds 0-2, median rotation error 0.09 deg. Without SIFT's affine shapes it was -0.9 to
    -1.3 % (2-3 sd off) in seeds 0-2: keypoints of blobs on surfaces seen at an angle sit off the projection of
    the blob's centre, an error that grows with the blob and pulls the focal length."""
    ws, result, ev = narrow_sfm
    assert result.report["registered"] == 12 and result.report["unregistered"] == []
    assert ev["gt"]["rotation_deg"]["median"] < 0.3
    f = result.report["models"][0]["cameras"][0]["params"][0]
    assert abs(f / 4576.0 - 1) < 0.01
    (focal,) = result.report["models"][0]["refinement"]["focal"]
    assert focal["source"] == "self-calibrated" and focal["determined"] and focal["prior"] is None
    assert 0 < focal["sd"] < 0.01 * f and abs(f - 4576.0) < 4 * focal["sd"]
    assert "warning" not in result.summary


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_narrow_lens_focal_length_in_other_runs(narrow_scene, tmp_path_factory, seed):
    """The narrow-lens acceptance in two more runs (seed 0 is test_narrow_lens_registers_every_view):
    every view registered, focal length within 1 % (measured +0.17 % and +0.23 %)."""
    ws, result, ev = _sfm(narrow_scene, tmp_path_factory, f"narrow_{seed}", SfmConfig(seed=seed))
    f = result.report["models"][0]["cameras"][0]["params"][0]
    print(f"narrow seed {seed}: {result.report['registered']}/12, f {f:.1f} ({100 * (f / 4576.0 - 1):+.2f} %)")
    assert result.report["registered"] == 12 and result.report["unregistered"] == []
    assert abs(f / 4576.0 - 1) < 0.01


def test_narrow_lens_keeps_the_exif_focal_length(narrow_scene, tmp_path_factory):
    """The narrow-lens rule: with an EXIF focal length (4567 px, -0.2 %) the 8 deg lens is mapped with
    it held, and the final refinement keeps it because self-calibration moves it by too few standard
    deviations: focal length within 1 % (measured 0.087 deg median rotation error; self-calibrated 0.093)."""
    images, gt = _with_exif(narrow_scene, tmp_path_factory.mktemp("narrow_exif"), 4576.0)
    ws, result, ev = _sfm(narrow_scene, tmp_path_factory, "narrow_exif", images=images, gt=gt)
    report = result.report
    assert report["registered"] == 12 and report["unregistered"] == []
    assert "narrow_lens" in report["notes"]
    (focal,) = report["models"][0]["refinement"]["focal"]
    assert focal["source"] == "EXIF prior" and "kept" in focal["reason"]
    assert abs(report["models"][0]["cameras"][0]["params"][0] / 4576.0 - 1) < 0.01
    assert ev["gt"]["rotation_deg"]["median"] < 0.15


def test_photos_only_in_a_separate_model_are_not_registered():
    """The reason and step of each photo not in sparse/0, from the database counts alone."""
    names = ["a.png", "b.png", "c.png", "d.png", "e.png"]
    inl = np.zeros((5, 5), dtype=np.int64)
    inl[0, 1] = inl[1, 0] = 200  # a-b: the main model
    inl[2, 3] = inl[3, 2] = 150  # c-d: another group
    raw = inl + 20
    raw[4, :] = raw[:, 4] = 3  # e overlaps nothing
    stats = PairStats(names, np.full(5, 2000), raw, inl, np.ones(5, dtype=np.int64))
    reasons = explain_unregistered(stats, names, {"a.png": 0, "b.png": 0, "c.png": 1, "d.png": 1}, SfmConfig())
    entries = {u["name"]: u for u in unregistered_entries(reasons, rejected=[])}
    assert set(entries) == {"c.png", "d.png", "e.png"}
    assert entries["c.png"]["step"] == "separate model" and "sparse/1" in entries["c.png"]["reason"]
    assert entries["e.png"]["step"] == "no verified pair" and "overlap" in entries["e.png"]["help"]
    report = {"images": {"used": 5, "skipped": []}, "registered": 2, "registered_any_model": 4,
              "models": [{"registered": 2, "points": 10, "mean_track_length": 2.0, "cameras": [],
                          "reprojection_px": {"mean": 0.3, "median": 0.2, "p95": 0.5}},
                         {"registered": 2, "points": 5, "mean_track_length": 2.0, "cameras": [],
                          "reprojection_px": {"mean": 0.3, "median": 0.2, "p95": 0.5}}],
              "unregistered": list(entries.values()), "timings_s": {"total": 1.0}}
    text = format_summary(report, Workspace("/tmp/nowhere"))
    assert "2/5 photos registered" in text and "not counted" in text and "unregistered: 3" in text


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lowtex_registers_the_ring_without_exif(lowtex_scene, tmp_path_factory, seed):
    """Issue #17's acceptance on ``lowtex`` (a near-white object through a 12 deg lens, no EXIF):
    >= 14/16 views at a median rotation error < 1 deg in each of three runs. Every photo has under 1000
    keypoints and is extracted again with more features; SIFT's affine shapes make the weak features
    precise enough to find the lens (measured 16/16 at 0.33-0.38 deg, focal length 3035-3064 px for
    3045, in seeds 0-2; without affine shapes 9/16 with views 117 deg off and 5100 px). The report
    accounts for every photo, and a wrong model is never silent."""
    ws, result, ev = _sfm(lowtex_scene, tmp_path_factory, "lowtex", SfmConfig(seed=seed))
    report = result.report
    print(f"lowtex seed {seed}: {report['registered']}/16, median {ev['gt']['rotation_deg']['median']:.3f} deg, "
          f"f {report['models'][0]['cameras'][0]['params'][0]:.0f} px, {report['policy']['why']}")
    assert report["features"]["extracted_again"]  # every photo had < 1000 keypoints
    assert all(after > before for before, after in report["features"]["extracted_again"].values())
    _check_honest(ws, report)
    (focal,) = report["models"][0]["refinement"]["focal"]
    if ev["gt"]["rotation_deg"]["max"] > 5:  # a wrong model is never silent
        assert not focal["determined"] and "warning: the views do not determine the focal length" in result.summary
        assert "--camera" in result.summary
    assert report["registered"] >= 14
    assert ev["gt"]["rotation_deg"]["median"] < 1.0


@pytest.mark.slow
def test_lowtex_with_exif_registers_the_ring(lowtex_scene, tmp_path_factory):
    """With the EXIF focal length (3051 px for 3045) held while mapping (narrow-lens rule), ``lowtex``
    registers as without EXIF, and the focal length stays within 1 % (measured 16/16 at 0.29-0.35 deg
    in seeds 0-2, EXIF value kept)."""
    images, gt = _with_exif(lowtex_scene, tmp_path_factory.mktemp("lowtex_exif"), 3045.0)
    ws, result, ev = _sfm(lowtex_scene, tmp_path_factory, "lowtex_exif", SfmConfig(), images, gt)
    print(f"lowtex EXIF: {result.report['registered']}/16, median {ev['gt']['rotation_deg']['median']:.3f} "
          f"deg, {result.report['policy']['why']}")
    assert result.report["registered"] >= 14
    assert ev["gt"]["rotation_deg"]["median"] < 1.0
    assert abs(result.report["models"][0]["cameras"][0]["params"][0] / 3045.0 - 1) < 0.01
    _check_honest(ws, result.report)


@pytest.mark.parametrize("mapper, global_tried, suggests", [("incremental", False, True), ("incremental", True, False),
                                                            ("global", False, False)])
def test_no_model_error_suggests_global_only_when_untried(mapper, global_tried, suggests):
    from recon3d.sfm.config import MapperConfig
    from recon3d.sfm.pipeline import EXIT_NO_MODEL, no_model_error

    names = ["a.png", "b.png", "c.png"]
    inl = np.array([[0, 40, 0], [40, 0, 0], [0, 0, 0]])
    stats = PairStats(names, np.full(3, 2000), inl + 10, inl, np.ones(3, dtype=np.int64))
    err = no_model_error(stats, names, SfmConfig(mapping=MapperConfig(mapper=mapper)), global_tried)
    assert err.exit_code == EXIT_NO_MODEL and "a.png / b.png" in str(err)
    assert ("--mapper global" in str(err)) == suggests


@pytest.mark.slow
def test_known_camera_prior_is_kept_where_the_views_do_not_determine_it(narrow_scene, tmp_path_factory):
    """--camera with the exact intrinsics on an 8 deg lens: the views cannot pin the focal length
    (sd 0.37 %), so the calibration prior is kept as given and the run
    ends as --fixed-intrinsics would (recon3d.sfm.intrinsics.calibration_prior_rule)."""
    ws, result, ev = _sfm(narrow_scene, tmp_path_factory, "narrow_cam",
                          SfmConfig(camera_file=str(narrow_scene / "gt" / "camera.json")))
    cal = result.report["models"][0]["refinement"]["calibration"]
    assert cal and not cal[0]["kept"] and "do not determine" in cal[0]["reason"]
    assert result.report["models"][0]["cameras"][0]["params"][:2] == [4576.0, 4576.0]
    assert result.report["registered"] == 12 and ev["gt"]["rotation_deg"]["median"] < 0.3


@pytest.mark.parametrize("min_inliers, expect", [(500, "second pass"), (800, "global")])
def test_left_out_views_are_registered_by_the_policy(orbit_scene, tmp_path, min_inliers, expect):
    """Eight orbit views with a strict first pass: 500 inliers leave only the initial pair (the second
    pass adds the other six: a two-photo model's low error is no bar, policy.MIN_IMAGES_FOR_ERROR_BAR;
    with it as a bar the pair was kept and 6 views were left out); 800 leave no model at all (the global
    mapper's model is used). Either way every view ends in sparse/0, accurate against the true cameras."""
    import shutil

    from recon3d.sfm.config import MapperConfig

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(8):
        shutil.copy(orbit_scene / "images" / f"view_{i:03d}.png", photos)
    ws = Workspace(tmp_path / "ws")
    result = run_sfm(ws, photos, SfmConfig(mapping=MapperConfig(abs_pose_min_num_inliers=min_inliers)))
    ev = evaluate_workspace(ws, gt=orbit_scene / "gt" / "sparse" / "0")
    policy = result.report["policy"]
    assert result.report["registered"] == 8 and result.report["unregistered"] == []
    assert ev["gt"]["rotation_deg"]["median"] < 0.2
    if expect == "second pass":  # here: the second pass adds the 3 views; where SIFT differs slightly (other
        # CPUs, threads), it may leave one out and the global second opinion then wins: both are the policy
        assert "second_pass" in policy and policy["second_pass"]["before"] < 8
        if policy["mapper"] == "incremental":
            assert policy["second_pass"]["after"] == 8 and policy["rejected"] == []
        else:
            assert policy["mapper"] == "global" and policy["global"]["won"]
    else:
        assert policy["mapper"] == "global" and policy["global"]["won"] and "global model used" in policy["why"]
    _check_honest(ws, result.report)


# ------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def temple_full(shared_data, tmp_path_factory):
    """Median rotation error of the full 19-view temple ring (the reference for its subsets)."""
    gt = shared_data / "temple_ring" / "gt" / "templeR_par.txt"
    ws = Workspace(tmp_path_factory.mktemp("temple_full") / "ws")
    result = run_sfm(ws, shared_data / "temple_ring" / "images", SfmConfig())
    assert result.report["registered"] == 19
    return evaluate_workspace(ws, gt=gt)["gt"]["rotation_deg"]["median"]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("step, seed", [(2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)])
def test_temple_ring_subsets_register_every_view(shared_data, temple_full, tmp_path, step, seed):
    """Every 2nd (10 views, 36 deg apart on average) and every 3rd view (7 views) of the temple ring,
    three runs each: all registered, median rotation error within 0.1 deg of the full set's (issue #17).
    Measured with SIFT's affine shapes, seeds 0-2: full 0.779-0.810 deg, every 2nd 0.834-0.835, every
    3rd 0.653-0.676 (without affine shapes, seed 0: full 0.736, every 2nd 0.843, every 3rd 0.735). On
    this ring the error is mostly the principal point the views cannot determine (left at the image
    centre, 18 px from the true one): the rotation fitted to the orientations is 0.48 deg either way."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((shared_data / "temple_ring" / "images").iterdir())[::step]:
        (photos / p.name).symlink_to(p)
    ws = Workspace(tmp_path / "ws")
    result = run_sfm(ws, photos, SfmConfig(seed=seed))
    ev = evaluate_workspace(ws, gt=shared_data / "temple_ring" / "gt" / "templeR_par.txt")
    n = len(list(photos.iterdir()))
    print(f"temple every {step}: {result.report['registered']}/{n}, median {ev['gt']['rotation_deg']['median']:.3f} "
          f"deg (full set {temple_full:.3f})")
    assert result.report["registered"] == n and result.report["unregistered"] == []
    assert ev["gt"]["rotation_deg"]["median"] < temple_full + 0.1


@pytest.mark.slow
def test_known_camera_refinable_ends_as_fixed_on_exact_intrinsics(facade_scene, tmp_path_factory):
    """--camera with the exact synthetic intrinsics, refinable, ends no worse than --fixed-intrinsics
    (issue #17). Mapping runs with a given calibration held either way, so a calibration the final rule
    keeps gives the --fixed-intrinsics model itself (measured: 0.0489 deg both; 0.0380 before SIFT affine
    shapes). On the facade the
    views moved the exact intrinsics 6.9 sd (cy by 4 px), which at the old 5 sd threshold made the
    refinable run 0.260 deg; narrow's case is test_known_camera_prior_is_kept_where_the_views_do_not_determine_it."""
    cam = str(facade_scene / "gt" / "camera.json")
    ws, result, ev = _sfm(facade_scene, tmp_path_factory, "facade_cam", SfmConfig(camera_file=cam, camera_fixed=False))
    cal = result.report["models"][0]["refinement"]["calibration"]
    print(f"facade --camera refinable: {ev['gt']['rotation_deg']['median']:.4f} deg; {cal[0]['reason']}")
    assert result.report["unregistered"] == []
    assert cal and not cal[0]["kept"] and "calibration kept" in cal[0]["reason"]
    assert ev["gt"]["rotation_deg"]["median"] < 0.055  # --fixed-intrinsics: 0.0489
