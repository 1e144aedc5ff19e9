"""Running stage work on a Ray cluster: connecting, checking the workers, and the task loop.

``--cluster ADDRESS`` (or ``RECON3D_CLUSTER``) on ``recon3d sfm``, ``recon3d run`` and
``recon3d stereo WS --pairs auto``:

* ``local``: start a Ray instance on this machine with ``--workers N`` worker processes
  (default: one per CPU core); it stops when the command ends.
* ``host:port`` or ``ray://host:port``: join a running cluster (``ray start --head`` on one
  machine, ``ray start --address host:port`` on the others).

Without it nothing changes and Ray is never imported. :func:`connect` checks, before any output
is written, that the address answers, that the cluster runs this Ray and every node with CPUs
imports this very recon3d and pycolmap (a probe task pinned to each node); each problem is one
:class:`UserError` line (exit 2).

:func:`run_jobs` is the driver's loop: it keeps a bounded number of tasks in flight, hands each
result to the stage (the driver is the only writer of the outputs), and when a task fails (its
worker died, or it raised) gives its work one more try, split into one task per item; an item
that fails twice is given up with a warning naming it. :class:`ClusterSession` counts tasks per
node and retries for the reports.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from recon3d.core.errors import UserError

ENV = "RECON3D_CLUSTER"
"""Environment variable with the default ``--cluster`` address."""

OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""Object store of a ``local`` Ray instance (features and photos pass through it, briefly)."""

CONNECT_TIMEOUT_S = 5.0
"""How long an address may take to accept a TCP connection before it counts as unreachable."""


@dataclass
class ClusterOptions:
    """Where stage work runs (``--cluster``, ``--workers``, ``--ship-images``)."""

    address: str = ""
    """'local', 'host:port' or 'ray://host:port'; '' means this process only (no Ray)."""
    workers: int = 0
    """Worker processes of a 'local' instance (0: one per CPU core)."""
    ship_images: bool = False
    """Send the photos to the workers through Ray's object store instead of letting each worker
    read them from the same path (for nodes without shared storage)."""

    @property
    def enabled(self) -> bool:
        return bool(self.address)


def resolve(options: ClusterOptions | None) -> ClusterOptions | None:
    """``options`` with ``RECON3D_CLUSTER`` as the default address; None when no cluster is asked for."""
    options = options or ClusterOptions()
    address = options.address or os.environ.get(ENV, "").strip()
    if not address:
        return None
    if options.workers < 0:
        raise UserError(f"--workers {options.workers}: give a positive number of worker processes (or 0: one per core)")
    return ClusterOptions(address, options.workers, options.ship_images)


def add_cluster_arguments(parser) -> None:
    """``--cluster``, ``--workers`` and ``--ship-images`` on an argparse parser."""
    group = parser.add_argument_group("cluster (Ray)")
    group.add_argument("--cluster", metavar="ADDRESS", default="",
                       help=f"run feature extraction and matching (stereo: depth maps) as Ray tasks: 'local' starts "
                       f"Ray on this machine, host:port or ray://host:port joins a cluster (default: ${ENV})")
    group.add_argument("--workers", type=int, default=0, metavar="N",
                       help="with --cluster local: worker processes (default: one per CPU core)")
    group.add_argument("--ship-images", action="store_true",
                       help="with --cluster: send photos through Ray's object store (nodes without shared storage)")


def cluster_from_args(args) -> ClusterOptions | None:
    """The :class:`ClusterOptions` of parsed arguments (None: no cluster)."""
    return resolve(ClusterOptions(getattr(args, "cluster", "") or "", getattr(args, "workers", 0) or 0,
                                  bool(getattr(args, "ship_images", False))))


def _host_port(address: str) -> tuple[str, int]:
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--cluster {address!r}: not an address; use 'local', host:port or ray://host:port")
    return host.strip("[]"), int(port)


def _probe() -> dict:
    """Runs on a worker: what it has installed."""
    import importlib
    import platform

    import pycolmap
    import ray

    recon3d = importlib.import_module("recon3d")  # the installation under test, not a layer dependency
    return {"node": ray.get_runtime_context().get_node_id(), "recon3d": recon3d.__version__,
            "recon3d_path": os.path.dirname(recon3d.__file__), "ray": ray.__version__,
            "pycolmap": pycolmap.__version__, "python": platform.python_version()}


@dataclass
class ClusterSession:
    """A connection to a Ray cluster, with per-node task counts for the reports."""

    address: str
    nodes: dict[str, dict] = field(default_factory=dict)
    """node id -> {"ip": str, "cpus": float}."""
    started_local: bool = False
    ship_images: bool = False
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    """node id -> {kind: finished tasks}."""
    retries: int = 0
    """Tasks submitted again after a failure."""
    failures: list[str] = field(default_factory=list)
    """One line per failed task (what, why)."""
    task_s: dict[str, float] = field(default_factory=dict)
    """kind -> seconds the workers spent in tasks of that kind."""
    task_cpu_s: dict[str, float] = field(default_factory=dict)
    """kind -> CPU seconds of those tasks (their worker process)."""

    @property
    def cpus(self) -> int:
        return max(1, int(sum(n["cpus"] for n in self.nodes.values())))

    def record(self, kind: str, node: str, seconds: float = 0.0, cpu_s: float = 0.0) -> None:
        per = self.tasks.setdefault(node, {})
        per[kind] = per.get(kind, 0) + 1
        self.task_s[kind] = self.task_s.get(kind, 0.0) + seconds
        self.task_cpu_s[kind] = self.task_cpu_s.get(kind, 0.0) + cpu_s

    def summary(self) -> dict:
        """Where the work ran: ``{"address", "nodes": [{"node", "ip", "cpus", "tasks": {kind: n}}], "retries", ...}``."""
        nodes = [{"node": nid[:12], "ip": info["ip"], "cpus": info["cpus"], "tasks": dict(self.tasks.get(nid, {}))}
                 for nid, info in self.nodes.items()]
        return {"address": self.address, "nodes": nodes, "nodes_used": sum(1 for n in nodes if n["tasks"]),
                "retries": self.retries, "failures": list(self.failures), "ship_images": self.ship_images,
                "task_s": {k: round(v, 3) for k, v in self.task_s.items()},
                "task_cpu_s": {k: round(v, 3) for k, v in self.task_cpu_s.items()}}

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> ClusterSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def summary_line(info: dict) -> str:
    """One line for terminal summaries, e.g. ``cluster HEAD:6379: 2/2 nodes used (a1b2c3 10.0.0.1: 2 extract + 5 match
    tasks, ...), 1 task retries``."""
    parts = [f"{n['node'][:6]} {n['ip']}: " + (" + ".join(f"{v} {k}" for k, v in sorted(n["tasks"].items())) or "0")
             + " tasks" for n in info.get("nodes", [])]
    return (f"cluster {info.get('address')}: {info.get('nodes_used', 0)}/{len(info.get('nodes', []))} nodes used "
            f"({', '.join(parts)}), {info.get('retries', 0)} task retries")


def connect(options: ClusterOptions, log: Callable[[str], None] | None = None) -> ClusterSession:
    """Connect to (or start) the cluster of ``options`` and check every node; one :class:`UserError` line
    (exit 2) for an unreachable address, a Ray or recon3d version mismatch, or a node without recon3d."""
    address = options.address
    local = address == "local"
    if not local:
        host, port = _host_port(address)
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as e:
            raise UserError(f"--cluster {address}: cannot reach a Ray cluster there ({e.strerror or e}); start one with "
                            "`ray start --head` or give the address `ray start` printed") from None
    try:
        import ray
    except ImportError:
        raise UserError("--cluster needs Ray on this machine: pip install 'recon3d[cluster]'") from None
    import logging

    if ray.is_initialized():
        ray.shutdown()
    try:
        if local:
            ray.init(address="local", num_cpus=options.workers or os.cpu_count() or 1,  # not $RAY_ADDRESS
                     object_store_memory=OBJECT_STORE_BYTES,
                     include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - Ray raises RuntimeError, ConnectionError, ... : all one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "version" in str(e).lower():
            raise UserError(f"--cluster {address}: the cluster runs another Ray or Python than this machine "
                            f"(Ray {ray.__version__}): {first}; install the same versions on every node") from None
        raise UserError(f"--cluster {address}: could not join the Ray cluster: {first}") from None
    session = ClusterSession(address, started_local=local, ship_images=options.ship_images)
    try:
        _check_nodes(session)
    except BaseException:
        session.close()
        raise
    return session


def _check_nodes(session: ClusterSession) -> None:
    import importlib
    import platform

    import pycolmap
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    recon3d = importlib.import_module("recon3d")  # this driver's installation (its version)

    alive = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if not alive:
        raise UserError(f"--cluster {session.address}: the cluster has no node with CPUs; start workers with "
                        "`ray start --address HOST:PORT`")
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in alive}
    mine = {"recon3d": recon3d.__version__, "ray": ray.__version__, "pycolmap": pycolmap.__version__,
            "python": platform.python_version()}
    for n in alive:
        where = f"node {n['NodeManagerAddress']} ({n['NodeID'][:12]})"
        try:
            got = ray.get(refs[n["NodeID"]], timeout=120)
        except Exception as e:  # noqa: BLE001 - the worker could not even run the probe
            text = str(e)
            if "recon3d" in text and ("No module named" in text or "ModuleNotFoundError" in text):
                raise UserError(f"--cluster {session.address}: {where} cannot import recon3d; install it on every node "
                                "(pip install 'recon3d[cluster]') or put it on a path all nodes share") from None
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            raise UserError(f"--cluster {session.address}: {where} failed a test task: "
                            f"{lines[-1] if lines else type(e).__name__}") from None
        for key in ("recon3d", "pycolmap", "ray", "python"):
            if got[key] != mine[key]:
                raise UserError(f"--cluster {session.address}: {where} has {key} {got[key]} but this machine has "
                                f"{mine[key]}; install the same version on every node")
        session.nodes[n["NodeID"]] = {"ip": n["NodeManagerAddress"], "cpus": float(n["Resources"]["CPU"])}


@dataclass
class Job:
    """One task's worth of work: ``items`` (e.g. photo names or pairs), tried ``attempt`` times before."""

    items: list
    attempt: int = 0
    payload: Any = None


def run_jobs(session: ClusterSession, kind: str, jobs: list[Job], submit: Callable[[Job], Any],
             on_result: Callable[[Job, dict], list], on_give_up: Callable[[Any, str], None],
             max_in_flight: int | None = None) -> None:
    """Run ``jobs`` as Ray tasks until each item is done or given up.

    Args:
        session: the connection (counts tasks and retries).
        kind: what the tasks do, for the counts ("extract", "match", "depth").
        jobs: the work, in order.
        submit: starts one task for a job, returns its ObjectRef. The task returns a dict with at
            least ``node`` (its node id) and ``seconds``.
        on_result: takes a finished job and its result, writes it; returns the items that failed
            inside the task (they get one more try each, as single-item jobs).
        on_give_up: called with an item and the reason when it failed twice.
        max_in_flight: most tasks at once (default: twice the cluster's CPUs).
    """
    import ray

    queue = deque(jobs)
    limit = max_in_flight or 2 * session.cpus
    flight: dict = {}

    def again(job: Job, items: list, reason: str) -> None:
        for item in items:
            if job.attempt >= 1:
                session.failures.append(f"{kind} {item}: {reason}")
                on_give_up(item, reason)
            else:
                session.retries += 1
                queue.append(Job([item], job.attempt + 1, job.payload))

    while queue or flight:
        while queue and len(flight) < limit:
            job = queue.popleft()
            flight[submit(job)] = job
        ready, _ = ray.wait(list(flight), num_returns=1)
        for ref in ready:
            job = flight.pop(ref)
            try:
                out = ray.get(ref)
            except ray.exceptions.RayError as e:
                lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
                reason = (type(e).__name__ + (f": {lines[-1][:200]}" if lines else ""))
                again(job, job.items, reason)
                continue
            session.record(kind, out.get("node", "?"), out.get("seconds", 0.0), out.get("cpu_s", 0.0))
            failed = on_result(job, out)
            for item, reason in failed or []:
                again(job, [item], reason)


def node_id() -> str:
    """The Ray node id of the calling worker."""
    import ray

    return ray.get_runtime_context().get_node_id()


def cpu_time() -> float:
    return time.process_time()
