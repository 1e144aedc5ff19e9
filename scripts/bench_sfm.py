"""Benchmark recon3d's SfM against the COLMAP command line on the same photos, in one run.

  python scripts/bench_sfm.py                      # orbit (synthetic), temple_ring, herzjesu_p8
  python scripts/bench_sfm.py --sets orbit temple_ring --out /tmp/bench
  python scripts/bench_sfm.py --sets sparse_ring lowtex narrow          # the registration scenes
  python scripts/bench_sfm.py --sets temple_ring_2 temple_ring_3        # every 2nd / 3rd temple view

For each set both pipelines start from the same photos with the same camera model (one shared
SIMPLE_RADIAL camera), CPU SIFT at the same max image size (1600) and feature count (8192),
exhaustive matching and incremental mapping:

* recon3d: ``python -m recon3d sfm IMAGES -o WS`` (everything it does by default, including SIFT
  affine shapes, the final refinement and the principal-point rule).
* COLMAP: Debian's ``colmap`` 3.8 CLI: ``feature_extractor``, ``exhaustive_matcher``, ``mapper``.

Each command runs under ``/usr/bin/time -v``: wall time, CPU time (user + system) and peak
memory (largest resident set of any step). Both models are then evaluated the same way
(recon3d.evaluate): registered photos in the largest model, mean reprojection error
recomputed from the model, rotation and position error against the ground truth after Sim(3)
alignment. Results go to benchmarks/results/sfm.md and sfm.json. Wall times on a shared
machine vary; the load average before and after is recorded, and CPU time is the steadier
measure.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import (
    REPO,
    RESULTS,
    SHARED_DATA,
    cache_or,
    md_table,
    scene_dir,
    write_report,
)

COLMAP = "/usr/bin/colmap"
SCENES = ("orbit", "sparse_ring", "lowtex", "narrow")
"""Synthetic sets (rendered; ``sparse_ring``, ``lowtex``, ``narrow`` test registration, issue #17)."""
MAX_IMAGE_SIZE = 1600
MAX_FEATURES = 8192


def _timed(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; returns wall, cpu seconds and peak RSS (MB)."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=f, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    err = proc.stderr
    with open(log, "a") as f:
        f.write(err)

    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([0-9.]+)", err)
        return float(m.group(1)) if m else float("nan")

    return {"wall_s": wall, "cpu_s": field("User time (seconds)") + field("System time (seconds)"),
            "peak_mb": field("Maximum resident set size (kbytes)") / 1024.0, "rc": proc.returncode}


def _combine(steps: list[dict]) -> dict:
    return {"wall_s": sum(s["wall_s"] for s in steps), "cpu_s": sum(s["cpu_s"] for s in steps),
            "peak_mb": max(s["peak_mb"] for s in steps), "rc": max(s["rc"] for s in steps)}


def run_recon3d(images: Path, work: Path, options: tuple[str, ...] = (), name: str = "recon3d") -> tuple[dict, Path]:
    """``recon3d sfm`` (plus ``options``) into ``work/name``; its timing and its ``sparse`` folder."""
    ws = work / name
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = _timed([sys.executable, "-m", "recon3d", "sfm", str(images), "-o", str(ws), *options,
                  "--max-image-size", str(MAX_IMAGE_SIZE), "--max-features", str(MAX_FEATURES), "--device", "cpu"],
                 work / "recon3d.log", env)
    return res, ws / "sparse"


def run_colmap(images: Path, work: Path) -> tuple[dict, Path]:
    ws = work / "colmap"
    (ws / "sparse").mkdir(parents=True)
    db = ws / "database.db"
    log = work / "colmap.log"
    steps = [
        _timed([COLMAP, "feature_extractor", "--database_path", str(db), "--image_path", str(images),
                "--ImageReader.single_camera", "1", "--ImageReader.camera_model", "SIMPLE_RADIAL",
                "--SiftExtraction.use_gpu", "0", "--SiftExtraction.max_image_size", str(MAX_IMAGE_SIZE),
                "--SiftExtraction.max_num_features", str(MAX_FEATURES)], log),
        _timed([COLMAP, "exhaustive_matcher", "--database_path", str(db), "--SiftMatching.use_gpu", "0"], log),
        _timed([COLMAP, "mapper", "--database_path", str(db), "--image_path", str(images),
                "--output_path", str(ws / "sparse")], log),
    ]
    return _combine(steps), ws / "sparse"


def evaluate(sparse: Path, gt, names: set[str]) -> dict:
    """Registered photos, mean reprojection error and GT pose errors of the largest model in ``sparse``."""
    import numpy as np

    from recon3d.evaluate.poses import evaluate_poses
    from recon3d.geometry.reprojection import reprojection_errors, reprojection_summary
    from recon3d.io.colmap import read_model

    models = [d for d in sorted(sparse.iterdir()) if d.is_dir() and (d / "cameras.bin").is_file()] \
        if sparse.is_dir() else []
    if not models:
        return {"registered": 0}
    best = max((read_model(d) for d in models), key=lambda m: len(m.images))
    rp = reprojection_summary(reprojection_errors(best))
    est = {im.name: im.cam_from_world for im in best.images.values()}
    ev = evaluate_poses(est, {n: c.cam_from_world for n, c in gt.items() if n in names})
    d = ev.to_dict(per_image=False)
    cams = list(best.cameras.values())
    return {"registered": len(best.images), "models": len(models), "points": int(len(best.point_ids)),
            "reproj_mean_px": rp["mean"], "rot_median_deg": d["rotation_deg"]["median"],
            "rot_fit_median_deg": d["rotation_fit_deg"]["median"],
            "pos_median_rel": d["position_rel_extent"]["median"], "auc1": d["auc"]["1"], "auc5": d["auc"]["5"],
            "camera": f"{cams[0][0]} {' '.join(f'{p:.4g}' for p in cams[0][3])}" if cams else "",
            "pose_errors_finite": bool(np.isfinite(ev.rotation_deg).all())}


def datasets(names: list[str], work: Path) -> list[tuple[str, Path, Path]]:
    """(name, images folder, ground truth) for each set."""
    out = []
    for name in names:
        if name in SCENES:
            root = scene_dir(name, cache_or(work / "scenes"))  # not work / name, the set's work folder
            out.append((name, root / "images", root / "gt" / "sparse" / "0"))
        elif name == "temple_ring":
            root = SHARED_DATA / "temple_ring"
            out.append((name, root / "images", root / "gt" / "templeR_par.txt"))
        elif name in ("temple_ring_2", "temple_ring_3"):  # every 2nd / 3rd view (issue #17)
            root, step = SHARED_DATA / "temple_ring", int(name[-1])
            sub = work / "subsets" / name
            sub.mkdir(parents=True, exist_ok=True)
            for p in sorted((root / "images").iterdir())[::step]:
                if not (sub / p.name).exists():
                    (sub / p.name).symlink_to(p)
            out.append((name, sub, root / "gt" / "templeR_par.txt"))
        elif name == "herzjesu_p8":
            out.append((name, SHARED_DATA / "herzjesu_p8" / "images", SHARED_DATA / "herzjesu_p8" / "gt"))
        else:
            raise SystemExit(f"unknown set {name!r}")
    return out


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, spec)


def write_tables(results: list[dict], meta: dict, out_dir: Path) -> str:
    rows = []
    for r in results:
        for tool in ("recon3d", "colmap"):
            t, q = r[tool]["time"], r[tool]["quality"]
            ratio = t["wall_s"] / r["colmap"]["time"]["wall_s"]
            rows.append((
                f"{r['set']} ({r['images']})", tool, f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}", f"{ratio:.2f}",
                f"{t['peak_mb']:.0f}", q.get("registered", 0), _fmt(q.get("reproj_mean_px"), ".3f"),
                f"{_fmt(q.get('rot_median_deg'), '.3f')} ({_fmt(q.get('rot_fit_median_deg'), '.3f')})",
                _fmt(100 * q["pos_median_rel"] if q.get("pos_median_rel") is not None else None, ".3f"),
                _fmt(q.get("auc1"), ".3f")))
    lines = ["# SfM benchmark: recon3d vs COLMAP 3.8 CLI", "",
             f"Run {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs). Load average before "
             f"{meta['load_before']}, after {meta['load_after']} (other jobs shared the machine: wall times are "
             "inflated and noisy; CPU time is steadier). Same photos, one shared SIMPLE_RADIAL camera, CPU SIFT at "
             f"max image size {MAX_IMAGE_SIZE} with {MAX_FEATURES} features (recon3d fits SIFT affine shapes by "
             "default, COLMAP's default does not), exhaustive matching, incremental mapping.",
             "Rotation error: median after Sim(3) alignment to the ground truth (in brackets: after the rotation "
             "fitted to the orientations). Position error: median, % of the extent of the ground-truth cameras.", "",
             *md_table(["set", "tool", "wall s", "CPU s", "wall ratio", "peak MB", "registered", "reproj. px",
                        "rot. err. deg", "pos. err. %", "AUC@1"], rows)]
    lines += ["", "Cameras found:", ""]
    for r in results:
        for tool in ("recon3d", "colmap"):
            lines.append(f"- {r['set']}, {tool}: {r[tool]['quality'].get('camera', '-')}")
    return write_report(out_dir / "sfm.md", lines, {"meta": meta, "results": results})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["orbit", "temple_ring", "herzjesu_p8", "sparse_ring", "lowtex",
                                                      "narrow", "temple_ring_2", "temple_ring_3"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, help="keep the workspaces here (default: a temporary folder)")
    args = parser.parse_args()
    if not Path(COLMAP).is_file():
        raise SystemExit(f"{COLMAP} not found: install Debian's colmap package")
    from recon3d.io.gt_formats import load_gt_cameras

    work_root = args.keep or Path(tempfile.mkdtemp(prefix="bench_sfm."))
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node() or platform.machine(),
            "cpus": os.cpu_count(), "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    results = []
    for name, images, gt_path in datasets(args.sets, work_root):
        gt = load_gt_cameras(gt_path)
        names = {p.name for p in images.iterdir()}
        work = work_root / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        row = {"set": name, "images": len(names)}
        for tool, fn in (("recon3d", run_recon3d), ("colmap", run_colmap)):
            print(f"{name}: {tool} ...", flush=True)
            timing, sparse = fn(images, work)
            row[tool] = {"time": timing, "quality": evaluate(sparse, gt, names)}
            print(f"  {timing['wall_s']:.1f} s wall, {timing['cpu_s']:.1f} s CPU, {timing['peak_mb']:.0f} MB, "
                  f"{row[tool]['quality']}", flush=True)
        results.append(row)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    write_tables(results, meta, args.out)
    if args.keep is None:
        shutil.rmtree(work_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
