"""Live viewer overhead: steps/s of a synthetic training loop with and without ``LiveViewer``.

The loop is a stand-in for a splat trainer on CPU (Adam on N Gaussians' parameters through a
small differentiable function), calling the monitor at every step (the worst case) with a real
``render`` closure (a point-splat image of the current Gaussians) and ``splats()``. Short runs
alternate without and with the monitor, in three sessions: no browser connected; headless chromium
connected (renders of its view happen); chromium connected with "Update splats" on. Writes
``benchmarks/results/viewer_overhead.{md,json}``.

  python scripts/bench_viewer_overhead.py [--chunk 20] [--pairs 10] [--gaussians 50000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _bench import RESULTS, md_table, write_report  # first: this checkout on sys.path

from recon3d.core.monitor import TrainEvent

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class SyntheticTrainer:
    """Gaussians (means, log scales, quats, opacity logits, colours) fit by Adam to a fixed target."""

    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.params = {
            "means": torch.randn(n, 3, generator=g),
            "scales": torch.full((n, 3), -3.0),
            "quats": torch.randn(n, 4, generator=g),
            "opacities": torch.zeros(n),
            "colors": torch.rand(n, 3, generator=g),
        }
        for p in self.params.values():
            p.requires_grad_(True)
        self.target = torch.rand(n, 3, generator=g)
        self.opt = torch.optim.Adam(self.params.values(), lr=1e-2)
        self.W = torch.randn(64, 64, generator=g) / 8

    def step(self) -> float:
        p = self.params
        feats = torch.cat([p["means"], p["scales"].exp(), torch.nn.functional.normalize(p["quats"], dim=-1),
                           p["opacities"].sigmoid()[:, None], p["colors"]], dim=1)  # (N, 14)
        h = torch.tanh(torch.nn.functional.pad(feats, (0, 50)) @ self.W)
        loss = ((h[:, :3] + p["colors"] - self.target) ** 2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def render(self, cam_from_world: np.ndarray, K: np.ndarray, w: int, h: int) -> np.ndarray:
        """Point-splat image of the means (z-buffer-free accumulate), (h, w, 3) uint8."""
        R = torch.as_tensor(cam_from_world[:, :3], dtype=torch.float32)
        t = torch.as_tensor(cam_from_world[:, 3], dtype=torch.float32)
        x = self.params["means"] @ R.T + t
        ok = x[:, 2] > 1e-3
        x, c = x[ok], self.params["colors"][ok].clamp(0, 1)
        u = (K[0, 0] * x[:, 0] / x[:, 2] + K[0, 2]).long()
        v = (K[1, 1] * x[:, 1] / x[:, 2] + K[1, 2]).long()
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        img = torch.zeros(h * w, 3)
        img.index_add_(0, (v * w + u)[inside], c[inside])
        return (img.clamp(0, 1) * 255).to(torch.uint8).reshape(h, w, 3).numpy()

    @torch.no_grad()
    def splats(self) -> dict:
        p = self.params
        return {"means": p["means"].numpy().copy(), "quats_wxyz": p["quats"].numpy().copy(),
                "scales": p["scales"].exp().numpy(), "opacities": p["opacities"].sigmoid().numpy(),
                "rgbs": p["colors"].clamp(0, 1).numpy()}


def descendants_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's descendants (the browser), Linux only."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    me, total = os.getpid(), 0.0
    for pid, (ppid, cpu) in stats.items():
        p = ppid
        while p not in (0, 1, me) and p in stats:
            p = stats[p][0]
        if p == me and pid != me:
            total += cpu
    return total


def run_loop(trainer: SyntheticTrainer, steps: int, monitor=None) -> tuple[float, float, float, float]:
    """Run ``steps`` training steps, calling ``monitor`` after each.

    Returns ``(steps per second, CPU seconds of the training thread, CPU seconds of the rest of the
    process, CPU seconds of child processes)``: the third is what the viewer's threads (and viser's)
    used meanwhile, the fourth what the browser used; load from other processes on a shared machine
    does not distort them.
    """
    t0, c0, p0, b0 = time.perf_counter(), time.thread_time(), time.process_time(), descendants_cpu()
    for i in range(steps):
        loss = trainer.step()
        if monitor is not None:
            monitor(TrainEvent("splat", i + 1, steps, {"loss": loss, "num_gaussians": len(trainer.params["means"])},
                               render=trainer.render, splats=trainer.splats))
    wall, train_cpu = time.perf_counter() - t0, time.thread_time() - c0
    return steps / wall, train_cpu, (time.process_time() - p0) - train_cpu, descendants_cpu() - b0


def wait_connected(server, timeout: float = 30.0) -> None:
    from recon3d.viewer.server import has_camera

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(has_camera(c) for c in server.get_clients().values()):
            return
        time.sleep(0.1)
    raise RuntimeError("the browser did not connect")


def paired_chunks(trainer: SyntheticTrainer, monitor, pairs: int, chunk: int) -> dict:
    """Alternate ``chunk``-step runs without and with ``monitor`` (``pairs`` times each).

    Alternating short runs cancels the slow drift of the load other processes put on a shared machine;
    the slowdown is the median over pairs of ``1 - (steps/s with) / (steps/s without)``.
    """
    off, on = [], []
    for _ in range(pairs):
        off.append(run_loop(trainer, chunk))
        on.append(run_loop(trainer, chunk, monitor))
    slow = [1 - b[0] / a[0] for a, b in zip(off, on)]
    return {
        "steps_per_s_without": statistics.median(r[0] for r in off),
        "steps_per_s_with": statistics.median(r[0] for r in on),
        "slowdown_median": statistics.median(slow),
        "slowdown_pairs": slow,
        "viewer_cpu_per_training_cpu": sum(r[2] for r in on) / sum(r[1] for r in on),
        "browser_cpu_per_training_cpu_without": sum(r[3] for r in off) / sum(r[1] for r in off),
        "browser_cpu_per_training_cpu_with": sum(r[3] for r in on) / sum(r[1] for r in on),
    }


def main(chunk: int = 20, pairs: int = 10, gaussians: int = 50_000, out: Path = RESULTS) -> dict:
    from playwright.sync_api import sync_playwright

    from recon3d.scenes import scene_workspace
    from recon3d.viewer.live import LiveConfig, LiveViewer

    torch.set_num_threads(1)
    cache = Path(os.environ.get("RECON3D_TEST_CACHE", "/tmp/r3dcache")) / "orbit"
    if not (cache / "images").is_dir():
        raise SystemExit(f"{cache}: render the orbit scene first (`recon3d scene render orbit -o {cache}`)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_"))
    ws = scene_workspace(cache, tmp / "ws")
    trainer = SyntheticTrainer(gaussians)
    run_loop(trainer, 10)  # warm up
    sessions = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for name, with_browser, live_splats in (("no browser connected", False, False),
                                                ("browser connected (defaults)", True, False),
                                                ("browser connected, Update splats on", True, True)):
            lv = LiveViewer(ws, port=0, quiet=True, config=LiveConfig(live_splats=live_splats))
            page = None
            if with_browser:
                page = browser.new_page(viewport={"width": 1000, "height": 700})
                page.goto(lv.url)
                wait_connected(lv.server)
                time.sleep(2.0)
            res = paired_chunks(trainer, lv, pairs, chunk)
            res.update(renders=lv.renders, splat_uploads=lv.splat_uploads, errors=lv.errors)
            sessions[name] = res
            if page is not None:
                page.close()
            lv.close()
            print(f"{name}: slowdown {100 * res['slowdown_median']:.1f} %", flush=True)
        browser.close()
    shutil.rmtree(tmp, ignore_errors=True)

    report = {"gaussians": gaussians, "chunk_steps": chunk, "pairs": pairs, "torch_threads": 1,
              "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "sessions": sessions}
    lines = [
        "# Live viewer overhead (`recon3d train --view`), synthetic training loop",
        "",
        f"A CPU stand-in for a splat trainer ({gaussians:,} Gaussians, Adam, torch 1 thread) calls the "
        "`LiveViewer` monitor at **every** step with a real `render` closure and `splats()`. Runs of "
        f"{chunk} steps alternate without / with the monitor, {pairs} pairs per session; slowdown = median "
        "over pairs of 1 - (steps/s with) / (steps/s without). CPU shares: CPU time of the viewer's threads "
        "(and viser's), and of the browser processes, per CPU second of the training thread. "
        f"Machine: {os.cpu_count()} cores shared with other jobs (load average {os.getloadavg()[0]:.1f}); "
        "browser: headless chromium with software WebGL (SwiftShader) on the same cores.",
        "",
        *md_table(["session", "steps/s without", "steps/s with", "slowdown (median)", "viewer threads CPU",
                   "browser CPU without / with", "renders", "splat uploads"], [
            (k, f"{v['steps_per_s_without']:.1f}", f"{v['steps_per_s_with']:.1f}",
             f"{100 * v['slowdown_median']:.1f} %", f"{100 * v['viewer_cpu_per_training_cpu']:.1f} %",
             f"{100 * v['browser_cpu_per_training_cpu_without']:.0f} % / "
             f"{100 * v['browser_cpu_per_training_cpu_with']:.0f} %", v["renders"], v["splat_uploads"])
            for k, v in sessions.items()]),
        "",
        "Per-pair slowdowns (%): " + "; ".join(
            f"{k}: " + ", ".join(f"{100 * x:.0f}" for x in v["slowdown_pairs"]) for k, v in sessions.items()),
        "",
        "Renders of the browser's view run on the viewer's thread at most once a second and within 5 % of "
        "wall time; with \"Update splats\" on, every upload makes the browser re-sort and re-upload all "
        "Gaussians, which in software WebGL costs the shared cores far more than the monitor itself, so "
        "that box is off by default (the final Gaussians are always sent).",
    ]
    write_report(out / "viewer_overhead.md", lines, report)
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=20, help="steps per run (default 20)")
    ap.add_argument("--pairs", type=int, default=10, help="without/with pairs per session (default 10)")
    ap.add_argument("--gaussians", type=int, default=50_000)
    a = ap.parse_args()
    main(a.chunk, a.pairs, a.gaussians)
