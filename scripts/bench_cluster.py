"""Benchmark: SfM feature extraction and matching as Ray tasks against the single-process path.

  python scripts/bench_cluster.py                              # orbit (24 views) and herzjesu_p8
  python scripts/bench_cluster.py --scenes orbit --workers 1 2

For each photo set: the single-process path (:func:`recon3d.sfm.extract.extract` and
:func:`recon3d.sfm.match.match`, pycolmap's own threads on every core), then a local Ray instance
(``--cluster local --workers N``) for each N, each into a fresh database. Measures images/s and
pairs/s, CPU seconds per image and per pair, bytes of features per image, database bytes, Ray's
overhead per task (no-op tasks), and checks the cluster databases equal the single-process one.
Writes benchmarks/results/cluster.{md,json}. Not a test: numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import RESULTS, SHARED_DATA, cache_or, md_table, scene_dir, write_report  # noqa: E402


def photo_sets(names: list[str], work: Path) -> dict[str, Path]:
    out = {}
    for name in names:
        if name == "orbit":
            out["orbit (24 views, 640x480)"] = scene_dir("orbit", cache_or(work)) / "images"
        elif name == "herzjesu":
            out["herzjesu_p8 (8 photos, 3072x2048)"] = SHARED_DATA / "herzjesu_p8" / "images"
    return out


def fresh(images: Path, root: Path):
    from recon3d.core.workspace import Workspace
    from recon3d.sfm.images import ingest_images, scan_images

    if root.exists():
        shutil.rmtree(root)
    ws = Workspace(root)
    scan = scan_images(images)
    ingest_images(scan.images, ws.images)
    return ws, scan.images


def overhead(n: int = 40) -> dict:
    """Seconds per no-op task: one at a time (round trip) and all at once (throughput)."""
    import ray

    noop = ray.remote(num_cpus=1)(lambda: None)
    ray.get(noop.remote())
    t = time.perf_counter()
    for _ in range(n):
        ray.get(noop.remote())
    serial = (time.perf_counter() - t) / n
    t = time.perf_counter()
    ray.get([noop.remote() for _ in range(n)])
    return {"round_trip_ms": 1000 * serial, "batched_ms": 1000 * (time.perf_counter() - t) / n}


def run_one(label: str, images: Path, work: Path, workers: int | None) -> dict:
    from recon3d.core.cluster import ClusterOptions, connect
    from recon3d.sfm.cluster import extract_on_cluster, match_on_cluster
    from recon3d.sfm.config import SfmConfig
    from recon3d.sfm.extract import extract
    from recon3d.sfm.match import match

    config = SfmConfig()
    ws, photos = fresh(images, work / f"{label}-{workers or 0}")
    row = {"run": "single process" if workers is None else f"Ray local, {workers} worker(s)", "images": len(photos)}
    session = None
    if workers is not None:
        t = time.perf_counter()
        session = connect(ClusterOptions("local", workers))
        row["connect_s"] = time.perf_counter() - t
        row["overhead"] = overhead()
    try:
        c, t = time.process_time(), time.perf_counter()
        if session is None:
            feat = extract(ws.database, ws.images, photos, config.extraction, device="cpu")
        else:
            feat = extract_on_cluster(session, ws.database, ws.images, photos, config.extraction, device="cpu")
        row["extract_s"], row["extract_cpu_s"] = time.perf_counter() - t, time.process_time() - c
        c, t = time.process_time(), time.perf_counter()
        if session is None:
            m = match(ws.database, config.matching, device="cpu", seed=config.seed)
        else:
            m = match_on_cluster(session, ws.database, config.matching, device="cpu", seed=config.seed)
        row["match_s"], row["match_cpu_s"] = time.perf_counter() - t, time.process_time() - c
        if session is not None:
            row["task_s"] = dict(session.task_s)
            row["task_cpu_s"] = dict(session.task_cpu_s)
            row["tasks"] = session.summary()["nodes"][0]["tasks"]
    finally:
        if session is not None:
            session.close()
    row.update(keypoints=feat["keypoints"], pairs=m["pairs"], verified=m["verified_pairs"],
               db_bytes=ws.database.stat().st_size, database=str(ws.database))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="+", default=["orbit", "herzjesu"], choices=["orbit", "herzjesu"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import numpy as np

    from recon3d.sfm.match import pair_stats

    work = Path(tempfile.mkdtemp(prefix="bench_cluster."))
    load0 = os.getloadavg()
    data: dict = {"cpus": os.cpu_count(), "python": platform.python_version(), "sets": {}}
    lines = ["# SfM extraction and matching on a Ray cluster vs one process", ""]
    rows = []
    try:
        for label, images in photo_sets(args.scenes, work).items():
            runs = [run_one(label.split()[0], images, work, None)]
            runs += [run_one(label.split()[0], images, work, w) for w in args.workers]
            ref = pair_stats(Path(runs[0]["database"]))
            for r in runs[1:]:
                s = pair_stats(Path(r["database"]))
                r["identical"] = bool(np.array_equal(s.keypoints, ref.keypoints) and np.array_equal(s.inliers, ref.inliers)
                                      and np.array_equal(s.matches, ref.matches))
            data["sets"][label] = runs
            for r in runs:
                n, p = r["images"], r["pairs"]
                rows.append([label, r["run"], f"{n / r['extract_s']:.2f}", f"{p / r['match_s']:.2f}",
                             f"{r.get('task_cpu_s', {}).get('extract', r['extract_cpu_s']) / n:.2f}",
                             f"{r.get('task_cpu_s', {}).get('match', r['match_cpu_s']) / max(p, 1):.3f}",
                             f"{r['extract_cpu_s'] / n:.3f} / {r['match_cpu_s'] / max(p, 1):.4f}" if "overhead" in r else "-",
                             f"{r['keypoints'] / n:.0f}", f"{r['keypoints'] * 152 / n / 1e6:.2f}",
                             f"{r['db_bytes'] / 1e6:.1f}",
                             f"{r['overhead']['round_trip_ms']:.1f} / {r['overhead']['batched_ms']:.1f}" if "overhead" in r else "-",
                             {True: "yes", False: "NO"}.get(r.get("identical"), "(reference)")])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    data["load"] = [load0, load1]
    lines += [f"`python scripts/bench_cluster.py` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')} "
              f"(load {' '.join(f'{x:.2f}' for x in load0)} before, {' '.join(f'{x:.2f}' for x in load1)} after: "
              "the machine was shared, so rates are lower bounds). SIFT at most 1600 px and 8192 features, "
              "exhaustive matching, CPU. Single process: pycolmap's own threads on every core. Ray: a local "
              "instance with N worker processes, one pycolmap thread each. CPU s/img and s/pair: CPU seconds "
              "of the tasks' worker processes (single process: the process's own, all threads). Driver: CPU "
              "seconds of the recon3d process itself per photo and per pair (reading, sending, writing the "
              "database). Features: 6 float32 keypoint "
              "values + 128 uint8 descriptor bytes = 152 B each. Overhead: milliseconds per no-op Ray task, "
              "one at a time / all at once.", ""]
    lines += md_table(["photos", "run", "extract img/s", "match pairs/s", "CPU s/img", "CPU s/pair",
                       "driver CPU s/img / s/pair", "features/img",
                       "MB features/img", "DB MB", "Ray overhead ms", "same DB"], rows)
    write_report(args.out / "cluster.md", lines, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
