"""Benchmark: recon3d's stereo matching against plain OpenCV SGBM on synthetic pairs with exact disparity.

Usage: python scripts/bench_stereo.py [--repeats N] [--cache DIR]  -> benchmarks/results/stereo.{md,json}

Datasets (all disparities exact, from the ray caster):
* stereo-rectified: the `stereo` scene's 6 pairs rendered through the ideal rectified cameras;
* stereo-raw: the same scene's raw (distorted) pairs, rectified with gt/stereo.json by recon3d;
* orbit-sfm: 6 pairs of neighbouring `orbit` views (15 degrees apart, wide baseline) rectified from
  their true poses at half resolution, ground truth by ray casting the rectified cameras.

Methods get the same rectified images and the same disparity range (OpenCV's default range of 16
cannot reach these scenes; a row with it is shown for reference). Each method runs `--repeats`
times per pair, interleaved with the others, and the median time counts.
Goal: lower error than OpenCV's defaults at no more than 1.5x their time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _bench import (  # first: this checkout on sys.path
    RESULTS,
    md_table,
    scene_dir,
    write_report,
)

from recon3d.stereo.disparity import (
    SGBMConfig,
    auto_max_disparity,
    compute_disparity,
    opencv_default_disparity,
)
from recon3d.stereo.evaluate import disparity_metrics, nonoccluded_mask, textured_mask


def stereo_sets(root: Path) -> dict[str, list[tuple]]:
    """(left, right, gt disparity, name) of the stereo scene, rendered-rectified and raw-rectified."""
    from recon3d.stereo.rectify import load_calibration, load_image, rectify_pair

    rig, rect = load_calibration(root / "gt" / "stereo.json")
    ideal, raw = [], []
    for p in sorted((root / "left").glob("pair_*.png")):
        gt = np.load(root / "gt" / "disparity" / f"{p.stem}.npy")
        ideal.append((load_image(root / "rectified" / "left" / p.name), load_image(root / "rectified" / "right" / p.name),
                      gt, p.stem))
        pair = rectify_pair(rig, rect, load_image(p), load_image(root / "right" / p.name))
        raw.append((pair.left, pair.right, np.where(pair.left_valid, gt, 0), p.stem))
    return {"stereo-rectified": ideal, "stereo-raw": raw}


def orbit_set(root: Path, count: int = 6, scale: float = 0.5) -> list[tuple]:
    """Neighbouring orbit views rectified from their true poses, with ray-cast GT disparity."""
    from recon3d.io.colmap import read_model
    from recon3d.scenes import load_spec
    from recon3d.scenes.raycast import RayScene
    from recon3d.scenes.render import camera_rays, cast_from_camera
    from recon3d.stereo.rectify import load_image, rectify_pair
    from recon3d.stereo.sfm_pairs import pair_rig, select_pairs

    scene = RayScene.from_spec(load_spec("orbit"))
    model = read_model(root / "gt" / "sparse" / "0")
    out = []
    for pair in select_pairs(model, max_pairs=count):
        rig = pair_rig(model, pair)
        rect = rig.rectify(alpha=-1)
        rp = rectify_pair(rig, rect, load_image(root / "images" / pair.left_name),
                          load_image(root / "images" / pair.right_name))
        h, w = rp.left.shape[:2]
        size = (round(w * scale), round(h * scale))
        left = cv2.resize(rp.left, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(rp.right, size, interpolation=cv2.INTER_AREA)
        valid = cv2.resize(rp.left_valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        cam = rp.camera.scaled(size[0] / w)
        z = cast_from_camera(scene, cam, rect.R1 @ model.images[pair.left_id].cam_from_world,
                             camera_rays(cam, 1)).t.reshape(size[1], size[0])
        gt = np.where(valid & np.isfinite(z), cam.K[0, 0] * rect.baseline / z, 0).astype(np.float32)
        out.append((left, right, gt, f"{Path(pair.left_name).stem}-{Path(pair.right_name).stem}"))
    return out


def methods(num: int) -> dict:
    return {
        "opencv SGBM defaults (16 disparities)": lambda l, r: opencv_default_disparity(l, r, 16),
        "opencv SGBM defaults": lambda l, r: opencv_default_disparity(l, r, num),
        "recon3d": lambda l, r: compute_disparity(l, r, SGBMConfig(max_disparity=num)),
        "recon3d, no sub-pixel refinement": lambda l, r: compute_disparity(l, r, SGBMConfig(max_disparity=num,
                                                                                               refine_iters=0)),
        "recon3d, mode hh (8 paths)": lambda l, r: compute_disparity(l, r, SGBMConfig(max_disparity=num, mode="hh")),
    }


def run_set(pairs: list[tuple], repeats: int) -> list[dict]:
    width = pairs[0][0].shape[1]
    num = max(auto_max_disparity(width), int(np.ceil(max(float(p[2].max()) for p in pairs) * 1.1 / 16)) * 16)
    ms = methods(num)
    acc = {m: {"nonocc": [], "textured": [], "all": []} for m in ms}
    times = {m: [] for m in ms}
    for left, right, gt, _ in pairs:
        nonocc = nonoccluded_mask(gt)
        regions = {"all": None, "nonocc": nonocc, "textured": nonocc & textured_mask(left)}
        per = {m: [] for m in ms}
        result = {}
        for _ in range(repeats):
            for m, fn in ms.items():  # interleaved, so load changes hit every method alike
                t0 = time.perf_counter()
                result[m] = fn(left, right)
                per[m].append(time.perf_counter() - t0)
        for m in ms:
            times[m].append(float(np.median(per[m])))
            for name, mask in regions.items():
                acc[m][name].append(disparity_metrics(result[m], gt, mask))
    rows = []
    base = float(np.sum(times["opencv SGBM defaults"]))
    for m in ms:
        row = {"method": m, "disparities": 16 if "(16" in m else num, "time_ms": 1000 * float(np.mean(times[m])),
               "time_ratio": float(np.sum(times[m])) / base}
        for name in ("textured", "nonocc", "all"):
            ms_ = acc[m][name]
            px = np.array([x["pixels"] for x in ms_], dtype=float)
            row[name] = {k: float(np.nansum([x[k] * x["pixels"] for x in ms_]) / px.sum())
                         for k in ("bad_1", "bad_2", "bad_4", "density")}
            epe_w = np.array([x["pixels"] * x["density"] for x in ms_])
            row[name]["epe"] = float(np.nansum([x["epe"] * w for x, w in zip(ms_, epe_w)]) / epe_w.sum())
        rows.append(row)
    return rows


def table_row(r: dict) -> tuple:
    """Cells of one method's row of the Markdown table (a row of :func:`run_set`)."""
    t, n, a = r["textured"], r["nonocc"], r["all"]
    return (r["method"], r["disparities"], f"{100 * t['bad_2']:.2f} %", f"{t['epe']:.3f}", f"{100 * n['bad_2']:.2f} %",
            f"{n['epe']:.3f}", f"{100 * n['density']:.1f} %", f"{100 * a['bad_2']:.2f} %", f"{r['time_ms']:.0f}",
            f"{r['time_ratio']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per pair and method (median counts)")
    ap.add_argument("--cache", type=Path, default=os.environ.get("RECON3D_TEST_CACHE"),
                    help="folder with rendered scenes (default: $RECON3D_TEST_CACHE, else a temporary folder)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.cache is None else None
    cache = Path(args.cache or tmp.name)
    load0 = os.getloadavg()[0]
    sets = stereo_sets(scene_dir("stereo", cache))
    sets["orbit-sfm"] = orbit_set(scene_dir("orbit", cache))
    results = {}
    for name, pairs in sets.items():
        results[name] = {"pairs": len(pairs), "size": list(pairs[0][0].shape[1::-1]), "rows": run_set(pairs, args.repeats)}
        print(name, json.dumps(results[name]["rows"][2]), flush=True)
    meta = {"cpu_cores": os.cpu_count(), "opencv_threads": cv2.getNumThreads(), "opencv": cv2.__version__,
            "python": platform.python_version(), "load_avg_start": round(load0, 2),
            "load_avg_end": round(os.getloadavg()[0], 2), "repeats": args.repeats, "date": time.strftime("%Y-%m-%d")}
    lines = ["# Stereo matching: recon3d vs OpenCV SGBM defaults", "",
             f"`python scripts/bench_stereo.py --repeats {args.repeats}`, {meta['date']}, OpenCV {meta['opencv']} "
             f"({meta['opencv_threads']} threads), {meta['cpu_cores']} cores shared with other jobs "
             f"(load average {meta['load_avg_start']} -> {meta['load_avg_end']}: times are inflated, ratios are fair "
             "because the methods run interleaved).", "",
             "Regions: *textured* = non-occluded pixels with 7x7 grey std > 2; *non-occluded* = valid GT seen by both "
             "views; bad-2 counts pixels without an estimate as bad; EPE over pixels with an estimate. "
             "Time = median per pair; ratio against OpenCV defaults with the same disparity range.", "",
             "Goal: lower error than OpenCV's defaults at no more than 1.5x their time.", ""]
    for name, res in results.items():
        lines += [f"## {name} ({res['pairs']} pairs, {res['size'][0]}x{res['size'][1]})", "",
                  *md_table(["method", "disp.", "textured bad-2", "textured EPE", "non-occ. bad-2", "non-occ. EPE",
                             "non-occ. density", "all bad-2", "time ms", "time ratio"], map(table_row, res["rows"])),
                  ""]
    write_report(RESULTS / "stereo.md", lines, {"meta": meta, "datasets": results})
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
