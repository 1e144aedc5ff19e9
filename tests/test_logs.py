"""Logs for runs nobody watches, and output for scripts: progress lines off a terminal, the workspace
log file, training curves (log.jsonl, TensorBoard), --json, -q/-v and shell completion."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recon3d.cli import COMMANDS, main
from recon3d.core.log import SETTINGS, LineProgress, TrainLog, configure
from recon3d.scenes import scene_workspace

REPO = Path(__file__).resolve().parents[1]
# a short splat-cpu run: orbit at 80 x 60, true poses; a curve point every 5 steps
TRAIN = ["--method", "splat-cpu", "--device", "cpu"] + [x for s in [
    "max_image_side=80", "log_every=5", "report_views=0", "checkpoint_every=20"] for x in ("--set", s)]
PROGRESS = re.compile(r"^\[\d\d:\d\d:\d\d\] splat: step (\d+)/(\d+) \(\d+%\)  loss [\d.]+  psnr [\d.]+  "
                      r"gaussians \d+ \| [\d.e+]+ step/s, (ETA \d+s|done in \d+s)$")


def cli(*args, **kw) -> subprocess.CompletedProcess:
    """`recon3d ARGS` with stdout and stderr redirected (not a terminal), as under nohup or in CI."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "recon3d", *map(str, args)], capture_output=True, text=True,
                          env=env, **kw)


def steps_of(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(orbit_scene, tmp_path_factory):
    """Train 40 steps (--json, a progress line every 0.05 s: the run may take under a second), then on to 60 (-q, TensorBoard when installed)."""
    ws = scene_workspace(orbit_scene, tmp_path_factory.mktemp("logs") / "ws")
    first = cli("train", ws.root, *TRAIN, "--steps", "40", "--log-every", "0.05", "--json")
    assert first.returncode == 0, first.stderr
    curve_after_first = steps_of(ws.splat / "log.jsonl")
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    second = cli("train", ws.root, *TRAIN, "--steps", "60", "-q", *(["--log", "tensorboard"] if tensorboard else []))
    assert second.returncode == 0, second.stderr
    return ws, first, second, curve_after_first


def test_training_off_a_terminal_prints_progress_lines(trained):
    """Redirected output gets a line every --log-every seconds with step, loss, PSNR, Gaussians, speed, ETA."""
    _, first, _, _ = trained
    lines = [ln for ln in first.stderr.splitlines() if PROGRESS.match(ln)]
    assert len(lines) >= 2, first.stderr  # at least one along the way, and the last one
    steps = [int(PROGRESS.match(ln).group(1)) for ln in lines]
    assert steps == sorted(steps) and steps[-1] == 40 and all(PROGRESS.match(ln).group(2) == "40" for ln in lines)
    assert "ETA" in lines[0] and "done in" in lines[-1]
    assert "\r" not in first.stderr  # no terminal bar in a file


def test_train_json_is_the_only_stdout(trained):
    ws, first, _, _ = trained
    result = json.loads(first.stdout)  # exactly one JSON document: anything else would fail to parse
    assert result["command"] == "train" and result["method"] == "splat-cpu" and result["exit_code"] == 0
    assert result["outputs"]["ply"] == str(ws.splat / "point_cloud.ply") and not result["skipped"]
    metrics = result["reports"]["metrics"]  # splat/metrics.json as this run wrote it
    assert metrics["steps"] == 40 and metrics["psnr"] > 10 and "test PSNR" in result["summary"]


def test_log_jsonl_has_the_curve_appended_on_resume(trained):
    ws, _, _, after_first = trained
    assert after_first == list(range(5, 45, 5))
    rows = [json.loads(line) for line in (ws.splat / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(5, 65, 5))  # trained on from 40: appended, no step twice
    assert all(r["loss"] > 0 and r["num_gaussians"] > 0 for r in rows)
    assert sum(r["loss"] for r in rows[-3:]) < sum(r["loss"] for r in rows[:3])  # it learns


def test_quiet_prints_only_the_final_line(trained):
    _, first, second, _ = trained
    assert len(second.stdout.strip().splitlines()) == 1 and second.stdout.startswith("splat: done | steps 60 ")
    assert not PROGRESS.search(second.stderr) and "resuming" not in second.stderr


def test_workspace_log_file_keeps_every_command(trained):
    ws, _, _, _ = trained
    text = (ws.root / "recon3d.log").read_text()
    assert text.count("==== recon3d train") == 2 and "--steps 40" in text and "--steps 60" in text
    assert re.search(r"splat: step \d+/40 .* ETA", text) and "splat: done" in text
    assert "resuming from step_0000040.pt" in text  # notes hidden by -q still go to the file


def test_tensorboard_events_hold_the_curve(trained):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ws, _, _, _ = trained
    acc = EventAccumulator(str(ws.splat / "tensorboard"))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"] and "train/psnr" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("train/loss")] == [45, 50, 55, 60]  # the run that asked for it
    jsonl = {r["step"]: r["loss"] for r in map(json.loads, (ws.splat / "log.jsonl").read_text().splitlines())}
    assert all(e.value == pytest.approx(jsonl[e.step], rel=1e-5) for e in acc.Scalars("train/loss"))


def test_tensorboard_missing_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    assert main(["train", str(tmp_path), "--log", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorboard" in err[0] and err[0].startswith("recon3d train: error:")


def test_export_json(trained, tmp_path):
    ws, _, _, _ = trained
    res = cli("export", ws.root, "--format", "splat", "-o", tmp_path / "scene.splat", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"command": "export", "format": "splat", "path": str(tmp_path / "scene.splat"),
                                      "exit_code": 0}
    assert (tmp_path / "scene.splat").stat().st_size > 0


# ------------------------------------------------------------------------------ sfm, scene list
def test_sfm_json_quiet_and_stage_progress_lines(orbit_scene, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        shutil.copy(orbit_scene / "images" / f"view_{i:03d}.png", photos)
    ws = tmp_path / "ws"
    res = cli("sfm", photos, "-o", ws, "--max-image-size", "320", "--json", "--log-every", "0.2")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["command"] == "sfm" and result["data"]["registered"] == 6
    assert result["reports"]["report"]["registered"] == 6 and result["outputs"]["model"] == str(ws / "sparse" / "0")
    stage_lines = re.findall(r"^\[[\d:]+\] (extracting features|matching \(\w+\)|mapping \(\w+\)): .*/s",
                             res.stderr, re.M)
    assert stage_lines, res.stderr  # every long stage reports the same way
    loud, quiet = cli("sfm", photos, "-o", ws, "--max-image-size", "320"), cli("sfm", photos, "-o", ws,
                                                                               "--max-image-size", "320", "-q")
    assert loud.returncode == quiet.returncode == 0
    assert len(quiet.stdout.strip().splitlines()) == 1 < len(loud.stdout.strip().splitlines())
    assert "6/6 photos registered" in quiet.stdout


def test_scene_list_json():
    res = cli("scene", "list", "--json")
    assert res.returncode == 0 and res.stderr == ""
    scenes = {s["name"]: s for s in json.loads(res.stdout)["scenes"]}
    assert {"orbit", "facade", "stereo", "checkerboard"} <= set(scenes) and scenes["orbit"]["kind"] == "multiview"


def test_json_error_is_one_object_and_one_stderr_line(tmp_path):
    res = cli("train", tmp_path / "missing", "--json")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    out = json.loads(res.stdout)
    assert out["exit_code"] == 2 and "missing" in out["error"] and out["command"] == "train"


def test_every_command_takes_quiet_verbose_and_log_every():
    from recon3d.cli import build_parser
    from recon3d.cli.output import JSON_COMMANDS

    def subparsers(parser):
        return next(a.choices for a in parser._actions if isinstance(getattr(a, "choices", None), dict))

    for name, sub in subparsers(build_parser()).items():
        parsers = subparsers(sub).values() if name == "scene" else [sub]
        for p in parsers:
            flags = {s for a in p._actions for s in a.option_strings}
            assert {"-q", "--quiet", "-v", "--verbose", "--log-every"} <= flags, name
            assert ("--json" in flags) == (name in JSON_COMMANDS or name in ("eval", "epipolar", "eval-stereo"))
            assert ("--log" in flags) == (name in ("train", "run")), name


# ------------------------------------------------------------------------------ completion
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script(shell, tmp_path):
    res = cli("completion", shell)
    assert res.returncode == 0, res.stderr
    for name, _, _ in COMMANDS:
        assert re.search(rf"\b{re.escape(name)}\b", res.stdout), name
    script = tmp_path / "recon3d.sh"
    script.write_text(res.stdout)
    if shell == "bash":
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        probe = ('source "$1"; COMP_WORDS=(recon3d train ws --method ""); COMP_CWORD=4; _recon3d; '
                 'echo "${COMPREPLY[*]}"; COMP_WORDS=(recon3d ex); COMP_CWORD=1; _recon3d; echo "${COMPREPLY[*]}"')
        out = subprocess.run(["bash", "-c", probe, "-", str(script)], capture_output=True, text=True).stdout
        methods, commands = out.splitlines()
        assert "splat-cpu" in methods.split() and "nerf" in methods.split()
        assert commands.split() == ["export"]
    else:
        assert res.stdout.startswith("#compdef recon3d") and "bashcompinit" in res.stdout


# ------------------------------------------------------------------------------ the pieces
def test_line_progress_reports_every_interval(capsys):
    every = SETTINGS.every
    configure(every=0.05)
    try:
        bar = LineProgress(range(6), desc="work", unit="step", total=6, echo=True)
        for _ in bar:
            bar.set_postfix(loss="0.5")
            time.sleep(0.03)
    finally:
        configure(every=every)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(re.match(r"\[[\d:]+\] work: step \d/6 \(\d+%\)", ln) for ln in lines)
    assert "loss 0.5" in lines[-1] and lines[-1].split("] ")[1].startswith("work: step 6/6 (100%)")
    assert "done in" in lines[-1] and any("ETA" in ln for ln in lines[:-1])



def test_line_progress_ticks_never_cross_the_final_line(capsys):
    """The timer thread's lines and the final one never share a line or come after it, even with a
    tick due at every moment (CI saw a tick and the final line interleaved under load)."""
    every = SETTINGS.every
    configure(every=1e-4)
    try:
        for _ in range(40):
            bar = LineProgress(range(50), desc="work", unit="step", total=50, echo=True)
            for _ in bar:
                time.sleep(1e-4)
    finally:
        configure(every=every)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(re.fullmatch(r"\[[\d:]+\] work: step \d+/50 \(\d+%\) \| [^\[]*", ln) for ln in lines)
    runs, run = [], []
    for ln in lines:
        run.append(int(re.search(r"step (\d+)/", ln).group(1)))
        if "done in" in ln:
            runs.append(run)
            run = []
    assert run == [] and all(r == sorted(r) and r[-1] == 50 for r in runs)

def test_train_log_drops_steps_past_the_resumed_checkpoint(tmp_path):
    with TrainLog(tmp_path, 0) as log:
        for step in (10, 20, 30, 40):
            log.log(step, {"loss": 1.0 / step})
    with open(tmp_path / "log.jsonl", "a") as fh:
        fh.write('{"step": 50, "lo')  # cut by a kill
    with TrainLog(tmp_path, 20) as log:  # resumed from the checkpoint at step 20
        log.log(20, {"loss": 9.0})  # already there: ignored
        log.log(30, {"loss": 0.5})
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30] and rows[-1]["loss"] == 0.5 and rows[1]["loss"] == 0.05
    TrainLog(tmp_path, 0).close()  # a fresh run starts the curve anew
    assert (tmp_path / "log.jsonl").read_text() == ""
