"""Config dataclasses: docs, typed loading, YAML."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from recon3d.core.config import dump_yaml, field_docs, from_dict, load_yaml, to_dict
from recon3d.core.errors import UserError


@dataclass
class Inner:
    size: float = 1.0
    """Edge length in metres."""


@dataclass
class Outer:
    name: str = "x"
    """The name."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    inner: Inner = field(default_factory=Inner)
    """A nested section."""
    items: list[Inner] = field(default_factory=list)
    """A list of sections."""
    opt: Optional[int] = None
    """Optional count."""


def test_field_docs():
    assert field_docs(Outer)["mode"] == "Which mode."
    assert field_docs(Inner) == {"size": "Edge length in metres."}


def test_round_trip():
    cfg = Outer(name="y", mode="b", inner=Inner(2.0), items=[Inner(3.0)], opt=4)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, match",
    [
        ({"nme": "x"}, "unknown key"),
        ({"mode": "c"}, "not one of"),
        ({"inner": {"size": "big"}}, r"inner\.size: expected a number"),
        ({"items": 3}, "expected a list"),
    ],
)
def test_errors_name_the_key(data, match):
    with pytest.raises(UserError, match=match):
        from_dict(Outer, data)


def test_dump_and_load_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(Outer()))
    assert from_dict(Outer, load_yaml(p)) == Outer()
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(UserError, match="invalid YAML at line"):
        load_yaml(tmp_path / "bad.yaml")


# ------------------------------------------------------------------------------ command line
import argparse  # noqa: E402

from recon3d.core.config import (  # noqa: E402
    add_config_arguments,
    apply_overrides,
    build_config,
    config_from_args,
    option,
)


@dataclass
class Ranged:
    count: int = option(3, flag="--n", min=1, max=10)
    """How many (1 to 10)."""
    scale: float = 1.0
    """A factor."""
    on: bool = True
    """A switch."""
    extra: dict = field(default_factory=dict)
    """Free-form options."""
    inner: Inner = field(default_factory=Inner)
    """A nested section."""


def _parse(cls, argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, cls)
    return parser, parser.parse_args(argv)


def test_flags_from_fields():
    _, args = _parse(Ranged, ["--n", "5", "--scale", "2", "--no-on", "--inner.size", "4", "--extra", "{a: 1}"])
    assert config_from_args(Ranged, args) == Ranged(5, 2.0, False, {"a": 1}, Inner(4.0))
    _, args = _parse(Ranged, [])
    assert config_from_args(Ranged, args) == Ranged()  # nothing given: the defaults
    _, args = _parse(Outer, ["--mode", "b", "--opt", "2"])
    assert config_from_args(Outer, args) == Outer(mode="b", opt=2)


def test_flag_errors_exit_2(capsys):
    for argv in (["--n", "11"], ["--n", "x"]):
        with pytest.raises(SystemExit) as exc:
            _parse(Ranged, argv)
        assert exc.value.code == 2
    assert "between 1 and 10" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse(Outer, ["--mode", "c"])


def test_help_is_the_field_doc(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    parser, _ = _parse(Ranged, [])
    text = parser.format_help()
    assert "How many (1 to 10). (default: 3)" in text and "Edge length in metres. (default: 1)" in text
    assert text.count("--n N") == 2 and "--count" not in text  # usage line and option line


def test_precedence_defaults_config_flags_set(tmp_path):
    saved = tmp_path / "c.yaml"
    saved.write_text(dump_yaml(Ranged(count=4, scale=3.0, on=False)))
    _, args = _parse(Ranged, ["--config", str(saved), "--n", "6", "--set", "count=7", "--set", "inner.size=9"])
    cfg = config_from_args(Ranged, args)
    assert (cfg.count, cfg.scale, cfg.on, cfg.inner.size) == (7, 3.0, False, 9.0)  # --set > flag > config > default
    _, args = _parse(Ranged, ["--config", str(saved), "--n", "6"])
    assert config_from_args(Ranged, args).count == 6
    # a base config (a preset) in place of the defaults
    assert build_config(Ranged(count=2), sets=["scale=5"]) == Ranged(count=2, scale=5.0)


def test_set_errors_and_dict_fields():
    assert apply_overrides(Ranged(), ["extra.mapper.init_max_error=6"]).extra == {"mapper.init_max_error": 6}
    with pytest.raises(UserError, match="unknown field 'sise'"):
        apply_overrides(Ranged(), ["inner.sise=1"])
    with pytest.raises(UserError, match="out of range"):
        apply_overrides(Ranged(), ["count=0"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        apply_overrides(Ranged(), ["count"])
    with pytest.raises(UserError, match="not a section"):
        apply_overrides(Ranged(), ["scale.x=1"])


# ------------------------------------------------------------------------------ the SfM config
def _leaves(cls, prefix=""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], prefix + f.name + ".")
        else:
            yield prefix + f.name, f, cls


def _sfm_parser():
    from recon3d.cli.sfm import add_sfm_options

    parser = argparse.ArgumentParser()
    add_sfm_options(parser)
    return parser


def test_sfm_help_shows_every_setting_once(monkeypatch):
    from recon3d.sfm.config import SfmConfig

    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    lines = _sfm_parser().format_help().splitlines()
    for path, f, owner in _leaves(SfmConfig):
        flag = f.metadata.get("flag") or "--" + path.replace("_", "-")
        rows = [ln for ln in lines if ln.strip().startswith(flag + " ") or ln.strip().startswith(flag + ",")]
        assert len(rows) == 1, (path, rows)
        doc = field_docs(owner)[f.name]
        assert sum(doc[:40] in ln for ln in lines) == 1, path  # its doc is the help, shown once
    # every historical option name still parses
    old = ["--max-image-size", "640", "--max-features", "100", "--peak-threshold", "0.002", "--matching",
           "sequential", "--overlap", "3", "--retrieval-images", "5", "--loop-detection", "--vocab-tree", "t.bin",
           "--min-inliers", "20", "--device", "cpu", "--camera", "cam.json", "--fixed-intrinsics", "--camera-model",
           "PINHOLE", "--camera-mode", "single", "--refine-principal-point", "never", "--mapper", "global",
           "--abs-pose-min-inliers", "6", "--max-reproj-error", "3", "--seed", "2", "--threads", "1"]
    from recon3d.cli.sfm import config_from_args as sfm_config

    cfg = sfm_config(_sfm_parser().parse_args(old))
    assert (cfg.extraction.max_image_size, cfg.extraction.max_num_features, cfg.extraction.peak_threshold) == (640, 100, 0.002)
    assert (cfg.matching.pairing, cfg.matching.overlap, cfg.matching.retrieval_num_images) == ("sequential", 3, 5)
    assert cfg.matching.loop_detection and cfg.matching.vocab_tree == "t.bin" and cfg.matching.min_num_inliers == 20
    assert (cfg.device, cfg.camera_file, cfg.camera_fixed, cfg.seed, cfg.num_threads) == ("cpu", "cam.json", True, 2, 1)
    assert (cfg.extraction.camera_model, cfg.extraction.camera_mode) == ("PINHOLE", "single")
    assert (cfg.mapping.refine_principal_point, cfg.mapping.mapper, cfg.mapping.max_reproj_error) == ("never", "global", 3.0)
    assert cfg.mapping.abs_pose_min_num_inliers == 6 and cfg.mapping.inlier_ratio() == 0.05  # the old CLI rule


def test_sfm_precedence_and_round_trip(tmp_path):
    from recon3d.cli.sfm import config_from_args as sfm_config
    from recon3d.core.workspace import config_hash
    from recon3d.sfm.config import MapperConfig, MatchingConfig, SfmConfig

    cfg = SfmConfig(seed=3, matching=MatchingConfig(pairing="sequential", overlap=5),
                    mapping=MapperConfig(max_reproj_error=3.0, pycolmap_options={"mapper.init_max_error": 6.0}))
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_yaml(cfg))
    back = build_config(SfmConfig, saved)
    assert back == cfg and config_hash(back) == config_hash(cfg)
    args = _sfm_parser().parse_args(["--config", str(saved), "--overlap", "7", "--seed", "4",
                                     "--set", "matching.overlap=9", "--set", "mapping.min_num_matches=10"])
    got = sfm_config(args)
    assert got.matching.overlap == 9 and got.seed == 4  # --set > flag > --config
    assert got.mapping.max_reproj_error == 3.0 and got.matching.pairing == "sequential"  # from --config
    assert got.mapping.min_num_matches == 10 and got.mapping.pycolmap_options == {"mapper.init_max_error": 6.0}
    assert got.extraction.max_image_size == 1600  # default
    # the auto inlier ratio: COLMAP's 0.25 at the default 30 inliers, 0.05 below
    assert MapperConfig().inlier_ratio() == 0.25 and MapperConfig(abs_pose_min_num_inliers=29).inlier_ratio() == 0.05
    assert MapperConfig(abs_pose_min_num_inliers=6, abs_pose_min_inlier_ratio=0.3).inlier_ratio() == 0.3


def test_unknown_pycolmap_option_is_a_user_error():
    from recon3d.sfm.config import MapperConfig, MatchingConfig, SfmConfig
    from recon3d.sfm.pipeline import check_pycolmap_options

    with pytest.raises(UserError, match=r"mapping.pycolmap_options: unknown key 'mapper.init_max_eror' \(did you mean "
                                        r"'mapper.init_max_error'\?\); valid keys: .*mapper.init_max_error"):
        check_pycolmap_options(SfmConfig(mapping=MapperConfig(pycolmap_options={"mapper.init_max_eror": 6})))
    with pytest.raises(UserError, match="valid keys: .*verification.ransac.confidence"):
        check_pycolmap_options(SfmConfig(matching=MatchingConfig(pycolmap_options={"ransac.confidence": 0.9})))
    with pytest.raises(UserError, match="does not fit"):
        check_pycolmap_options(SfmConfig(mapping=MapperConfig(pycolmap_options={"mapper.init_max_error": "x"})))
    check_pycolmap_options(SfmConfig(mapping=MapperConfig(mapper="global", pycolmap_options={"min_num_matches": 20})))


def test_pycolmap_options_are_set_after_recon3d_settings():
    from recon3d.sfm.config import ExtractionConfig, MapperConfig, MatchingConfig
    from recon3d.sfm.extract import extraction_options
    from recon3d.sfm.mapping import incremental_options
    from recon3d.sfm.match import matching_options

    o = incremental_options(MapperConfig(abs_pose_min_num_inliers=6))
    assert o.mapper.abs_pose_min_num_inliers == 6 and o.mapper.abs_pose_min_inlier_ratio == 0.05
    o = incremental_options(MapperConfig(pycolmap_options={"mapper.abs_pose_min_inlier_ratio": 0.1,
                                                           "ba_global_max_num_iterations": 20,
                                                           "mapper.image_selection_method": "MAX_VISIBLE_POINTS_NUM"}))
    assert o.mapper.abs_pose_min_inlier_ratio == 0.1 and o.ba_global_max_num_iterations == 20
    assert o.mapper.image_selection_method.name == "MAX_VISIBLE_POINTS_NUM"  # enums by name
    mo, vo = matching_options(MatchingConfig(pycolmap_options={"verification.ransac.confidence": 0.9,
                                                               "matching.max_num_matches": 1000}))
    assert vo.ransac.confidence == 0.9 and mo.max_num_matches == 1000
    assert extraction_options(ExtractionConfig(pycolmap_options={"sift.max_num_orientations": 1})).sift.max_num_orientations == 1
    with pytest.raises(UserError, match="extraction.pycolmap_options: unknown key 'sift.nope'"):
        extraction_options(ExtractionConfig(pycolmap_options={"sift.nope": 1}))


def test_hierarchical_options_reach_every_cluster():
    """--mapper hierarchical: recon3d's incremental settings and the plain pycolmap keys apply to each
    cluster's mapper; 'clustering.*' and 'hierarchical.*' keys reach the partition and the top level."""
    from recon3d.sfm.config import MapperConfig
    from recon3d.sfm.mapping import hierarchical_options

    o = hierarchical_options(MapperConfig(mapper="hierarchical", abs_pose_min_num_inliers=6, cluster_max_images=40,
                                          cluster_overlap=7, pycolmap_options={
                                              "mapper.init_max_error": 6.0, "clustering.branching": 3,
                                              "hierarchical.num_workers": 2}), seed=5, fixed_intrinsics=True)
    inc = o.incremental_options
    assert inc.mapper.abs_pose_min_num_inliers == 6 and inc.mapper.init_max_error == 6.0
    assert inc.random_seed == 5 and inc.mapper.random_seed == 5 and not inc.ba_refine_focal_length
    assert (o.clustering_options.leaf_max_num_images, o.clustering_options.image_overlap) == (40, 7)
    assert o.clustering_options.branching == 3 and o.num_workers == 2
    with pytest.raises(UserError, match="valid keys: .*clustering.leaf_max_num_images"):
        hierarchical_options(MapperConfig(mapper="hierarchical", pycolmap_options={"clustering.leaf": 3}))
