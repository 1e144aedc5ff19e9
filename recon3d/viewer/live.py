"""The live training viewer: ``recon3d train WS --view``.

:class:`LiveViewer` is the ``monitor`` a training stage calls with :class:`~recon3d.monitor.TrainEvent`
every few steps. It serves the same viewer as ``recon3d view`` plus a "Training" panel: step and
progress, the latest metrics (loss, PSNR, Gaussian count, steps/s), the loss (and PSNR) curve, a
render of the browser's current view through ``event.render`` and, for splat runs, the Gaussians
through ``event.splats`` (at the end of the run, and every few seconds when "Update splats" is on).

Training must not slow down: ``__call__`` only stores the event and appends a few numbers (a few
microseconds); a background thread does the rest, throttled. Renders and splat uploads happen only
while a browser is connected, at most every ``render_interval`` / ``splats_interval`` seconds, and
never more than ``max_duty`` of the wall time (after a piece of work that took ``t`` seconds the
next waits at least ``t / max_duty``); each render is sized to take about ``render_budget`` seconds
(a NeRF on a CPU renders a few thousand rays per second: its views come out small rather than late).
``scripts/bench_viewer_overhead.py`` measures the overhead.

When the run ends (the ``done`` event, then :meth:`LiveViewer.close`), the panel says so (with the
held-out scores the last event carries), the final render and Gaussians are sent, and ``close``
waits (at most ``drain_timeout`` s) until they have left for the connected browsers before it stops
the server: the page keeps showing that last state after the server is gone.

For backends: ``event.render`` and ``event.splats`` are called from the viewer's thread while
training goes on (possibly after later steps, and once more after the last event). They should only
read the model (``torch.no_grad()``), and may fail when parameters change size mid-call
(densification): failures are caught, shown in the panel and retried at the next refresh.
``splats()`` may return activated values (scales as standard deviations, opacities in [0, 1]) or
raw ones (log scales, logits); :func:`recon3d.viewer.data.splat_arrays` tells them apart.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from recon3d.core.monitor import TrainEvent
from recon3d.core.workspace import Workspace
from recon3d.viewer import data as D
from recon3d.viewer.app import ViewerApp, ViewerConfig, WorkspaceContent
from recon3d.viewer.panels import check_render
from recon3d.viewer.server import (
    client_cam_from_world,
    client_K,
    drain,
    has_camera,
    render_size,
    server_url,
    start_server,
    stop_server,
)


@dataclass
class LiveConfig:
    """How often the live viewer refreshes and how much work it may do."""

    gui_interval: float = 0.5
    """Seconds between refreshes of the numbers and curves."""
    render_interval: float = 1.0
    """Least seconds between renders of the browser's view through ``event.render``."""
    render_size: int = 480
    """Longest side, in pixels, of those renders (at most)."""
    render_budget: float = 0.5
    """Seconds one render should take. Each render is sized from the speed of the previous one, so a model
    that renders slowly (a NeRF on a CPU: a few thousand rays/s) is drawn smaller, down to
    ``min_render_size``, instead of holding training up for seconds (a NeRF render pauses its training)."""
    min_render_size: int = 64
    """Smallest longest side of a render; the first render is twice this (until its speed is known)."""
    live_splats: bool = False
    """Initial state of the "Update splats" box: send the current Gaussians to the scene while training
    (every ``splats_interval`` s). Off by default: the browser re-sorts and re-uploads all of them each
    time, which costs far more CPU than the renders (see benchmarks/results/viewer_overhead.md). The
    final Gaussians are always sent when training ends."""
    splats_interval: float = 5.0
    """Least seconds between uploads of the current Gaussians (splat runs)."""
    max_live_splats: int = 300_000
    """Most Gaussians uploaded per refresh (random subset beyond)."""
    max_duty: float = 0.05
    """Largest share of wall time renders and uploads may take (each waits ``duration / max_duty``)."""
    max_history: int = 2000
    """Points kept per curve; beyond it older points are thinned (every other one dropped)."""
    drain_timeout: float = 3.0
    """At the end, most seconds to wait for the last panel, render and splats to be sent to connected
    browsers before the server stops (no wait when none is connected)."""


class _History:
    """Steps and scalar metrics for the curves, thinned to stay short (append is O(1) amortised)."""

    def __init__(self, max_points: int):
        self.max_points = max(int(max_points), 10)
        self.stride = 1
        self.rows: list[tuple[float, float, float]] = []
        self._count = 0

    def add(self, step: int, loss: float, psnr: float) -> None:
        self._count += 1
        if self._count % self.stride:
            return
        self.rows.append((float(step), loss, psnr))
        if len(self.rows) > 2 * self.max_points:
            self.rows = self.rows[::2]
            self.stride *= 2

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.array(self.rows, np.float64).reshape(-1, 3)
        return a[:, 0], a[:, 1], a[:, 2]


_ROWS = (("loss", "loss", "{:.4g}"), ("psnr", "PSNR (train)", "{:.2f} dB"), ("num_gaussians", "Gaussians", "{:,.0f}"),
         ("steps_per_s", "steps/s", "{:.1f}"), ("psnr_test", "held-out PSNR", "{:.2f} dB"),
         ("ssim_test", "held-out SSIM", "{:.4f}"))
"""Metrics shown first in the panel: key, label, format (other scalars follow under their own names)."""


def _for_panel(img: np.ndarray, width: int = 320) -> np.ndarray:
    """A small render enlarged to ``width`` px (the panel shows images at their own size, up to its width)."""
    h, w = img.shape[:2]
    if w >= width:
        return img
    import cv2

    return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR)


def _scalar(metrics: dict, key: str) -> float:
    try:
        return float(metrics.get(key, float("nan")))
    except (TypeError, ValueError):
        return float("nan")


class LiveViewer:
    """A browser viewer that follows a training run (a :class:`~recon3d.monitor.Monitor`).

    Args:
        ws: the workspace being trained (its cameras, points and splats are shown too).
        host, port: where to serve (``UserError`` when the port is taken); ``port=0`` picks one.
        config: refresh rates and limits.
        viewer_config: what the workspace layers draw.
        quiet: do not print the URL.
    """

    def __init__(self, ws: Workspace | str, host: str = "127.0.0.1", port: int = 8080,
                 config: LiveConfig | None = None, viewer_config: ViewerConfig | None = None, quiet: bool = False):
        self.ws = Workspace(ws) if not isinstance(ws, Workspace) else ws
        self.config = config or LiveConfig()
        content = WorkspaceContent.load(self.ws)
        self.server = start_server(host, port)
        self.url = server_url(host, self.server.get_port())
        self._quiet = quiet
        if not quiet:
            print(f"recon3d train: live viewer at {self.url} (open it in a browser)", file=sys.stderr, flush=True)
        try:
            self.app = ViewerApp(self.server, content, viewer_config)
            self.app.build()
            self._build_gui()
        except BaseException:
            stop_server(self.server)
            raise
        self._lock = threading.Lock()
        self._latest: Optional[TrainEvent] = None
        self._train_metrics: dict = {}
        self._render_rate: Optional[float] = None  # pixels per second of the last render
        self._first_event = True
        self._history = _History(self.config.max_history)
        self._wake = threading.Event()
        self._closing = False
        self._active_client = None
        self._next_gui = self._next_render = self._next_splats = 0.0
        self._final_splats_done = False
        self._final_event: Optional[TrainEvent] = None
        self.renders = 0
        """Renders of the browser's view done so far."""
        self.splat_uploads = 0
        """Splat refreshes sent so far."""
        self.errors: list[str] = []
        """First line of each failed render / upload (shown in the panel too)."""
        self.server.on_client_connect(self._on_connect)
        self._thread = threading.Thread(target=self._worker, name="recon3d-live-viewer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------ monitor interface
    def __call__(self, event: TrainEvent) -> None:
        """Take a training event; returns at once (the work happens on the viewer's thread)."""
        m = event.metrics
        loss = _scalar(m, "loss")
        psnr = _scalar(m, "psnr")
        with self._lock:
            self._latest = event
            if not event.done:
                self._train_metrics = m
                self._history.add(event.step, loss, psnr)
        self._wake.set()

    def close(self) -> None:
        """Show the last event (with a note that the viewer stops), send it out, stop the thread and the server."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=30.0)
        drain(self.server, self.config.drain_timeout)
        stop_server(self.server)
        if not self._quiet:
            finished = self._latest is not None and self._latest.done
            print("recon3d train: live viewer stopped"
                  + (f"; `recon3d view {self.ws.root}` shows the result" if finished else ""),
                  file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------ GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        with gui.add_folder("Training", order=0):
            self.status = gui.add_markdown("Waiting for the first training step…")
            self.progress = gui.add_progress_bar(0.0, animated=False)
            self.live_render = gui.add_checkbox("Render my view", True,
                                                hint="render your current view with the model being trained")
            self.render_background = gui.add_checkbox("…behind the scene", False,
                                                      hint="show the render as the scene background as well")
            self.live_splats = gui.add_checkbox("Update splats", self.config.live_splats,
                                                hint="send the current Gaussians to the scene every few seconds "
                                                     "(heavy for the browser; the final ones are always sent)")
            self.render_image = gui.add_image(np.full((4, 4, 3), 230, np.uint8), label="current view",
                                              format="jpeg", visible=False)
            self._curves = gui.add_folder("Curves")
            self.loss_plot = None
            self.psnr_plot = None
        self.render_background.on_update(lambda _e: self._clear_background())

    def _on_connect(self, client) -> None:
        client.camera.on_update(lambda camera: setattr(self, "_active_client", camera.client))

    def _clear_background(self) -> None:
        if not self.render_background.value:
            for client in self.server.get_clients().values():
                client.scene.set_background_image(None)

    def _target_client(self):
        clients = self.server.get_clients()
        active = self._active_client
        if active is not None and active.client_id in clients and has_camera(active):
            return active
        return next((c for c in clients.values() if has_camera(c)), None)

    # ---------------------------------------------------------------------------------- worker
    def _worker(self) -> None:
        while True:
            self._wake.wait(timeout=0.25)
            self._wake.clear()
            closing = self._closing
            with self._lock:
                event = self._latest
            if event is not None and event is not self._final_event:
                final = closing or event.done
                try:
                    self._refresh(event, final=final)
                except Exception as exc:  # noqa: BLE001 - the viewer must never stop training
                    self._note_error("viewer", exc)
                if final:
                    self._final_event = event
            if closing:
                return

    def _refresh(self, event: TrainEvent, final: bool) -> None:
        now = time.monotonic()
        if self._first_event:
            self._first_event = False
            if event.splats is None:  # a NeRF run: nothing to send as splats
                self.live_splats.visible = False
        if final or now >= self._next_gui:
            self._update_panel(event)
            self._next_gui = now + self.config.gui_interval
        if event.render is not None and self.live_render.value and (final or now >= self._next_render):
            client = self._target_client()
            if client is not None:
                dt = self._render(event, client)
                self._next_render = time.monotonic() + max(self.config.render_interval, dt / self.config.max_duty)
        if event.splats is not None:
            due = self.live_splats.value and now >= self._next_splats and self.server.get_clients()
            if due or (final and not self._final_splats_done):
                dt = self._upload_splats(event)
                self._next_splats = time.monotonic() + max(self.config.splats_interval, dt / self.config.max_duty)
                self._final_splats_done = final

    def _update_panel(self, event: TrainEvent) -> None:
        with self._lock:
            # The last event may carry only the held-out scores: keep the last training numbers beside them.
            m = {**self._train_metrics, **event.metrics} if event.done else dict(event.metrics)
        frac = min(1.0, event.step / event.total_steps) if event.total_steps else 0.0
        state = "finished" if event.done else "stopped" if self._closing else "training"
        rows = []
        for key, label, fmt in _ROWS:
            v = _scalar(m, key)
            if np.isfinite(v) and not (key == "steps_per_s" and v <= 0):
                rows.append((label, fmt.format(v)))
        sps = _scalar(m, "steps_per_s")
        if np.isfinite(sps) and sps > 0 and not event.done and not self._closing:
            rows.append(("time left", f"{(event.total_steps - event.step) / sps / 60:.1f} min"))
        known = {key for key, _, _ in _ROWS}
        others = [(k.replace("_", " "), f"{v:.4g}") for k, v in m.items()
                  if k not in known and isinstance(v, (int, float))]
        table = "\n".join(f"| {k} | {v} |" for k, v in rows + others[:6])
        note = ""
        if event.done:
            note = ("\n\n**Training finished.** The viewer stops now; this page keeps showing the last state. "
                    f"`recon3d view {self.ws.root}` serves the result again.")
        elif self._closing:
            note = ("\n\n**Training stopped.** The viewer stops now; this page keeps showing the last state. "
                    "Rerun the same command to resume.")
        self.status.content = (f"**{event.backend}** {state}: step {event.step:,} / {event.total_steps:,}"
                               + (f"\n\n| | |\n|---|---|\n{table}" if table else "") + note)
        self.progress.value = 100.0 * frac
        with self._lock:
            steps, loss, psnr = self._history.arrays()
        self._update_plots(steps, loss, psnr)

    def _update_plots(self, steps: np.ndarray, loss: np.ndarray, psnr: np.ndarray) -> None:
        gui = self.server.gui
        for attr, values, label, color, log in (("loss_plot", loss, "loss", "#d62728", True),
                                                ("psnr_plot", psnr, "PSNR (dB)", "#1f77b4", False)):
            ok = np.isfinite(values) & ((values > 0) if log else True)
            if ok.sum() < 2:
                continue
            data = (steps[ok], values[ok])
            plot = getattr(self, attr)
            if plot is None:
                with self._curves:
                    plot = gui.add_uplot(
                        data, ({"label": "step"}, {"label": label, "stroke": color, "width": 2}),
                        title=label, scales={"x": {"time": False}, "y": {"distr": 3} if log else {}},
                        aspect=1.8)
                setattr(self, attr, plot)
            else:
                plot.data = data

    def _render_side(self, camera) -> int:
        """Longest side of the next render: what ``render_budget`` seconds buy at the last render's speed."""
        cfg = self.config
        if self._render_rate is None:
            side = 2 * cfg.min_render_size
        else:
            w, h = render_size(camera, cfg.render_size)
            side = math.sqrt(cfg.render_budget * self._render_rate * max(w, h) / max(min(w, h), 1))
        return int(min(max(side, cfg.min_render_size), cfg.render_size))

    def _render(self, event: TrainEvent, client) -> float:
        t0 = time.perf_counter()
        try:
            cam = client.camera
            w, h = render_size(cam, self._render_side(cam))
            img = check_render(event.render(client_cam_from_world(cam), client_K(cam, w, h), w, h), w, h)
        except Exception as exc:  # noqa: BLE001 - e.g. the model changed size mid-render; try again later
            self._note_error("render", exc)
            return time.perf_counter() - t0
        self._render_rate = w * h / max(time.perf_counter() - t0, 1e-4)
        self.render_image.image = _for_panel(img)
        self.render_image.visible = True
        if self.render_background.value:
            client.scene.set_background_image(img, format="jpeg")
        self.renders += 1
        return time.perf_counter() - t0

    def _upload_splats(self, event: TrainEvent) -> float:
        t0 = time.perf_counter()
        try:
            d = event.splats()
            arrays = D.splat_arrays(d["means"], d["scales"], d["quats_wxyz"], d["opacities"], d["rgbs"],
                                    self.config.max_live_splats)
        except Exception as exc:  # noqa: BLE001
            self._note_error("splats", exc)
            return time.perf_counter() - t0
        self.app.set_splats(arrays)
        self.app.ensure_checkbox("splats")
        self.splat_uploads += 1
        return time.perf_counter() - t0

    def _note_error(self, what: str, exc: Exception) -> None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"{what} failed: {type(exc).__name__}: {first}"
        if msg not in self.errors:
            self.errors.append(msg)
            if len(self.errors) <= 5 and not self._quiet:
                print(f"recon3d train: live viewer: {msg}", file=sys.stderr, flush=True)
        try:
            self.status.content = self.status.content.split("\n\n⚠")[0] + f"\n\n⚠ {msg}"
        except Exception:  # noqa: BLE001
            pass
