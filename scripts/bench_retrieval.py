"""Benchmark: retrieval pair selection against exhaustive matching on a larger synthetic ring.

  python scripts/bench_retrieval.py                    # orbit scene with 96 views, 20 neighbours
  python scripts/bench_retrieval.py --views 72 --neighbours 15

Renders the `orbit` scene with more views on its ring (the same objects, cameras every 360/N
degrees), then reconstructs it three ways in one run: recon3d with exhaustive matching, recon3d
with retrieval matching (a vocabulary tree trained on the photos' own SIFT, N most similar photos
per photo), and Debian's COLMAP 3.8 CLI with exhaustive matching (the peer; its retrieval needs a
downloaded vocabulary tree). Writes benchmarks/results/retrieval.{md,json}: wall and CPU time,
peak memory, pairs matched, registered photos and pose error against the true cameras.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import RESULTS, cache_or, md_table, write_report  # noqa: E402
from bench_sfm import (  # noqa: E402
    COLMAP,
    MAX_FEATURES,
    MAX_IMAGE_SIZE,
    evaluate,
    run_colmap,
    run_recon3d,
)


def render_ring(views: int, folder: Path) -> Path:
    """The orbit scene with ``views`` cameras, rendered into ``folder`` (cached by spec)."""
    from recon3d.scenes import load_spec, render_scene_cached

    spec = load_spec("orbit")
    spec = dataclasses.replace(spec, name=f"orbit{views}", views=dataclasses.replace(spec.views, count=views))
    root = folder / f"orbit{views}"
    render_scene_cached(spec, root)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=96, help="cameras on the ring (default 96)")
    parser.add_argument("--neighbours", type=int, default=20, help="retrieval: photos matched to each (default 20)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-colmap", action="store_true", help="skip the COLMAP run")
    args = parser.parse_args()
    from recon3d.io.gt_formats import load_gt_cameras

    work = Path(tempfile.mkdtemp(prefix="bench_retrieval."))
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node() or platform.machine(),
            "cpus": os.cpu_count(), "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    root = render_ring(args.views, cache_or(work / "scenes"))
    images = root / "images"
    gt = load_gt_cameras(root / "gt" / "sparse" / "0")
    names = {p.name for p in images.iterdir()}
    n = len(names)
    runs = []
    for label, matching in (("recon3d exhaustive", ["--matching", "exhaustive"]),
                            (f"recon3d retrieval ({args.neighbours})",
                             ["--matching", "retrieval", "--retrieval-images", str(args.neighbours)])):
        print(f"{label} ...", flush=True)
        timing, sparse = run_recon3d(images, work, tuple(matching), name="recon3d_" + matching[1])
        report = sparse.parent / "reports" / "sfm.json"
        pairs = json.loads(report.read_text())["matching"]["pairs"] if report.is_file() else None
        runs.append({"run": label, "time": timing, "pairs": pairs, "quality": evaluate(sparse, gt, names)})
        print(f"  {runs[-1]}", flush=True)
    if not args.no_colmap and Path(COLMAP).is_file():
        print("colmap exhaustive ...", flush=True)
        timing, sparse = run_colmap(images, work)
        runs.append({"run": "COLMAP 3.8 exhaustive", "time": timing, "pairs": n * (n - 1) // 2,
                     "quality": evaluate(sparse, gt, names)})
        print(f"  {runs[-1]}", flush=True)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    base = runs[-1]["time"]["wall_s"]
    rows = []
    for r in runs:
        q, t = r["quality"], r["time"]
        rows.append([r["run"], r["pairs"], f"{t['wall_s']:.1f}", f"{t['wall_s'] / base:.2f}", f"{t['cpu_s']:.1f}",
                     f"{t['peak_mb']:.0f}", f"{q.get('registered', 0)}/{n}",
                     f"{q.get('rot_median_deg', float('nan')):.3f}", f"{q.get('auc1', float('nan')):.3f}"])
    lines = [f"# Retrieval vs exhaustive matching: orbit ring with {n} views",
             "",
             f"`python scripts/bench_retrieval.py --views {args.views} --neighbours {args.neighbours}` on "
             f"{meta['cpus']} cores, {meta['date']} (load {meta['load_before']} before, {meta['load_after']} after). "
             f"SIFT at most {MAX_IMAGE_SIZE} px and {MAX_FEATURES} features, CPU, one SIMPLE_RADIAL camera. "
             "Ratio: wall time over the last row's. Rotation error: median after Sim(3) alignment to the true "
             "cameras; AUC of relative poses at 1 degree.",
             "",
             *md_table(["run", "pairs", "wall s", "ratio", "CPU s", "peak MB", "registered", "rot. err. deg",
                        "AUC@1"], rows)]
    write_report(args.out / "retrieval.md", lines, {"meta": meta, "views": n, "runs": runs})
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
