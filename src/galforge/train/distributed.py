"""Data-parallel training (PyTorch DDP) for :func:`galforge.train.loop.fit`.

A training job given several devices runs one process per device under ``torchrun``
(which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``):
:func:`launcher` gives the command a workflow rule runs instead of ``galforge`` when its
study's ``train.devices`` > 1 (and the rule claims that many ``gpu`` resources). Every
process then calls ``fit`` as usual, and ``fit``

* joins the process group (NCCL on CUDA, gloo on CPU) and takes device
  ``cuda:LOCAL_RANK`` (or the CPU);
* wraps the model in ``DistributedDataParallel``;
* splits every *global* batch of ``batch_size`` rows (the same epoch permutation on every
  process) into ``WORLD_SIZE`` interleaved shards (:func:`shard`); each process's loss is
  scaled by ``n_local * WORLD_SIZE / n_global`` before the backward pass, so that DDP's
  mean of the gradients is exactly the gradient of the mean loss over the global batch
  (also when the shards differ in size), and the logged loss and metrics are the global
  means (:func:`global_mean`): one process with batch B and W processes with global batch B
  take the same steps, to float rounding (tested on CPU with gloo and 2 processes);
* a final batch with fewer rows than processes is skipped (logged);
* validates on every process (the same numbers everywhere, so early stopping agrees) and
  writes checkpoints, ``metrics.csv`` and the job's outputs from rank 0 only.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DistInfo", "current", "global_mean", "is_main_process", "launcher", "session",
           "shard"]

log = logging.getLogger("galforge.train")


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_info() -> DistInfo:
    def get(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    return DistInfo(get("RANK", 0), max(1, get("WORLD_SIZE", 1)), get("LOCAL_RANK", 0))


_CURRENT: list[DistInfo] = [DistInfo()]


def current() -> DistInfo:
    """The process group ``fit`` is in (inactive outside a distributed ``fit``)."""
    return _CURRENT[0]


def is_main_process() -> bool:
    """Rank 0, or a job without ``torchrun``: the process that writes outputs."""
    return _env_info().main


def launcher(devices: int) -> str:
    """The command that runs a ``galforge`` subcommand on ``devices`` devices: ``galforge``
    for one, else ``torchrun`` running the CLI module once per device on this node."""
    if int(devices) <= 1:
        return "galforge"
    return f"torchrun --standalone --nproc_per_node={int(devices)} -m galforge.cli"


@contextlib.contextmanager
def session(device: Any = None) -> Iterator[tuple[DistInfo, Any]]:
    """Join the process group of ``torchrun`` (if any) for a ``fit``; yields the info and the
    device this process trains on (``device`` when given, else ``cuda:LOCAL_RANK`` or CPU)."""
    import torch
    import torch.distributed as dist

    info = _env_info()
    if not info.active:
        yield info, device
        return
    if device is None:
        device = (torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available()
                  else torch.device("cpu"))
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    own = not dist.is_initialized()
    if own:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    _CURRENT[0] = info
    log.info("data-parallel training: process %d of %d on %s", info.rank, info.world, device)
    try:
        yield info, device
        dist.barrier()
    finally:
        _CURRENT[0] = DistInfo()
        if own:
            dist.destroy_process_group()


def wrap(model: Any, device: Any) -> Any:
    """``model`` in ``DistributedDataParallel`` (on ``device``)."""
    from torch.nn.parallel import DistributedDataParallel

    dev = getattr(device, "type", str(device))
    return DistributedDataParallel(model, device_ids=[device] if dev == "cuda" else None)


def _rows(x: Any, sl: slice) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x[sl]
    if isinstance(x, Mapping):
        return {k: _rows(v, sl) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_rows(v, sl) for v in x))
    if isinstance(x, list | tuple):
        return type(x)(_rows(v, sl) for v in x)
    raise TypeError(f"cannot split a batch of {type(x).__name__} between processes")


def shard(batch: Any, n_rows: int, info: DistInfo) -> tuple[Any, int]:
    """This process's rows of a global batch (rows ``rank``, ``rank + world``, ...) and
    their number."""
    sl = slice(info.rank, None, info.world)
    return _rows(batch, sl), len(range(n_rows)[sl])


def global_mean(value: float, metrics: Mapping[str, float], n_local: int,
                n_global: int) -> tuple[float, dict[str, float]]:
    """The global-batch means of a loss and metrics that each process computed as means
    over its own ``n_local`` rows (one all-reduce)."""
    import torch
    import torch.distributed as dist

    names = sorted(metrics)
    t = torch.tensor([value * n_local, *(metrics[k] * n_local for k in names)],
                     dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = (t / n_global).cpu()
    return float(t[0]), {k: float(v) for k, v in zip(names, t[1:], strict=True)}
