"""Benchmark: rendering time of the shipped synthetic scenes (2 CPU cores is the target machine).

Usage: python scripts/bench_scenes.py [SCENE ...]   -> benchmarks/results/scenes.{md,json}
Target: the 24-view orbit scene at 640x480 renders in under 30 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from recon3d.scenes import list_scenes, load_spec, render_scene

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


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
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"cores": os.cpu_count(), "peak_rss_mb": round(peak), "date": time.strftime("%Y-%m-%d")}
    (OUT / "scenes.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Synthetic scene rendering", "",
             f"`python scripts/bench_scenes.py` on {meta['cores']} cores, {meta['date']}; peak RSS {meta['peak_rss_mb']} MB.",
             "Target: orbit (24 views, 640x480) under 30 s.", "",
             "| scene | kind | size | wall s | CPU s | details |", "|---|---|---|---|---|---|"]
    for r in rows:
        details = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("scene", "kind", "wall_s", "cpu_s", "size"))
        lines.append(f"| {r['scene']} | {r['kind']} | {r['size']} | {r['wall_s']} | {r['cpu_s']} | {details} |")
    (OUT / "scenes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
