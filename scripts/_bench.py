"""Shared pieces of the benchmark scripts (``scripts/bench_*.py``): where things are, rendered scenes,
the LLFF fern cameras, and the Markdown (+ JSON) result files.

Importing it puts the repository root first on ``sys.path``, so a script run as
``python scripts/bench_x.py`` (from any folder) uses this checkout's ``recon3d``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------------------------ scenes
def cache_or(folder: Path) -> Path:
    """``$RECON3D_TEST_CACHE`` (where the tests keep their rendered scenes) when set, else ``folder``."""
    cache = os.environ.get("RECON3D_TEST_CACHE")
    return Path(cache) if cache else Path(folder)


def scene_dir(name: str, folder: Path) -> Path:
    """``folder/name`` holding the rendered shipped scene ``name``: rendered there first unless it
    already holds that spec (see :func:`recon3d.scenes.render_scene_cached`)."""
    from recon3d.scenes import load_spec, render_scene_cached

    root = Path(folder) / name
    render_scene_cached(load_spec(name), root)
    return root


# -------------------------------------------------------------------------------------- fern
def fern_cameras(fern: Path):
    """Image names, the shared pinhole :class:`~recon3d.camera.Camera` and ``(3, 4)`` cam_from_world
    poses of the LLFF fern set (``fern/images``, ``fern/gt/poses_bounds.npy``).

    ``poses_bounds.npy`` rows are a 3 x 5 matrix [c2w rotation with columns (down, right, backwards)
    | centre | (H, W, f) at 4032 x 3024] plus near/far bounds; the photos are 1/8 of that size, and
    the principal point is put at the image centre.
    """
    import cv2
    import numpy as np

    from recon3d.geometry.camera import Camera
    from recon3d.io.images import list_images

    names = [p.name for p in list_images(fern / "images")]
    pb = np.load(fern / "gt" / "poses_bounds.npy")
    if len(pb) != len(names):
        raise SystemExit(f"{fern}: {len(pb)} poses for {len(names)} images")
    h, w = cv2.imread(str(fern / "images" / names[0])).shape[:2]
    mats = pb[:, :15].reshape(-1, 3, 5)
    H, W, f = mats[0, :, 4]
    f = f * w / W
    camera = Camera(w, h, np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]]))
    poses = []
    for m in mats:
        R_c2w = np.stack([m[:, 1], m[:, 0], -m[:, 2]], 1)  # OpenCV axes (right, down, forward)
        C = m[:, 3]
        poses.append(np.hstack([R_c2w.T, (-R_c2w.T @ C)[:, None]]))
    return names, camera, poses


# ----------------------------------------------------------------------------------- results
def md_table(header: list[str], rows) -> list[str]:
    """Lines of a Markdown table: the header, its rule and one line per row (cells as ``str``)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def psnr_history(evals: list[dict]) -> list[str]:
    """Lines of the "held-out PSNR over training time" table of the training history entries ``evals``
    (each with ``step``, ``seconds`` of training and ``test_psnr``)."""
    return ["Held-out PSNR over training time (evaluation time excluded):", ""] + md_table(
        ["step", "train s", "held-out PSNR dB"],
        [(h["step"], f"{h['seconds']:.0f}", f"{h['test_psnr']:.2f}") for h in evals])


def write_report(md: Path, lines: list[str], data=None) -> str:
    """Write ``lines`` as the Markdown file ``md`` (ending in one newline) and, when given, ``data`` as
    JSON beside it (``md`` with suffix ``.json``); print the Markdown and return it."""
    text = "\n".join(lines).rstrip("\n") + "\n"
    md = Path(md)
    md.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        md.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    md.write_text(text)
    print(text, end="")
    return text
