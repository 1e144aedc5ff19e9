"""Pictures of a calibration: detected corners, per-view errors, sensor coverage, lens distortion.

:func:`plot_mono` and :func:`plot_stereo` write one PNG each (matplotlib, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from recon3d import geometry
from recon3d.calibrate.common import coverage, project_board
from recon3d.geometry.camera import Camera

if TYPE_CHECKING:
    from recon3d.calibrate.common import CalibrationConfig, MonoResult, StereoResult

CELLS = (8, 6)
"""The sensor grid the coverage fraction counts."""


def _short(name: str) -> str:
    return Path(name).name


def _show_view(ax, result: "MonoResult", config: "CalibrationConfig", index: int) -> None:

    d = result.detections[index]
    img = cv2.imread(d.image, cv2.IMREAD_GRAYSCALE)
    W, H = d.size
    if img is not None:
        ax.imshow(img, cmap="gray", extent=(0, W, H, 0), interpolation="lanczos" if max(W, H) < 2000 else "antialiased")
    c = d.corners
    ax.plot(c[:, 0], c[:, 1], "o", mfc="none", mec="lime", ms=5, mew=1.0, label="detected")
    if index in result.poses:
        proj = project_board(result.camera, result.poses[index], d.object_points(config.board))
        ax.plot(proj[:, 0], proj[:, 1], "+", color="red", ms=6, mew=1.0, label="reprojected")
    ax.plot(c[:1, 0], c[:1, 1], "s", mfc="none", mec="yellow", ms=9, mew=1.5, label="corner 0")
    if len(c) > 1 and not config.board.charuco:
        cols = config.board.corner_grid[0]
        ax.annotate("", xy=c[min(cols - 1, len(c) - 1)], xytext=c[0], arrowprops=dict(arrowstyle="->", color="yellow"))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_title(f"{_short(d.image)}: {len(c)} corners, {result.view_rms[index]:.3f} px RMS", fontsize=10)
    ax.legend(loc="lower right", fontsize=7, framealpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])


def _error_bars(ax, names: list[str], errors: np.ndarray, used: np.ndarray, found: np.ndarray, rms: float,
                title: str, extra: np.ndarray | None = None, extra_label: str = "") -> None:
    n = len(names)
    x = np.arange(n)
    width = 0.4 if extra is not None else 0.8
    off = -width / 2 if extra is not None else 0.0
    e = np.nan_to_num(errors)
    ax.bar(x[used] + off, e[used], width, color="tab:blue", label="used")
    dropped = found & ~used
    if dropped.any():
        ax.bar(x[dropped] + off, e[dropped], width, color="tab:orange", label="dropped (far above the rest)")
    if extra is not None:
        ax.bar(x[found] + width / 2, np.nan_to_num(extra[found]), width, color="tab:green", label=extra_label)
    missing = ~found
    if missing.any():
        ax.plot(x[missing], np.zeros(missing.sum()), "x", color="tab:red", ms=8, mew=2, label="board not found")
    ax.axhline(rms, color="k", ls="--", lw=1, label=f"overall RMS {rms:.3f} px")
    ax.set_ylabel("RMS reprojection error (px)")
    ax.set_title(title, fontsize=10)
    if n <= 30:
        ax.set_xticks(x)
        ax.set_xticklabels([_short(s) for s in names], rotation=70, fontsize=6)
    else:
        ax.set_xlabel("view")
    ax.legend(fontsize=7)


def _coverage(ax, points: list[np.ndarray], size: tuple[int, int], title: str) -> None:

    W, H = size
    allp = np.concatenate(points) if points else np.zeros((0, 2))
    cw, ch = W / CELLS[0], H / CELLS[1]
    if len(allp):
        cx = np.clip((allp[:, 0] / cw).astype(int), 0, CELLS[0] - 1)
        cy = np.clip((allp[:, 1] / ch).astype(int), 0, CELLS[1] - 1)
        hit = set(zip(cx.tolist(), cy.tolist()))
    else:
        hit = set()
    for i in range(CELLS[0]):
        for j in range(CELLS[1]):
            if (i, j) not in hit:
                ax.add_patch(Rectangle((i * cw, j * ch), cw, ch, color="tab:red", alpha=0.18, lw=0))
    colors = [cv2.applyColorMap(np.uint8([[int(255 * k / max(1, len(points) - 1))]]), cv2.COLORMAP_TURBO)[0, 0, ::-1] / 255
              for k in range(len(points))]
    for p, col in zip(points, colors):
        ax.plot(p[:, 0], p[:, 1], ".", ms=2.5, color=col)
    ax.add_patch(Rectangle((0, 0), W, H, fill=False, color="k", lw=1))
    ax.set_xlim(-0.02 * W, 1.02 * W)
    ax.set_ylim(1.02 * H, -0.02 * H)
    ax.set_aspect("equal")
    ax.set_title(f"{title}: {coverage(allp, size, CELLS):.0%} of the sensor's {CELLS[0]}x{CELLS[1]} cells "
                 "(red: none)", fontsize=10)


def _distortion(ax, camera: Camera, points: np.ndarray | None = None) -> None:
    W, H = camera.width, camera.height
    gx, gy = np.meshgrid(np.linspace(0, W, 33), np.linspace(0, H, 25))
    pix = np.stack([gx.ravel(), gy.ravel()], 1)
    shift = geometry.pixels_from_cam(camera.K, camera.rays(pix)) - pix
    mag = np.linalg.norm(shift, axis=1).reshape(gx.shape)
    cs = ax.contourf(gx, gy, mag, levels=12, cmap="viridis")
    ax.figure.colorbar(cs, ax=ax, shrink=0.8, label="px")
    step = 4
    ax.quiver(gx[::step, ::step], gy[::step, ::step], shift.reshape(*gx.shape, 2)[::step, ::step, 0],
              shift.reshape(*gx.shape, 2)[::step, ::step, 1], color="w", angles="xy")
    if points is not None and len(points) >= 3:
        hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
        hull = np.concatenate([hull, hull[:1]])
        ax.plot(hull[:, 0], hull[:, 1], "--", color="orange", lw=1.5, label="extent of the corners (fit region)")
        ax.legend(loc="lower right", fontsize=7, framealpha=0.7)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_aspect("equal")
    ax.set_title(f"lens distortion ({camera.model}): pixel shift to undistort, max {mag.max():.1f} px", fontsize=10)


def plot_mono(result: "MonoResult", config: "CalibrationConfig", path: Path) -> Path:
    """Write the mono calibration picture: a view with corners, per-view errors, coverage, distortion."""
    fig = Figure(figsize=(13, 9.5), dpi=90)
    axes = fig.subplots(2, 2)
    used = np.flatnonzero(result.used)
    _show_view(axes[0, 0], result, config, int(used[0]))
    found = np.array([d.found for d in result.detections])
    _error_bars(axes[0, 1], [d.image for d in result.detections], result.view_rms, result.used, found, result.rms,
                f"per-view error ({len(used)} of {len(found)} views used)")
    _coverage(axes[1, 0], [result.detections[i].corners for i in used], result.detections[used[0]].size,
              "corners of the used views")
    _distortion(axes[1, 1], result.camera, np.concatenate([result.detections[i].corners for i in used]))
    cam = result.camera
    fig.suptitle(f"{config.board.describe()} | fx {cam.K[0, 0]:.1f} fy {cam.K[1, 1]:.1f} cx {cam.K[0, 2]:.1f} "
                 f"cy {cam.K[1, 2]:.1f} | RMS {result.rms:.3f} px", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_stereo(result: "StereoResult", config: "CalibrationConfig", path: Path) -> Path:
    """Write the stereo picture: a rectified pair with epipolar lines, per-pair errors, coverage of both cameras."""
    rig, rect = result.rig, result.rect
    fig = Figure(figsize=(13, 9.5), dpi=90)
    gs = fig.add_gridspec(2, 2)
    ax = fig.add_subplot(gs[0, 0])
    used = [k for k, p in enumerate(result.pairs) if p["used"]]
    k = used[0]
    maps = rig.rectify_maps(rect)
    imgs = []
    for name, (m1, m2) in zip((result.pairs[k]["left"], result.pairs[k]["right"]), maps):
        img = cv2.imread(name, cv2.IMREAD_GRAYSCALE)
        imgs.append(cv2.remap(img, m1, m2, cv2.INTER_LINEAR) if img is not None else np.zeros(m1.shape, np.uint8))
    W, H = rig.left.width, rig.left.height
    ax.imshow(np.concatenate(imgs, axis=1), cmap="gray", extent=(0, 2 * W, H, 0))
    for y in np.linspace(0, H, 13)[1:-1]:
        ax.axhline(y, color="lime", lw=0.6)
    ax.set_xlim(0, 2 * W)
    ax.set_ylim(H, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"rectified pair {_short(result.pairs[k]['left'])}: matching rows lie on the lines", fontsize=10)
    ax2 = fig.add_subplot(gs[0, 1])
    names = [p["left"] for p in result.pairs]
    rms = np.array([np.nan if p["rms_px"] is None else p["rms_px"] for p in result.pairs])
    epi = np.array([np.nan if p["epipolar_px"] is None else p["epipolar_px"] for p in result.pairs])
    found = np.array([p["found"] for p in result.pairs])
    usedm = np.array([p["used"] for p in result.pairs])
    _error_bars(ax2, names, rms, usedm, found, result.rms,
                f"per-pair error ({len(used)} of {len(names)} pairs used)", extra=epi,
                extra_label=f"vertical disparity after rectification (RMS {result.epipolar_rms:.3f} px)")
    _coverage(fig.add_subplot(gs[1, 0]), [result.left.detections[i].corners for i in np.flatnonzero(result.left.used)],
              (W, H), "left corners")
    _coverage(fig.add_subplot(gs[1, 1]), [result.right.detections[i].corners for i in np.flatnonzero(result.right.used)],
              (W, H), "right corners")
    fig.suptitle(f"stereo rig | baseline {rig.baseline * 1000:.2f} mm | RMS {result.rms:.3f} px | "
                 f"rectified vertical error {result.epipolar_rms:.3f} px", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
