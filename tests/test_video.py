"""Video input: `recon3d frames`, and `recon3d run` / `sfm` on a clip (frames stage, then SfM).

The clips are the ``orbit`` scene rendered along a circle with exact poses (``helpers.video``),
written with OpenCV's mp4v encoder; the phone-style rotation is written into the mp4 the way phones
store it (the track's display matrix).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.video import (
    gt_of_frames,
    render_orbit_frames,
    set_mp4_rotation,
    write_clip,
)

from recon3d.cli import main
from recon3d.sfm.frames import select_frames

CLIP_FRAMES = 48
"""Frames of the rendered clip: one turn round the scene, 7.5 deg apart."""


@pytest.fixture(scope="module")
def orbit_frames(tmp_path_factory):
    """``(frames (N, H, W, 3) BGR, poses (N, 3, 4))`` of the orbit scene along a circle (cached in
    RECON3D_TEST_CACHE when set)."""
    cache = os.environ.get("RECON3D_TEST_CACHE")
    return render_orbit_frames(CLIP_FRAMES, Path(cache) if cache else tmp_path_factory.mktemp("clip"))


def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------- selection
class TestSelectFrames:
    def test_sharpest_frame_of_each_window(self):
        sharp = np.array([1, 5, 2, 2, 9, 1, 3, 3, 8], float)
        thumbs = np.arange(9, dtype=np.float32)[:, None, None] * np.full((1, 4, 4), 10, np.float32)
        sel = select_frames(sharp, thumbs, 3, blur_ratio=0.0, min_difference=0.0)
        assert sel.kept == [1, 4, 8] and sel.skipped == []

    def test_blurred_window_and_near_duplicate_are_skipped(self):
        sharp = np.array([100, 110, 10, 105, 98, 101], float)  # window 2 holds only a blurred frame
        thumbs = np.stack([np.full((4, 4), v, np.float32) for v in (0, 50, 100, 150, 150.5, 200)])
        sel = select_frames(sharp, thumbs, 6, blur_ratio=0.5, min_difference=1.0)
        assert sel.kept == [0, 1, 3, 5]
        reasons = dict(sel.skipped)
        assert reasons[2].startswith("blurred") and reasons[4].startswith("near-duplicate of frame 3")

    def test_short_clip_gives_every_frame(self):
        sel = select_frames(np.ones(4), np.arange(4, dtype=np.float32)[:, None, None] * 50 + np.zeros((1, 2, 2)), 150,
                            0.5, 1.0)
        assert sel.kept == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------- extraction
def test_blurred_and_held_frames_are_skipped(orbit_frames, tmp_path, capsys):
    frames, _ = orbit_frames
    frames = frames[:24].copy()
    blurred = {8, 9, 15}  # 8, 9: a whole window of two frames; 15: one of a window's two frames
    for i in blurred:
        frames[i] = cv2.GaussianBlur(frames[i], (0, 0), 4.0)
    frames[18:24] = frames[18]  # the camera stops: frames 18-23 are one picture
    clip = write_clip(tmp_path / "blurry.mp4", frames)
    out = tmp_path / "frames"
    assert main(["frames", str(clip), "-o", str(out), "--num-frames", "12"]) == 0
    report = json.loads((out / "frames.json").read_text())
    kept = [r["index"] for r in report["kept"]]
    skipped = {r["index"]: r["reason"] for r in report["skipped"]}
    assert not blurred & set(kept), kept
    assert skipped.get(8, skipped.get(9, "")).startswith("blurred"), report["skipped"]
    assert 14 in kept  # window (14, 15): the sharp one of the two
    held = [i for i in kept if i >= 18]
    assert len(held) == 1, kept  # one picture of the stop, the rest near-duplicates
    assert sum(r.startswith("near-duplicate") for r in skipped.values()) == 2
    assert sorted(p.name for p in out.glob("frame_*")) == sorted(f"frame_{i:06d}.jpg" for i in kept)
    assert all(abs(r["time"] - r["index"] / 30.0) < 1e-3 for r in report["kept"])
    assert "skipped 1 blurred, 2 near-duplicate" in capsys.readouterr().out


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_phone_clip_comes_out_upright(orbit_frames, tmp_path, rotation):
    frames, _ = orbit_frames
    upright = frames[:6]
    # the phone stores the picture turned the other way and the turn to undo it in the file
    undo = cv2.ROTATE_90_COUNTERCLOCKWISE if rotation == 90 else cv2.ROTATE_90_CLOCKWISE
    clip = write_clip(tmp_path / "phone.mp4", np.stack([cv2.rotate(f, undo) for f in upright]))
    set_mp4_rotation(clip, rotation)
    out = tmp_path / "frames"
    assert main(["frames", str(clip), "-o", str(out), "--num-frames", "3", "--frame-format", "png"]) == 0
    report = json.loads((out / "frames.json").read_text())
    assert report["rotation"] == rotation and (report["width"], report["height"]) == (320, 240)
    for row in report["kept"]:
        got = cv2.imread(str(out / row["file"])).astype(float)
        assert got.shape == upright[row["index"]].shape
        err = np.abs(got - upright[row["index"]]).mean()  # mp4v's noise: ~10 grey levels on this texture
        assert err < 15.0 and err < 0.5 * np.abs(got - upright[row["index"]][::-1, ::-1]).mean()  # not upside down
    # OpenCV's own rotation agrees
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, first = cap.read()
    cap.release()
    if ok and first.shape[:2] == (240, 320):
        ours = cv2.imread(str(out / report["kept"][0]["file"])) if report["kept"][0]["index"] == 0 else None
        if ours is not None:
            assert np.abs(first.astype(float) - ours).mean() < 1.0


# ---------------------------------------------------------------------------------- bad input
def test_bad_videos_are_one_line_exit_2(orbit_frames, tmp_path, capsys):
    frames, _ = orbit_frames
    good = write_clip(tmp_path / "good.mp4", frames[:12])
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 50)
    (tmp_path / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # mp4v puts the index last: nothing opens
    short = write_clip(tmp_path / "short.mp4", frames[:2])
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    cases = {"text.mp4": "not a video OpenCV can read", "empty.mp4": "not a video OpenCV can read",
             "cut.mp4": "not a video OpenCV can read", "missing.mp4": "no such file",
             "notes.txt": "not a video OpenCV can read"}
    for name, expect in cases.items():
        for cmd in (["frames", str(tmp_path / name), "-o", str(tmp_path / "f")],
                    ["sfm", str(tmp_path / name), "-o", str(tmp_path / "ws")]):
            err = _one_line_error(capsys, main(cmd))
            assert expect in err and name in err, (cmd, err)
    err = _one_line_error(capsys, main(["frames", str(short), "-o", str(tmp_path / "f")]))
    assert "only 2 frame(s) decode" in err
    err = _one_line_error(capsys, main(["run", str(short), "-o", str(tmp_path / "ws"), "--train", "none"]))
    assert "only 2 frame(s) decode" in err
    # --num-frames is range-checked by the config
    with pytest.raises(SystemExit) as exc:
        main(["frames", str(good), "-o", str(tmp_path / "f"), "--num-frames", "1"])
    assert exc.value.code == 2 and "between 3 and" in capsys.readouterr().err
    # an output folder with other files is not replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"x")
    err = _one_line_error(capsys, main(["frames", str(good), "-o", str(tmp_path / "mine")]))
    assert "holds other files" in err and (tmp_path / "mine" / "holiday.jpg").is_file()
    assert not (tmp_path / "f").exists() and not (tmp_path / "ws" / "sparse").exists()
    # in a fresh process nothing of FFmpeg's or OpenCV's own logging reaches the terminal
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "recon3d", "sfm", str(tmp_path / "cut.mp4"), "-o", str(tmp_path / "ws")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_truncated_video_with_index_first_is_one_line_exit_2(orbit_frames, tmp_path, capsys):
    """A clip whose index (``moov``) comes before the picture data, cut short: the index still opens,
    the frames it declares do not all decode."""
    frames, _ = orbit_frames
    data = write_clip(tmp_path / "good.mp4", frames[:20]).read_bytes()
    boxes, i = {}, 0
    while i < len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        boxes[data[i + 4:i + 8].decode("latin1")] = data[i:i + size]
        i += size
    if set(boxes) < {"ftyp", "moov", "mdat"}:
        pytest.skip("unexpected mp4 layout")
    # moov first: chunk offsets move by the size of moov; rewrite them (stco) so the file stays valid
    moov = bytearray(boxes["moov"])
    shift = len(boxes["moov"])
    j = moov.find(b"stco")
    count = int.from_bytes(moov[j + 8:j + 12], "big")
    for k in range(count):
        off = j + 12 + 4 * k
        moov[off:off + 4] = (int.from_bytes(moov[off:off + 4], "big") + shift).to_bytes(4, "big")
    head = b"".join(v for k, v in boxes.items() if k not in ("moov", "mdat"))
    full = head + bytes(moov) + boxes["mdat"]
    (tmp_path / "fast.mp4").write_bytes(full)
    assert main(["frames", str(tmp_path / "fast.mp4"), "-o", str(tmp_path / "ok"), "--num-frames", "5"]) == 0
    capsys.readouterr()
    (tmp_path / "cut.mp4").write_bytes(full[: len(head) + len(moov) + len(boxes["mdat"]) // 3])
    err = _one_line_error(capsys, main(["frames", str(tmp_path / "cut.mp4"), "-o", str(tmp_path / "f")]))
    assert "cut.mp4" in err and "of the 20 frames it declares decode" in err


# ---------------------------------------------------------------------------------- end to end
def test_run_on_a_rotated_phone_clip_registers_every_frame(orbit_frames, tmp_path, capsys):
    """The acceptance check: a clip of the orbit scene (stored turned, with the phone's rotation
    metadata) goes through `recon3d run clip.mp4 --train none`; every chosen frame registers, upright
    (a sideways frame would show as a 90 deg rotation error), within 0.2 deg of the path's poses."""
    from recon3d.evaluate.poses import evaluate_poses
    from recon3d.io.colmap import read_model

    frames, poses = orbit_frames
    clip = write_clip(tmp_path / "orbit.mp4", np.stack([cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in frames]))
    set_mp4_rotation(clip, 90)
    ws = tmp_path / "ws"
    assert main(["run", str(clip), "-o", str(ws), "--train", "none", "--num-frames", "24"]) == 0
    out = capsys.readouterr().out
    assert "frames: 24 of 48 frames kept" in out and "turned 90 deg" in out
    assert "sfm: 24/24 photos registered" in out, out
    report = json.loads((ws / "reports" / "frames.json").read_text())
    gt = gt_of_frames(ws / "reports" / "frames.json", poses)
    assert len(gt) == 24 and [r["index"] for r in report["kept"]] == sorted(r["index"] for r in report["kept"])
    est = {im.name: im.cam_from_world for im in read_model(ws / "sparse" / "0").images.values()}
    assert set(est) == set(gt)
    ev = evaluate_poses(est, gt)
    assert float(np.median(ev.rotation_deg)) < 0.2, ev.to_dict(per_image=False)
    sfm = json.loads((ws / "reports" / "sfm.json").read_text())
    assert sfm["config"]["matching"]["pairing"] == "sequential" and sfm["config"]["matching"]["loop_detection"]
    # a rerun skips every stage
    assert main(["run", str(clip), "-o", str(ws), "--train", "none", "--num-frames", "24"]) == 0
    out = capsys.readouterr().out
    assert "sfm: already done" in out and "frames: 24 of 48" in out
