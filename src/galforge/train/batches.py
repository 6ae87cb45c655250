"""Datasets, loaders and batches of :func:`galforge.train.loop.fit`.

Training data (a ``Dataset``, a tensor or a sequence of tensors) becomes a
map-style ``Dataset`` (:func:`as_dataset`); each epoch's batches come from a
DataLoader over that epoch's permutation, in order, with its own seeded
generator (:func:`make_loader`, :func:`epoch_generator`), so that iterating
never draws from the global torch RNG and a resumed run can re-enter an epoch
at any batch. :func:`to_device` and :func:`batch_len` handle tensors, tuples,
namedtuples, mappings and objects with ``.to`` (e.g. torch_geometric batches).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, TensorDataset

from galforge.train.checkpoint import epoch_seed
from galforge.train.settings import TrainSettings

__all__ = [
    "DataLike",
    "as_dataset",
    "batch_len",
    "count_batches",
    "epoch_generator",
    "make_loader",
    "to_device",
]

#: What :func:`galforge.train.loop.fit` accepts as training or validation data.
DataLike = Dataset | torch.Tensor | Sequence[torch.Tensor]


def as_dataset(data: DataLike, name: str) -> Dataset:
    """``data`` as a map-style Dataset (tensors wrapped in a ``TensorDataset``); ``name`` for errors."""
    if isinstance(data, torch.Tensor):
        return TensorDataset(data)
    if isinstance(data, list | tuple) and data and all(isinstance(t, torch.Tensor) for t in data):
        return TensorDataset(*data)
    if isinstance(data, Dataset):
        if not hasattr(data, "__len__"):
            raise TypeError(f"{name}: the dataset must have a length (map-style Dataset)")
        return data
    raise TypeError(f"{name}: expected a Dataset, a tensor or a sequence of tensors, "
                    f"got {type(data).__name__}")


def count_batches(n: int, cfg: TrainSettings) -> int:
    """Batches per epoch of ``n`` samples (ValueError when ``drop_last`` leaves none)."""
    nb = n // cfg.batch_size if cfg.drop_last else -(-n // cfg.batch_size)
    if nb == 0:
        raise ValueError(f"{n} training samples make no batch of batch_size={cfg.batch_size} "
                         "with drop_last=True")
    return nb


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that draws the permutation of ``epoch`` (0-based)."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


def make_loader(ds: Dataset, indices: list[int], batch_size: int, drop_last: bool,
                num_workers: int, seed: int, collate_fn: Callable[[list[Any]], Any] | None) -> DataLoader:
    """A DataLoader over ``indices`` in order, with its own seeded generator.

    A ``TensorDataset`` is indexed a whole batch at a time (no per-sample
    collation). The explicit generator keeps DataLoader iterators from drawing
    their worker base seed from the global torch RNG.
    """
    gen = torch.Generator().manual_seed(seed)
    if isinstance(ds, TensorDataset) and collate_fn is None:
        sampler = BatchSampler(indices, batch_size, drop_last)
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers,
                          generator=gen)
    return DataLoader(ds, sampler=indices, batch_size=batch_size, drop_last=drop_last,
                      num_workers=num_workers, generator=gen, collate_fn=collate_fn)


def to_device(batch: Any, dev: torch.device) -> Any:
    """``batch`` (tensors, nested containers, objects with ``.to``) moved to ``dev``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(dev, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, dev) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, dev) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, dev) for v in batch)
    if hasattr(batch, "to"):
        return batch.to(dev)
    return batch


def batch_len(batch: Any) -> int:
    """Samples in ``batch`` (its first tensor's leading size; ``num_graphs`` of a graph batch)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, Mapping):
        for v in batch.values():
            return batch_len(v)
    if isinstance(batch, list | tuple) and batch:
        return batch_len(batch[0])
    n = getattr(batch, "num_graphs", None)  # torch_geometric Batch
    return int(n) if n is not None else 1
