"""Benchmark: SfM feature extraction and matching as Ray tasks against the single-process path.

  python scripts/bench_cluster.py                              # the 96-view ring and herzjesu_p8
  python scripts/bench_cluster.py --scenes orbit --workers 1 2

For each photo set: the single-process path (:func:`recon3d.sfm.extract.extract` and
:func:`recon3d.sfm.match.match`, pycolmap's own threads on every core), then a local Ray instance
(``--cluster local --workers N``) for each N, each into a fresh database. Measures images/s and
pairs/s, CPU seconds per image and per pair, bytes of features per image, database bytes, Ray's
overhead per task (no-op tasks), and checks the cluster databases equal the single-process one.
The ring (the orbit scene with ``--views`` cameras, as scripts/bench_retrieval.py renders it) is
matched by retrieval (``--neighbours``; on the cluster the queries are tasks too), the others
exhaustively. On the ring's single-process database it then maps with the incremental and the
hierarchical mapper (``--cluster-max-images``, ``--cluster-overlap``), each in a child process:
wall and CPU time, peak memory, registered views and pose error against the true cameras.
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


def photo_sets(names: list[str], work: Path, views: int) -> dict[str, Path]:
    """``{label: scene folder (images/, gt/) or photo folder}``."""
    from bench_retrieval import render_ring

    out = {}
    for name in names:
        if name == "orbit":
            out["orbit (24 views, 640x480)"] = scene_dir("orbit", cache_or(work))
        elif name == "ring":
            out[f"ring ({views} views, 640x480)"] = render_ring(views, cache_or(work / "scenes"))
        elif name == "herzjesu":
            out["herzjesu_p8 (8 photos, 3072x2048)"] = SHARED_DATA / "herzjesu_p8"
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


def run_one(label: str, images: Path, work: Path, workers: int | None, neighbours: int = 0,
            tree: Path | None = None) -> dict:
    """One run into a fresh database. With ``neighbours``: retrieval pairs from the vocabulary tree ``tree``,
    trained on this run's database first when it does not exist (trained once, so that each run's
    retrieval time is indexing and queries)."""
    from recon3d.core.cluster import ClusterOptions, connect
    from recon3d.sfm.cluster import extract_on_cluster, match_on_cluster
    from recon3d.sfm.config import SfmConfig
    from recon3d.sfm.extract import extract
    from recon3d.sfm.match import match

    config = SfmConfig()
    if neighbours:
        config.matching.pairing, config.matching.retrieval_num_images = "retrieval", neighbours
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
        if neighbours and not tree.exists():
            from recon3d.sfm.retrieval import build_vocab_tree

            row["tree"] = build_vocab_tree(ws.database, tree, seed=config.seed)
        if neighbours:
            config.matching.vocab_tree = str(tree)
        if session is None and neighbours:  # retrieval alone (match() does it again: subtracted below)
            from recon3d.sfm.retrieval import retrieval_pairs

            c, t = time.process_time(), time.perf_counter()
            row["retrieval"] = retrieval_pairs(ws.database, neighbours, tree, seed=config.seed)[1]
            row["retrieval"].update(total_s=time.perf_counter() - t, driver_cpu_s=time.process_time() - c)
        c, t = time.process_time(), time.perf_counter()
        if session is None:
            m = match(ws.database, config.matching, device="cpu", seed=config.seed)
        else:
            m = match_on_cluster(session, ws.database, config.matching, device="cpu", seed=config.seed)
        row["match_s"], row["match_cpu_s"] = time.perf_counter() - t, time.process_time() - c
        if "retrieval" in m:
            row["retrieval"] = dict(m["retrieval"], total_s=m["retrieval"]["index_seconds"] + m["retrieval"]["query_seconds"])
        if "retrieval" in row:  # matching alone
            row["match_s"] -= row["retrieval"]["total_s"]
            row["match_cpu_s"] -= row["retrieval"]["driver_cpu_s"]
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


def map_child(database: Path, images: Path, gt: Path, mapper: str, max_images: int, overlap: int) -> dict:
    """In a child process: map ``database`` with ``mapper`` (then recon3d's final refinement) and evaluate
    the largest model against the true cameras ``gt``; peak memory is this process's."""
    from recon3d.evaluate.poses import evaluate_poses
    from recon3d.io.gt_formats import load_gt_cameras
    from recon3d.sfm.config import MapperConfig, SfmConfig
    from recon3d.sfm.mapping import map_database, refine_model

    import pycolmap  # noqa: F401 - loaded before the baseline memory is read

    def status_mb(key: str) -> float:  # VmHWM: peak resident memory of this process since it started
        return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(key))) / 1024

    rss0 = status_mb("VmRSS:")
    config = SfmConfig(mapping=MapperConfig(mapper=mapper, cluster_max_images=max_images, cluster_overlap=overlap))
    notes: dict = {}
    c, t = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_map.") as tmp:
        models = map_database(database, images, Path(tmp), config, on_clusters=notes.update)
    row = {"mapper": mapper, "map_s": time.perf_counter() - t, "map_cpu_s": time.process_time() - c,
           "peak_mb": status_mb("VmHWM:"), "start_mb": rss0,
           "models": len(models), "clusters": notes}
    t = time.perf_counter()
    rec, _ = refine_model(models[0], config)
    row["refine_s"] = time.perf_counter() - t
    gt_cams = load_gt_cameras(gt)
    est = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    ev = evaluate_poses(est, {n: cam.cam_from_world for n, cam in gt_cams.items()}).to_dict(per_image=False)
    row.update(registered=len(est), views=len(gt_cams), rotation_deg=ev["rotation_deg"],
               position_rel_extent=ev["position_rel_extent"], auc=ev["auc"])
    return row


def run_mappers(ws_root: Path, gt: Path, max_images: int, overlap: int) -> list[dict]:
    import json
    import subprocess

    out = []
    for mapper in ("incremental", "hierarchical"):
        proc = subprocess.run([sys.executable, __file__, "--map-child", str(ws_root), str(gt), mapper,
                               str(max_images), str(overlap)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"mapping with {mapper} failed: {proc.stderr[-2000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--map-child":
        import json

        root, gt, mapper, max_images, overlap = sys.argv[2:7]
        from recon3d.core.workspace import Workspace

        ws = Workspace(Path(root))
        print(json.dumps(map_child(ws.database, ws.images, Path(gt), mapper, int(max_images), int(overlap))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="+", default=["ring", "herzjesu"], choices=["ring", "orbit", "herzjesu"])
    parser.add_argument("--views", type=int, default=96, help="cameras on the ring (default 96)")
    parser.add_argument("--neighbours", type=int, default=20, help="retrieval neighbours on the ring (default 20)")
    parser.add_argument("--cluster-max-images", type=int, default=24, help="hierarchical mapper on the ring (default 24)")
    parser.add_argument("--cluster-overlap", type=int, default=8, help="hierarchical mapper on the ring (default 8)")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import numpy as np

    from recon3d.sfm.match import pair_stats

    work = Path(tempfile.mkdtemp(prefix="bench_cluster."))
    load0 = os.getloadavg()
    data: dict = {"cpus": os.cpu_count(), "python": platform.python_version(), "sets": {}, "mapping": {}}
    lines = ["# SfM extraction and matching on a Ray cluster vs one process", ""]
    rows, map_rows = [], []
    try:
        for label, scene in photo_sets(args.scenes, work, args.views).items():
            key, neighbours = label.split()[0], (args.neighbours if label.startswith("ring") else 0)
            tree = work / f"{key}-vocab_tree.bin"
            runs = [run_one(key, scene / "images", work, None, neighbours, tree)]
            runs += [run_one(key, scene / "images", work, w, neighbours, tree) for w in args.workers]
            ref = pair_stats(Path(runs[0]["database"]))
            for r in runs[1:]:
                s = pair_stats(Path(r["database"]))
                r["identical"] = bool(np.array_equal(s.keypoints, ref.keypoints) and np.array_equal(s.inliers, ref.inliers)
                                      and np.array_equal(s.matches, ref.matches))
            data["sets"][label] = runs
            for r in runs:
                n, p = r["images"], r["pairs"]
                ret = r.get("retrieval")
                rows.append([label, r["run"], f"{n / r['extract_s']:.2f}", f"{p / r['match_s']:.2f}",
                             f"{r.get('task_cpu_s', {}).get('extract', r['extract_cpu_s']) / n:.2f}",
                             f"{r.get('task_cpu_s', {}).get('match', r['match_cpu_s']) / max(p, 1):.3f}",
                             f"{r['extract_cpu_s'] / n:.3f} / {r['match_cpu_s'] / max(p, 1):.4f}" if "overhead" in r else "-",
                             f"{r['keypoints'] / n:.0f}", f"{r['keypoints'] * 152 / n / 1e6:.2f}",
                             f"{r['db_bytes'] / 1e6:.1f}", f"{p} ({'retrieval' if neighbours else 'exhaustive'})",
                             (f"{ret['total_s']:.1f}" + (f" = {ret['index_seconds']:.1f} + {ret['query_seconds']:.1f}"
                                                        if "query_seconds" in ret else "")
                              + f" ({ret['driver_cpu_s']:.1f})") if ret else "-",
                             f"{r['overhead']['round_trip_ms']:.1f} / {r['overhead']['batched_ms']:.1f}" if "overhead" in r else "-",
                             {True: "yes", False: "NO"}.get(r.get("identical"), "(reference)")])
            if label.startswith("ring"):
                maps = run_mappers(Path(runs[0]["database"]).parent, scene / "gt" / "sparse" / "0",
                                   args.cluster_max_images, args.cluster_overlap)
                data["mapping"][label] = maps
                for m in maps:
                    cl = m["clusters"]
                    map_rows.append([label, m["mapper"] + (f" ({args.cluster_max_images} + {args.cluster_overlap})"
                                                           if m["mapper"] == "hierarchical" else ""),
                                     f"{cl['clusters']}: {min(cl['cluster_sizes'])}-{max(cl['cluster_sizes'])}" if cl else "-",
                                     f"{m['registered']}/{m['views']}", f"{m['map_s']:.1f}", f"{m['map_cpu_s']:.1f}",
                                     f"{m['peak_mb']:.0f} ({m['start_mb']:.0f})",
                                     f"{m['rotation_deg']['median']:.3f} / {m['rotation_deg']['max']:.3f}",
                                     f"{100 * m['position_rel_extent']['median']:.3f} / {100 * m['position_rel_extent']['max']:.3f}",
                                     f"{m['auc']['1']:.3f}"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    data["load"] = [load0, load1]
    tree_note = "; ".join(f"{label.split()[0]}: {r['tree']['words']} words from {r['tree']['descriptors']} "
                          f"descriptors, trained in {r['tree']['seconds']:.1f} s"
                          for label, runs in data["sets"].items() for r in runs if "tree" in r) or "none"
    lines += [f"`python scripts/bench_cluster.py` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')} "
              f"(load {' '.join(f'{x:.2f}' for x in load0)} before, {' '.join(f'{x:.2f}' for x in load1)} after: "
              "the machine was shared with other jobs, so rates are lower bounds). SIFT at most 1600 px and 8192 "
              f"features, CPU; the ring matched by retrieval ({args.neighbours} neighbours a photo), the others "
              "exhaustively. Single process: pycolmap's own threads on every core. Ray: a local "
              "instance with N worker processes, one pycolmap thread each. CPU s/img and s/pair: CPU seconds "
              "of the tasks' worker processes (single process: the process's own, all threads). Driver: CPU "
              "seconds of the recon3d process itself per photo and per pair (reading, sending, writing the "
              "database). Features: 6 float32 "
              "keypoint values + 128 uint8 descriptor bytes = 152 B each. Retrieval s: pair selection alone "
              f"with a vocabulary tree trained once beforehand ({tree_note}), not part of the other columns: single process: "
              "index + query in pycolmap; Ray: index on the driver + the query tasks; in brackets the driver's CPU "
              "seconds. Overhead: milliseconds per no-op Ray task, one at a time / all at once.", ""]
    lines += md_table(["photos", "run", "extract img/s", "match pairs/s", "CPU s/img", "CPU s/pair",
                       "driver CPU s/img / s/pair", "features/img",
                       "MB features/img", "DB MB", "pairs", "retrieval s", "Ray overhead ms", "same DB"], rows)
    if map_rows:
        lines += ["", "## Mapping the ring: incremental vs hierarchical", "",
                  "The single-process database of the ring, mapped in a child process per mapper (pycolmap, all "
                  "cores), then recon3d's final refinement (filter, bundle adjustment); errors of the refined "
                  "model against the true cameras after a Sim(3) alignment. Hierarchical: leaf clusters of at "
                  "most N photos plus an overlap of M (N + M), mapped separately and merged; clusters: how "
                  "many, and their sizes with the overlap. Peak MB: the child's peak resident memory (in "
                  "brackets: before mapping, with Python, pycolmap and recon3d loaded).", ""]
        lines += md_table(["photos", "mapper", "clusters", "registered", "map s", "map CPU s", "peak MB",
                           "rotation err. median / max deg", "position err. median / max % extent", "AUC@1"],
                          map_rows)
    write_report(args.out / "cluster.md", lines, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
