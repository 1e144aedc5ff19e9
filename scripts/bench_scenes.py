"""Benchmark: rendering time of the shipped synthetic scenes (2 CPU cores is the target machine).

Usage: python scripts/bench_scenes.py [SCENE ...]   -> benchmarks/results/scenes.{md,json}
Target: the 24-view orbit scene at 640x480 renders in under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from _bench import RESULTS, md_table, write_report  # first: this checkout on sys.path

from recon3d.scenes import list_scenes, load_spec, render_scene


def main(names: list[str]) -> None:
    rows = []
    for name in names or list(list_scenes()):
        spec = load_spec(name)
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            info = render_scene(spec, Path(tmp) / name)
            rows.append({"scene": name, "kind": spec.kind, "wall_s": round(time.perf_counter() - t0, 2),
                         "cpu_s": round(time.process_time() - c0, 2), **{k: v for k, v in info.items() if k != "image_size"},
                         "size": "x".join(map(str, info["image_size"]))})
        print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = {"cores": os.cpu_count(), "peak_rss_mb": round(peak), "date": time.strftime("%Y-%m-%d")}
    columns = ("scene", "kind", "size", "wall_s", "cpu_s")
    table = [[r[k] for k in columns] + [", ".join(f"{k} {v}" for k, v in r.items() if k not in columns)] for r in rows]
    write_report(RESULTS / "scenes.md", [
        "# Synthetic scene rendering", "",
        f"`python scripts/bench_scenes.py` on {meta['cores']} cores, {meta['date']}; "
        f"peak RSS {meta['peak_rss_mb']} MB.",
        "Target: orbit (24 views, 640x480) under 30 s.", "",
        *md_table(["scene", "kind", "size", "wall s", "CPU s", "details"], table)], {"meta": meta, "rows": rows})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenes", nargs="*", metavar="SCENE", help="shipped scenes to render (default: all)")
    main(ap.parse_args().scenes)
