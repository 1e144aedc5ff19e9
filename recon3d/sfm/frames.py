"""Video in: pick sharp, distinct frames of a clip for structure from motion.

:func:`frames_stage` is the ``frames`` stage of ``recon3d run clip.mp4`` and ``recon3d sfm clip.mp4``;
:func:`extract_frames` alone is ``recon3d frames clip.mp4 -o frames/``::

    clip --decode (upright)--> sharpness + thumbnail of every frame
         --select--> WS/frames/frame_NNNNNN.jpg (NNNNNN: the frame index) + frames.json
         --ingest (hard links)--> WS/images, then SfM with sequential matching and loop detection

Selection (:func:`select_frames`): the clip is split into ``num_frames`` windows of equal length and
the sharpest frame of each (variance of the Laplacian) is its candidate. A candidate much blurrier
than those of the windows around it (under ``blur_ratio`` times their median) is skipped as
blurred: a relative test, because the Laplacian's variance depends on the scene as much as on
blur. A candidate that hardly differs from the last frame kept (mean absolute difference of small
grey thumbnails under ``min_difference`` grey levels: the camera stood still) is skipped as a
near-duplicate. ``frames.json`` lists every candidate with its frame index, time in seconds and
sharpness, and for each skipped one the reason.

The frames go to ``WS/frames`` first and SfM ingests them into ``WS/images`` like any photo folder,
so a failed reconstruction leaves a workspace that held other photos as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from recon3d.core.config import option, to_dict, validate
from recon3d.core.errors import UserError
from recon3d.core.workspace import StageResult, Workspace

MIN_FRAMES = 3
"""Fewest frames a reconstruction can use (the smallest model SfM keeps)."""

NEIGHBOR_WINDOWS = 3
"""The blur test compares a window's candidate with those of this many windows on each side."""

THUMB_SIZE = 64
"""Longest side of the grey thumbnails the near-duplicate test compares, pixels."""

SHARPNESS_SIZE = 1280
"""Frames are measured for sharpness at most this large (longest side, pixels)."""

FRAMES_REPORT = "frames.json"


@dataclass
class FramesConfig:
    """Frame selection from a video (``recon3d frames``, and ``recon3d run`` / ``sfm`` given a video)."""

    num_frames: int = option(150, flag="--num-frames", min=MIN_FRAMES, max=100000)
    """About how many frames to take from a video, spread evenly over it (at least 3); fewer when
    blurred or near-duplicate frames are skipped, or the clip is shorter."""
    blur_ratio: float = option(0.5, flag="--blur-ratio", min=0.0, max=1.0)
    """Skip a frame as blurred when its sharpness (variance of the Laplacian) is under this fraction of
    the median of the nearby frames' (0 to 1; 0 keeps every frame)."""
    min_difference: float = option(1.0, flag="--min-frame-difference", min=0.0, max=255.0)
    """Skip a frame as a near-duplicate when it differs from the last frame kept by less than this
    mean absolute difference, in grey levels (0 to 255) of small thumbnails (0 keeps every frame)."""
    image_format: Literal["jpg", "png"] = option("jpg", flag="--frame-format")
    """How chosen frames are written: 'jpg' (quality jpeg_quality) or 'png' (lossless, larger)."""
    jpeg_quality: int = option(95, flag="--jpeg-quality", min=50, max=100)
    """JPEG quality of the written frames (50 to 100)."""


@dataclass
class FrameSelection:
    """What :func:`select_frames` chose: indices into the clip's frames."""

    kept: list[int]
    """Frame indices kept, in order."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """(frame index, reason) of every window's candidate that was left out."""


# -------------------------------------------------------------------------------- measuring
def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image ``(H, W)`` uint8: higher is sharper."""
    import cv2

    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _measure(frame: np.ndarray) -> tuple[float, np.ndarray]:
    """(sharpness, grey thumbnail ``(h, w)`` float32) of a BGR frame ``(H, W, 3)``."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    s = min(1.0, SHARPNESS_SIZE / max(h, w))
    if s < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    t = THUMB_SIZE / max(h, w)
    thumb = cv2.resize(grey, (max(1, round(w * t)), max(1, round(h * t))), interpolation=cv2.INTER_AREA)
    return sharpness(grey), thumb.astype(np.float32)


# -------------------------------------------------------------------------------- selection
def select_frames(sharp: np.ndarray, thumbs: np.ndarray, num_frames: int, blur_ratio: float,
                  min_difference: float) -> FrameSelection:
    """Choose frames: the sharpest of each of ``num_frames`` equal windows, less blurred ones and near-duplicates.

    Args:
        sharp: ``(N,)`` sharpness of every frame (:func:`sharpness`).
        thumbs: ``(N, h, w)`` grey thumbnails, grey levels 0-255.
        num_frames: windows (at most ``N``).
        blur_ratio: a candidate under this fraction of the median candidate sharpness of the
            :data:`NEIGHBOR_WINDOWS` windows on each side is skipped as blurred.
        min_difference: a candidate whose thumbnail differs from the last kept one's by less
            (mean absolute grey-level difference) is skipped as a near-duplicate.
    Returns:
        :class:`FrameSelection`.
    """
    sharp = np.asarray(sharp, dtype=np.float64)
    n = len(sharp)
    k = max(1, min(int(num_frames), n))
    edges = np.round(np.linspace(0, n, k + 1)).astype(int)
    best = np.array([edges[i] + int(np.argmax(sharp[edges[i]:edges[i + 1]])) for i in range(k)])
    best_sharp = sharp[best]
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    for i, idx in enumerate(best):
        others = np.concatenate([best_sharp[max(0, i - NEIGHBOR_WINDOWS):i], best_sharp[i + 1:i + 1 + NEIGHBOR_WINDOWS]])
        ref = float(np.median(others)) if len(others) else 0.0
        if blur_ratio > 0 and ref > 0 and best_sharp[i] < blur_ratio * ref:
            skipped.append((int(idx), f"blurred (sharpness {best_sharp[i]:.1f}, {best_sharp[i] / ref:.2f} of the "
                                      f"nearby frames' median {ref:.1f})"))
            continue
        if kept and min_difference > 0:
            diff = float(np.mean(np.abs(thumbs[idx] - thumbs[kept[-1]])))
            if diff < min_difference:
                skipped.append((int(idx), f"near-duplicate of frame {kept[-1]} (mean difference {diff:.2f} "
                                          "grey levels; the camera stood still)"))
                continue
        kept.append(int(idx))
    return FrameSelection(kept, skipped)


def frame_name(index: int, image_format: str = "jpg") -> str:
    """The file name of frame ``index``: ``frame_000123.jpg``."""
    return f"frame_{index:06d}.{image_format}"


# ------------------------------------------------------------------------------- extraction
def extract_frames(video: Path | str, out: Path | str, config: FramesConfig | None = None,
                   progress: Callable | None = None) -> dict:
    """Choose frames of ``video`` and write them, with ``frames.json``, into folder ``out`` (replaced atomically).

    Args:
        video: the clip.
        out: output folder; created, or replaced when it holds only an earlier extraction.
        config: the selection settings.
        progress: optional tqdm-like wrapper.
    Returns:
        The report (the content of ``out/frames.json``). Raises :class:`UserError` (exit 2) when the
        file is not a readable video, seems truncated, or gives fewer than :data:`MIN_FRAMES` frames.
    """
    import cv2

    from recon3d.core.atomic import atomic_dir, atomic_write_json
    from recon3d.io.video import probe_video, read_frames

    config = validate(config or FramesConfig())
    out = Path(out)
    _check_output(out)
    info = probe_video(video)
    video = info.path
    wrap = progress or (lambda it, **kw: it)
    times, sharp, thumbs = [], [], []
    total = info.frame_count or None
    for index, t, frame in wrap(read_frames(info), desc="reading video", unit="frame", total=total):
        s, thumb = _measure(frame)
        times.append(t)
        sharp.append(s)
        thumbs.append(thumb)
    n = len(times)
    if n == 0:
        raise UserError(f"{video}: no frame decodes (empty or damaged video); give a video with picture frames")
    if info.frame_count and n < 0.9 * info.frame_count - 1:
        raise UserError(f"{video}: only {n} of the {info.frame_count} frames it declares decode (a truncated or "
                        "damaged file?); copy the video again from the camera, or re-encode it")
    if n < MIN_FRAMES:
        raise UserError(f"{video}: only {n} frame(s) decode; structure from motion needs at least {MIN_FRAMES} "
                        "frames of the scene from moving viewpoints")
    selection = select_frames(np.asarray(sharp), np.stack(thumbs), config.num_frames, config.blur_ratio,
                              config.min_difference)
    if len(selection.kept) < MIN_FRAMES:
        raise UserError(f"{video}: only {len(selection.kept)} usable frame(s) after skipping blurred and near-duplicate "
                        f"ones ({len(selection.skipped)} skipped); use a clip that moves around the scene, or lower "
                        "--blur-ratio / --min-frame-difference")
    wanted = set(selection.kept)
    params = ([cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality] if config.image_format == "jpg"
              else [cv2.IMWRITE_PNG_COMPRESSION, 3])
    written: set[int] = set()
    kept_rows = []
    with atomic_dir(out) as tmp:
        for index, t, frame in wrap(read_frames(info, wanted), desc="writing frames", unit="frame", total=n):
            if frame is None:
                continue
            name = frame_name(index, config.image_format)
            if not cv2.imwrite(str(tmp / name), frame, params):
                raise UserError(f"{out / name}: could not be written; check the disk and the folder's permissions")
            written.add(index)
            kept_rows.append({"index": index, "time": round(times[index], 6), "sharpness": round(sharp[index], 3),
                              "file": name})
        missing = sorted(wanted - written)
        if missing:
            raise UserError(f"{video}: frame {missing[0]} decoded once but not the second time (a damaged file?); "
                            "re-encode the video and try again")
        report = {
            "video": str(video),
            "width": info.width, "height": info.height, "fps": info.fps, "rotation": info.rotation,
            "frames_declared": info.frame_count, "frames_decoded": n,
            "duration": round(times[-1] + (1.0 / info.fps if info.fps > 0 else 0.0), 6),
            "config": to_dict(config),
            "kept": kept_rows,
            "skipped": [{"index": i, "time": round(times[i], 6), "sharpness": round(sharp[i], 3), "reason": r}
                        for i, r in selection.skipped],
        }
        atomic_write_json(tmp / FRAMES_REPORT, report)
    return report


def _check_output(out: Path) -> None:
    """A folder ``out`` may be replaced only when it is missing or holds an earlier extraction."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another output folder")
    if out.is_dir():
        others = [p.name for p in out.iterdir() if not (p.name == FRAMES_REPORT or p.name.startswith("frame_"))]
        if others:
            raise UserError(f"{out}: holds other files ({', '.join(sorted(others)[:3])}"
                            f"{', ...' if len(others) > 3 else ''}); choose a new or empty output folder")


def format_summary(report: dict, out: Path) -> str:
    """A few lines for a person about an extraction."""
    skipped = report["skipped"]
    blurred = sum(1 for s in skipped if s["reason"].startswith("blurred"))
    dup = len(skipped) - blurred
    rot = f", turned {report['rotation']} deg" if report.get("rotation") else ""
    return (f"frames: {len(report['kept'])} of {report['frames_decoded']} frames kept "
            f"({report['duration']:.1f} s, {report['width']}x{report['height']}{rot}); skipped {blurred} blurred, "
            f"{dup} near-duplicate -> {out}")


# ------------------------------------------------------------------------------------ stage
def frames_stage(ws: Workspace, video: Path | str, config: FramesConfig | None = None, overwrite: bool = False,
                 progress: Callable | None = None) -> StageResult:
    """The ``frames`` stage: choose frames of ``video`` into ``WS/frames`` and ``WS/reports/frames.json``.

    Skipped when it finished before for the same video (same bytes) and settings.

    Returns:
        :class:`StageResult` with outputs ``frames`` (the folder) and ``report``; ``data``: the report.
    """
    import json

    from recon3d.core.atomic import atomic_write_json
    from recon3d.sfm.images import sha1_file

    config = validate(config or FramesConfig())
    video = Path(video)
    if not video.is_file():
        raise UserError(f"{video}: no such file; give a video file or a folder of photos")
    ws.create()
    folder, report_path = ws.root / "frames", ws.reports / FRAMES_REPORT
    key = {"config": to_dict(config), "video": sha1_file(video)}

    def finished(_recorded: dict[str, Path]) -> bool:
        return report_path.is_file() and (folder / FRAMES_REPORT).is_file()

    with ws.stage("frames", key, overwrite, check=finished) as run:
        if run.skipped:
            report = json.loads(report_path.read_text())
            return StageResult({"frames": folder, "report": report_path}, skipped=True,
                               summary="frames: already chosen from this video with these settings\n"
                                       + format_summary(report, folder), data=report)
        report = extract_frames(video, folder, config, progress)
        atomic_write_json(report_path, report)
        run.outputs = {"frames": folder, "report": report_path}
    return StageResult({"frames": folder, "report": report_path}, summary=format_summary(report, folder), data=report)


def video_sfm_config(config):
    """The SfM config for video frames: with matching left on 'auto', sequential matching with loop detection."""
    import dataclasses

    if config.matching.pairing != "auto":
        return config
    matching = dataclasses.replace(config.matching, pairing="sequential", loop_detection=True)
    return dataclasses.replace(config, matching=matching)
