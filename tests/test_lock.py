"""One writer per workspace (WS/.recon3d.lock), and SIGTERM handled like Ctrl-C.

A second command writing a locked workspace stops at once (exit 2) naming the holder and writes
nothing; a lock left by a killed process is taken over with a note; `recon3d sfm` stopped by SIGTERM
exits 143 with one line and no native (glog) stack trace, and a rerun finishes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recon3d.cli import build_parser, main
from recon3d.core.errors import UserError
from recon3d.core.lock import LOCK_NAME
from recon3d.core.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO))
HOLDER = ("import sys\nfrom recon3d.core.workspace import Workspace\n"
          "with Workspace(sys.argv[1]).lock('recon3d sfm photos -o WS'):\n"
          "    print('held', flush=True)\n    sys.stdin.read()\n")


def _holder(ws: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws)], env=ENV, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def photos(orbit_scene, tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(10):
        shutil.copy(orbit_scene / "images" / f"view_{i:03d}.png", folder)
    return folder


def test_second_command_stops_naming_the_holder_and_writes_nothing(photos, tmp_path, capfd):
    ws = tmp_path / "ws"
    holder = _holder(ws)
    try:
        for argv in (["sfm", str(photos), "-o", str(ws)], ["run", str(photos), "-o", str(ws)],
                     ["train", str(ws)], ["eval", str(ws)], ["stereo", str(ws)],
                     ["import-nerfstudio", str(photos), "-o", str(ws)]):
            assert main(argv) == 2, argv
            err = capfd.readouterr().err.strip().splitlines()
            assert err == [f"recon3d {argv[0]}: error: {ws} is in use by `recon3d sfm photos -o WS` "
                           f"(pid {holder.pid}, since {err[0].split('since ')[1].split(')')[0]}); "
                           "wait for it to finish or stop it"], err
        assert sorted(p.name for p in ws.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not ws.exists()  # the holder made the folder for its lock only, and removed it
    assert main(["eval", str(ws)]) == 2 and "in use" not in capfd.readouterr().err


def test_lock_left_by_a_killed_process_is_taken_over(tmp_path, capfd):
    ws = tmp_path / "ws"
    ws.mkdir()
    holder = _holder(ws)
    holder.kill()
    holder.wait()
    assert (ws / LOCK_NAME).is_file()  # the file stays; the OS released the flock
    with Workspace(ws).lock("recon3d eval ws") as lock:
        assert lock.taken_over["pid"] == holder.pid
        assert f"pid {holder.pid}, no longer running" in lock.note
    assert not (ws / LOCK_NAME).exists()
    (ws / LOCK_NAME).write_text(f'{{"pid": {holder.pid}, "command": "recon3d sfm x -o ws"}}')
    assert main(["eval", str(ws)]) == 2  # no model: its own error, after the note
    err = capfd.readouterr().err
    assert f"note: {ws}: took over the lock left by `recon3d sfm x -o ws` (pid {holder.pid}" in err


def test_lock_is_reentrant_within_a_process_and_leaves_nothing(tmp_path):
    root = tmp_path / "a" / "b" / "ws"
    with Workspace(root).lock("recon3d run -o ws") as outer:
        with Workspace(root).lock("recon3d sfm") as inner:  # recon3d.run -> its stages
            assert inner is outer
        assert (root / LOCK_NAME).is_file()
    assert not (tmp_path / "a").exists()  # folders made for the lock alone are removed
    (tmp_path / "file").write_text("x")
    with Workspace(tmp_path / "file").lock("x") as lock:  # not a folder: the command reports it
        assert lock is None


def test_which_commands_lock(tmp_path):
    parse = build_parser().parse_args
    ws = tmp_path / "ws"
    locked = {
        ("sfm", "p", "-o", str(ws)): ws, ("run", "-o", str(ws)): ws, ("train", str(ws), "--view"): ws,
        ("eval", str(ws)): ws, ("stereo", str(ws)): ws, ("stereo", "l.png", "r.png", "-o", "out"): None,
        ("export", str(ws), "--format", "splat-ply"): ws, ("export", str(ws), "--format", "splat", "-o", "x.splat"): None,
        ("render", str(ws), "--method", "nerf"): ws, ("render", str(ws), "--method", "nerf", "-o", "v.mp4"): None,
        ("import-nerfstudio", "data", "-o", str(ws)): ws, ("undistort", "p", "--camera", "c.json", "-o", str(ws)): ws,
        ("scene", "render", "orbit", "-o", str(ws)): ws, ("scene", "list"): None, ("view", str(ws)): None,
    }
    for argv, expected in locked.items():
        args = parse(list(argv))
        got = args.workspace_written(args) if args.workspace_written else None
        assert got == expected, argv


def test_pipeline_run_refuses_a_locked_workspace(tmp_path):
    import recon3d

    ws = tmp_path / "ws"
    holder = _holder(ws)
    try:
        with pytest.raises(UserError, match="in use by `recon3d sfm photos -o WS`"):
            recon3d.run(None, ws, train="none")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_sigterm_stops_sfm_cleanly_then_two_runs_at_once_leave_one_loadable_workspace(photos, tmp_path):
    from recon3d.io.colmap import read_model

    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "recon3d", "sfm", str(photos), "-o", str(ws)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (ws / "database.db").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # pycolmap imported, extraction under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "*** Aborted" not in err and "SIGTERM received" not in err and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "recon3d sfm: stopped (SIGTERM); rerun the same command to resume"
    assert not (ws / "reports" / "stages" / "sfm.json").exists() and not (ws / LOCK_NAME).exists()

    # two sfm at once (the rerun): one finishes, the other stops at once naming it
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.pid, p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=300)]]
    codes = sorted(r[1] for r in results)
    assert codes == [0, 2], [r[3][-1000:] for r in results]
    winner = next(r for r in results if r[1] == 0)
    loser = next(r for r in results if r[1] == 2)
    assert loser[3].strip() == (f"recon3d sfm: error: {ws} is in use by `recon3d sfm {photos} -o {ws}` "
                                f"(pid {winner[0]}, since {loser[3].split('since ')[1].split(')')[0]}); "
                                "wait for it to finish or stop it")
    assert len(read_model(ws / "sparse" / "0").images) == 10
    assert not (ws / LOCK_NAME).exists()


def test_interrupts_wait_for_the_end_of_a_deferred_block():
    """Training wraps each update in `interrupts_deferred`: a Ctrl-C arriving inside it is raised
    only once the update is complete, so the state left behind can be checkpointed."""
    import os
    import signal

    from recon3d.core.signals import interrupts_deferred

    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append(True)  # not cut short
    assert finished == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
