"""Every config field states its valid range once (``option(min=, max=)``), and every stage checks it first.

Table-driven fuzz over the fields of every stage's config: a value just outside each bound (one
side per field drawn by a seeded coin where a field has two), given with ``--set`` to the
stage's command (in-process), exits 2 with one line naming the field, and writes nothing. The
Python entry points check a config built in code the same way (:func:`recon3d.core.config.validate`).
"""

from __future__ import annotations

import dataclasses
import random
import typing
from pathlib import Path

import pytest

from recon3d.calibrate.config import CalibrationConfig
from recon3d.calibrate.undistort import UndistortConfig
from recon3d.cli import main
from recon3d.core.config import validate
from recon3d.core.errors import UserError
from recon3d.nerf.config import NerfConfig
from recon3d.scenes import scene_workspace
from recon3d.sfm.config import SfmConfig
from recon3d.sfm.frames import FramesConfig
from recon3d.splat.config import SplatConfig
from recon3d.stereo.config import FusionConfig, PairConfig


def ranged_fields(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, typing.Any]]:
    """``(dotted name, field, default)`` of every field with a ``min`` or ``max``, nested sections too."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += ranged_fields(tp, prefix + f.name + ".")
        elif "min" in f.metadata or "max" in f.metadata:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append((prefix + f.name, f, default))
    return out


def outside(f: dataclasses.Field, default, rng: random.Random):
    """A value just outside the range of ``f`` (a list field: its default with one bad entry)."""
    sides = [s for s in ("min", "max") if s in f.metadata]
    side = rng.choice(sides)
    bound = f.metadata[side]
    sample = default[0] if isinstance(default, list) else default
    if isinstance(sample, int) and not isinstance(sample, bool):
        bad = bound - 1 if side == "min" else bound + 1
    else:
        step = max(abs(bound) * 1e-3, 1e-3)
        bad = bound - step if side == "min" else bound + step
    return [bad, *default[1:]] if isinstance(default, list) else bad


STAGES = {  # config class -> how its command is run (IN: an input, OUT: where it would write)
    SplatConfig: ["train", "{ws}", "--method", "splat-fast", "--device", "cpu"],
    NerfConfig: ["train", "{ws}", "--method", "nerf-fast", "--device", "cpu"],
    SfmConfig: ["sfm", "{images}", "-o", "{out}"],
    PairConfig: ["stereo", "{image}", "{image2}", "--rectified", "-o", "{out}"],
    FusionConfig: ["stereo", "{ws}"],
    CalibrationConfig: ["calibrate", "{images}", "--board", "9x6", "-o", "{out}/camera.json"],
    UndistortConfig: ["undistort", "{images}", "--camera", "{images}/camera.json", "-o", "{out}"],
    FramesConfig: ["frames", "{images}/clip.mp4", "-o", "{out}"],
}
CASES = [(cls, name) for cls in STAGES for name, _, _ in ranged_fields(cls)]


def test_every_stage_states_ranges():
    counts = {cls.__name__: len(ranged_fields(cls)) for cls in STAGES}
    assert min(counts.values()) >= 1, counts
    assert counts["SplatConfig"] >= 40 and counts["NerfConfig"] >= 35, counts
    for cls in STAGES:  # the defaults (and the presets) lie inside the ranges
        validate(cls())
    from recon3d.core import registry

    for method in registry.METHODS:
        validate(registry.make_config(method))


@pytest.fixture(scope="module")
def inputs(orbit_scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("ranges")
    ws = scene_workspace(orbit_scene, root / "ws")
    images = sorted(ws.images.iterdir())
    return {"ws": ws.root, "images": ws.images, "image": images[0], "image2": images[1], "out": root / "out"}


def test_out_of_range_values_on_the_command_line(inputs, capsys):
    """All fields of all stages: exit 2, one line naming the field, nothing written."""
    rng = random.Random(1234)
    before = sorted(p.relative_to(inputs["ws"]) for p in Path(inputs["ws"]).rglob("*"))
    failures = []
    for cls, name in CASES:
        f, default = next((f, d) for n, f, d in ranged_fields(cls) if n == name)
        bad = outside(f, default, rng)
        argv = [a.format(**inputs) for a in STAGES[cls]] + ["--set", f"{name}={bad}"]
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        if rc != 2 or len(err.splitlines()) != 1 or name not in err or "out of range" not in err:
            failures.append(f"{cls.__name__}.{name}={bad}: rc {rc}, {err!r}")
    assert not failures, "\n".join(failures)
    assert not inputs["out"].exists()
    assert sorted(p.relative_to(inputs["ws"]) for p in Path(inputs["ws"]).rglob("*")) == before
    assert len(CASES) > 100


@pytest.mark.parametrize("argv, field", [
    (["--steps", "-5"], "steps: -5"), (["--steps", "0"], "steps: 0"), (["--set", "steps=-3"], "steps: -3"),
    (["--set", "lr_means=-1"], "lr_means: -1"), (["--set", "background=[0, 0, 2]"], "background[2]: 2"),
    (["--set", "ssim_lambda=.nan"], "ssim_lambda: nan"),
])
def test_splat_train_numbers_from_the_issue(inputs, capsys, argv, field):
    rc = main(["train", str(inputs["ws"]), "--method", "splat-fast", "--device", "cpu", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and field in err, err
    assert not (Path(inputs["ws"]) / "splat").exists()


def test_stage_functions_validate_a_config_built_in_python(inputs, tmp_path):
    """Each stage's Python entry point checks the config before any work, naming the field."""
    from recon3d.calibrate.mono import calibrate_mono
    from recon3d.calibrate.stereo import calibrate_stereo
    from recon3d.calibrate.undistort import undistort_images
    from recon3d.core.workspace import Workspace
    from recon3d.nerf.train import train as train_nerf
    from recon3d.sfm.frames import extract_frames
    from recon3d.sfm.pipeline import run_sfm
    from recon3d.splat.train import train as train_splat
    from recon3d.stereo.mvs import stereo_workspace
    from recon3d.stereo.pair import stereo_pairs

    ws = Workspace(inputs["ws"])
    out = tmp_path / "out"
    sgbm = dataclasses.replace(PairConfig().sgbm, block_size=0)
    calib = CalibrationConfig()
    calib.max_detect_size = 10  # changed after construction: no __post_init__ sees it
    calls = [
        ("steps: -5", lambda: train_splat(SplatConfig(steps=-5), ws)),
        ("lr_means: -1", lambda: train_splat(SplatConfig(lr_means=-1.0), ws)),
        ("steps: 0", lambda: train_nerf(NerfConfig(steps=0), ws)),
        ("proposal_samples[1]: 0", lambda: train_nerf(NerfConfig(proposal_samples=[8, 0]), ws)),
        ("mapping.min_tri_angle: -1", lambda: run_sfm(out, inputs["images"], dataclasses.replace(
            SfmConfig(), mapping=dataclasses.replace(SfmConfig().mapping, min_tri_angle=-1.0)))),
        ("sgbm.block_size: 0", lambda: stereo_pairs(inputs["image"], inputs["image2"], out,
                                                    PairConfig(sgbm=sgbm), rectified=True)),
        ("voxel_size: -1", lambda: stereo_workspace(FusionConfig(voxel_size=-1.0), ws)),
        ("max_detect_size: 10", lambda: calibrate_mono([inputs["images"]], calib, out / "camera.json")),
        ("max_detect_size: 10", lambda: calibrate_stereo([inputs["images"]], [inputs["images"]], calib,
                                                         out / "stereo.json")),
        ("jpeg_quality: 101", lambda: undistort_images([inputs["images"]], inputs["images"] / "camera.json", out,
                                                       UndistortConfig(jpeg_quality=101))),
        ("num_frames: 2", lambda: extract_frames(inputs["images"] / "clip.mp4", out, FramesConfig(num_frames=2))),
    ]
    for needle, call in calls:
        with pytest.raises(UserError) as info:
            call()
        assert needle in str(info.value) and "\n" not in str(info.value), (needle, str(info.value))
    assert not out.exists() and not ws.splat.exists() and not ws.nerf.exists() and not ws.stereo.exists()
