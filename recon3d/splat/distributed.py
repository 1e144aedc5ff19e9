"""Data-parallel splat training over processes with ``torch.distributed`` (gloo on CPU, NCCL on GPUs).

Every process holds the same Gaussians. Each step the global batch of ``batch_size`` views is split
among the processes; each renders its own views and back-propagates ``loss / batch_size``, then the
gradients of every parameter are summed over the processes (so the update is the one of a single
process averaging the whole batch), and so are the densification statistics (2D gradient sums and
counts; screen radii by maximum), so every process makes the same densification decisions. After
each densification the processes check that they hold the same number of Gaussians.

Rank 0 is the only writer: it owns the workspace (lock, stage marker, checkpoints, outputs, the
live viewer) and sends its starting state (fresh or resumed from a checkpoint) to the others, which
only compute. Launch:

* ``recon3d train WS --procs N``: the command's process is rank 0 and starts N - 1 worker processes
  (``torch.multiprocessing``, spawn) that meet it on a free TCP port of 127.0.0.1;
* ``torchrun --nproc-per-node N -m recon3d train WS``: ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` come
  from torchrun (rank 0 takes the workspace lock, the others do not).

Ctrl-C and SIGTERM are handled by rank 0 (workers started by ``--procs`` ignore Ctrl-C): it
checkpoints the step reached and stops the workers. A worker that dies makes rank 0 checkpoint
and stop with one line; the rerun resumes.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from recon3d.core.errors import UserError

TIMEOUT_S = 600
"""How long a process waits for the others in one collective before giving up."""


class PeerLost(RuntimeError):
    """Another training process stopped (a collective failed)."""


def _first_sentence(exc: BaseException) -> str:
    """``Connection closed by peer [127.0.0.1]:28580`` of gloo's long message."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"^\[[^\]]*\]\s*", "", lines[-1] if lines else "")
    return text.split(". ")[0].rstrip(".") or type(exc).__name__


def env_rank() -> tuple[int, int]:
    """``(rank, world size)`` set by torchrun (``RANK``, ``WORLD_SIZE``), else ``(0, 1)``."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        return 0, 1


def is_worker() -> bool:
    """Whether this process is a non-zero rank of a torchrun launch (it writes nothing)."""
    rank, world = env_rank()
    return world > 1 and rank > 0


@dataclass
class Comm:
    """The process group of one training run (``world == 1``: a single process, every call a no-op)."""

    rank: int = 0
    world: int = 1
    workers: list = field(default_factory=list)
    """Worker processes this (rank 0) process started (``--procs``)."""
    sent: bool = False
    """Rank 0 has broadcast (the starting state, or None: nothing to train)."""

    @property
    def active(self) -> bool:
        return self.world > 1

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except (RuntimeError, ConnectionError) as exc:  # gloo/NCCL: a peer is gone or timed out
            raise PeerLost(_first_sentence(exc)) from None

    def sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum each tensor over the processes, in place (one flat all-reduce)."""
        if not self.active or not tensors:
            return
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1) for t in tensors])
        self._call(dist.all_reduce, flat, op=dist.ReduceOp.SUM)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset: offset + t.numel()].view_as(t))
            offset += t.numel()

    def max_(self, tensor: torch.Tensor) -> None:
        """Element-wise maximum over the processes, in place."""
        if self.active:
            import torch.distributed as dist

            self._call(dist.all_reduce, tensor, op=dist.ReduceOp.MAX)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (pickled; tensors should be on the CPU)."""
        if not self.active:
            return obj
        import torch.distributed as dist

        self.sent = True
        box = [obj if self.rank == 0 else None]
        self._call(dist.broadcast_object_list, box, src=0)
        return box[0]

    def check_same(self, means: torch.Tensor, step: int) -> None:
        """:class:`UserError` when the processes hold different Gaussians: another number of them, or
        other centres (their sum, exact on identical tensors). ``means``: ``(N, 3)``."""
        if not self.active:
            return
        n, total = float(len(means)), float(means.detach().double().sum())
        t = torch.tensor([n, -n, total, -total], dtype=torch.float64, device=means.device)
        self.max_(t)
        if int(t[0]) != -int(t[1]):
            raise UserError(f"splat: the training processes disagree after densifying at step {step} "
                            f"({-int(t[1])} to {int(t[0])} Gaussians); train with --procs 1")
        if float(t[2]) != -float(t[3]):
            raise UserError(f"splat: the training processes hold different Gaussians at step {step} (their "
                            "updates diverged); train with --procs 1")

    def counts(self, n: int, device: torch.device) -> list[int]:
        """The number of Gaussians each process holds, by rank (``[n]`` for a single process)."""
        if not self.active:
            return [n]
        t = torch.zeros(self.world, dtype=torch.float64, device=device)
        t[self.rank] = n
        self.sum_([t])
        return [int(v) for v in t.tolist()]

    def close(self, wait: bool = True) -> None:
        """Leave the process group; rank 0 also waits for (``wait``) or stops its workers."""
        import torch.distributed as dist

        if self.active and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - a broken group: nothing left to release
                pass
        for p in self.workers:
            if wait:
                p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
        self.workers = []
        self.world = 1  # the group is gone: every call is a no-op now


def backend_for(device: torch.device, world: int) -> str:
    """``nccl`` on CUDA with a GPU per process, else ``gloo`` (CPU, or processes sharing a GPU)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world) or world)  # processes on this machine (torchrun)
    return "nccl" if device.type == "cuda" and torch.cuda.device_count() >= local else "gloo"


def cuda_device(local_rank: int) -> None:
    """Each process on its own GPU (round robin) when CUDA is present."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init(rank: int, world: int, init_method: str, backend: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))


def start(config: Any, ws_root: Path, device: torch.device, worker: Callable[[Any, Any, Comm], None]) -> Comm:
    """The process group of this run: torchrun's (environment), ``config.procs`` spawned workers, or none.

    ``worker(config, workspace, comm)`` is what a spawned process runs (a module-level function).
    """
    rank, world = env_rank()
    if world > 1:
        if config.procs > 1 and config.procs != world:
            raise UserError(f"--procs {config.procs} under torchrun with {world} processes; leave --procs out "
                            "(torchrun starts the processes)")
        _init(rank, world, "env://", backend_for(device, world))
        return Comm(rank, world)
    if config.procs <= 1:
        return Comm()
    import torch.multiprocessing as mp

    init_method = f"tcp://127.0.0.1:{_free_port()}"
    ctx = mp.get_context("spawn")
    workers = []
    for r in range(1, config.procs):
        p = ctx.Process(target=_worker_main, args=(r, config.procs, init_method, config, str(ws_root), worker),
                        daemon=True, name=f"recon3d-splat-rank{r}")
        p.start()
        workers.append(p)
    comm = Comm(0, config.procs, workers)
    try:
        _init(0, config.procs, init_method, backend_for(device, config.procs))
    except Exception as exc:
        comm.close(wait=False)
        raise UserError(f"splat: could not start {config.procs} training processes ({exc}); "
                        "train with --procs 1") from None
    return comm


def _worker_main(rank: int, world: int, init_method: str, config: Any, ws_root: str, worker: Callable) -> None:
    """Entry of a worker started by ``--procs``: join the group and compute until rank 0 is done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rank 0's to handle; it stops the workers
    from recon3d.core.workspace import Workspace
    from recon3d.splat.render import resolve_device

    cuda_device(rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    try:
        _init(rank, world, init_method, backend_for(resolve_device(config)[0], world))
        worker(config, Workspace(Path(ws_root)), Comm(rank, world))
    except (PeerLost, KeyboardInterrupt):
        sys.exit(1)  # rank 0 stopped (it says why)
    except Exception as exc:  # noqa: BLE001 - one line, then rank 0 reports the lost process
        print(f"recon3d train: process {rank}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
