"""Checkpoints: one self-describing file per run, written atomically.

A checkpoint holds everything to (a) resume training bit for bit and (b) rebuild
the model for inference without the training code path:

``format``, ``version``
    :data:`FORMAT` and :data:`VERSION`.
``model``
    ``class_path`` (``"package.module:QualName"``), ``kwargs`` (the constructor
    keyword arguments, see :func:`record_init_kwargs`) and ``state_dict``.
``optimizer``, ``scheduler``, ``scaler``
    State dicts (``None`` where absent).
``progress``
    ``epochs_completed``, ``batch_in_epoch`` (batches of the current epoch
    already trained), ``step`` (optimiser steps in all), ``finished``,
    ``stop_reason``, ``n_train`` (training-set size, checked on resume).
``early_stopping``
    ``best_val_loss``, ``best_epoch``, ``bad_epochs`` and, when the run keeps
    them, ``best_state_dict``.
``epoch_accum``
    Running sums of the current epoch's training loss and metrics, so a run
    resumed mid-epoch writes the same epoch means.
``rng``
    torch CPU, every CUDA device, numpy's legacy global state, Python's
    ``random``, and the shuffling state (``seed``, ``epoch``; the permutation of
    epoch *e* is drawn from a generator seeded with :func:`epoch_seed`).
``normalization``, ``run_config``, ``train_config``, ``meta``
    The caller's normalisation statistics and run configuration, the
    :class:`~galforge.train.settings.TrainSettings` as a dict, and provenance
    (torch / galforge versions, time, device).

Everything is stored as plain containers, tensors and numbers (numpy arrays are
wrapped as tensors and unwrapped on load), so files load with
``torch.load(weights_only=True)``: opening a checkpoint never runs pickled code.

This module must not import :mod:`galforge.train.loop`:
:func:`load_for_inference` is the inference path.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from galforge.io import atomic_path

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "InferenceMeta",
    "record_init_kwargs",
    "model_spec",
    "epoch_seed",
    "capture_rng",
    "restore_rng",
    "encode",
    "decode",
    "save_checkpoint",
    "load_checkpoint",
    "load_for_inference",
]

log = logging.getLogger("galforge.train")

FORMAT = "galforge.train.checkpoint"
VERSION = 1
_NDARRAY = "__galforge_ndarray__"
_TUPLE = "__galforge_tuple__"

M = TypeVar("M", bound=type)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, resumed from, or rebuilt; the message says why."""


@dataclass(frozen=True)
class InferenceMeta:
    """What :func:`load_for_inference` returns beside the model.

    Attributes
    ----------
    normalization : dict or None
        The normalisation statistics given to ``fit`` (numpy arrays come back
        as numpy arrays, tensors as tensors).
    run_config : dict or None
        The run configuration given to ``fit``.
    train_config : dict
        The :class:`~galforge.train.settings.TrainSettings` fields.
    class_path : str
        ``"module:QualName"`` of the model class.
    model_kwargs : dict
        Constructor keyword arguments the model was rebuilt with.
    epochs_completed, step : int
        Training progress when the checkpoint was written.
    finished : bool
        Whether training had ended (``False``: weights of an interrupted run).
    best_val_loss : float
        Best validation loss seen (``inf`` without validation data).
    best_epoch : int
        1-based epoch of ``best_val_loss`` (0 when none).
    extra : dict
        Provenance (``torch_version``, ``galforge_version``, ``saved_at``, ``device``).
    """

    normalization: dict[str, Any] | None
    run_config: dict[str, Any] | None
    train_config: dict[str, Any]
    class_path: str
    model_kwargs: dict[str, Any]
    epochs_completed: int
    step: int
    finished: bool
    best_val_loss: float
    best_epoch: int
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Model metadata
# --------------------------------------------------------------------------------------


def record_init_kwargs(cls: M) -> M:
    """Class decorator: store the constructor's arguments on ``self.init_kwargs``.

    The recorded dict (defaults filled in) is what a checkpoint stores to
    rebuild the model with ``cls(**init_kwargs)``. Arguments must be plain
    values (numbers, strings, lists, dicts, numpy arrays, tensors); ``*args`` /
    ``**kwargs`` catch-alls are not supported.

    Examples
    --------
    >>> @record_init_kwargs
    ... class Net(nn.Module):
    ...     def __init__(self, n_in: int, hidden: int = 32):
    ...         super().__init__()
    ...         self.lin = nn.Linear(n_in, hidden)
    >>> Net(3).init_kwargs
    {'n_in': 3, 'hidden': 32}
    """
    init = cls.__init__
    sig = inspect.signature(init)
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(
                f"record_init_kwargs: {cls.__qualname__}.__init__ takes *{p.name}; "
                "name every constructor argument so it can be stored"
            )

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        recorded = dict(list(bound.arguments.items())[1:])
        # Set last: the outermost (most derived) decorated class wins.
        object.__setattr__(self, "init_kwargs", recorded)
        object.__setattr__(self, "_init_kwargs_class", cls)

    cls.__init__ = wrapped  # type: ignore[misc]
    return cls


def model_spec(model: nn.Module, model_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"class_path", "kwargs"}`` to rebuild ``model`` later (kwargs passed through :func:`encode`).

    ``model_kwargs`` wins; otherwise ``model.init_kwargs`` (from
    :func:`record_init_kwargs` or set by hand). ``kwargs`` is ``None`` when
    neither exists, and a warning says that :func:`load_for_inference` will not
    be able to rebuild the model.
    """
    cls = type(model)
    class_path = f"{cls.__module__}:{cls.__qualname__}"
    if model_kwargs is None:
        recorded_for = getattr(model, "_init_kwargs_class", cls)
        if recorded_for is not cls:
            log.warning(
                "%s inherits init_kwargs recorded by %s; decorate the subclass with "
                "record_init_kwargs too", class_path, recorded_for.__qualname__,
            )
            model_kwargs = None
        else:
            model_kwargs = getattr(model, "init_kwargs", None)
    if model_kwargs is None:
        log.warning(
            "model %s has no init_kwargs (use @record_init_kwargs or pass model_kwargs): "
            "checkpoints can resume training but load_for_inference cannot rebuild it",
            class_path,
        )
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        log.warning("model class %s cannot be imported by path; define it in a module", class_path)
    # Encoded now, so a value a checkpoint cannot hold fails before training starts.
    kwargs = encode(dict(model_kwargs), where="model kwargs") if model_kwargs is not None else None
    return {"class_path": class_path, "kwargs": kwargs}


def _import_class(class_path: str) -> type:
    module_name, _, qualname = class_path.partition(":")
    if not module_name or not qualname:
        raise CheckpointError(f"bad model class path {class_path!r}; expected 'module:QualName'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CheckpointError(f"cannot import module {module_name!r} of model {class_path}: {exc}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise CheckpointError(f"module {module_name!r} has no {qualname!r} (model class)") from exc
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise CheckpointError(f"{class_path} is not a torch.nn.Module subclass")
    return obj


# --------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s shuffling generator: a hash of ``(seed, epoch)``.

    ``numpy.random.SeedSequence`` mixes the pair, so nearby seeds and epochs give
    unrelated permutations (``seed + epoch`` would make seed 0, epoch 1 equal to
    seed 1, epoch 0). Recomputing it is how a resumed run gets the same
    permutation for the epoch it re-enters.
    """
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


def capture_rng() -> dict[str, Any]:
    """The global RNG states: torch CPU, every CUDA device, numpy, Python ``random``."""
    np_state = np.random.get_state(legacy=True)  # noqa: NPY002 - the legacy global state is what we save
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the global RNG states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            log.warning(
                "checkpoint holds %d CUDA RNG states but %d devices are visible: CUDA RNG "
                "not restored (results may differ from an uninterrupted run)",
                len(cuda), torch.cuda.device_count(),
            )
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - restores the legacy global state
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
         npst["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


# --------------------------------------------------------------------------------------
# Safe (weights_only) encoding of user values
# --------------------------------------------------------------------------------------


def encode(value: Any, *, where: str = "value") -> Any:
    """``value`` as containers ``torch.load(weights_only=True)`` can read.

    numpy arrays become tagged tensors, numpy scalars Python scalars, tuples
    tagged lists; dict keys must be strings. Anything else raises
    :class:`TypeError` naming the path of the offending entry.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: numpy array of dtype {value.dtype} cannot be stored")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = encode(v, where=f"{where}.{k}")
        return out
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v, where=f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be stored in a checkpoint "
        "(use numbers, strings, lists, dicts, numpy arrays or tensors)"
    )


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, dict):
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy()
        if set(value) == {_TUPLE}:
            return tuple(decode(v) for v in value[_TUPLE])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file beside it, then rename).

    A crash while writing leaves the previous checkpoint untouched. The file
    is flushed to disk before the rename.
    """
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises
    ------
    CheckpointError
        When the file is missing, unreadable, or not a galforge checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a galforge training checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this galforge reads {VERSION}"
        )
    return state


def load_for_inference(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    *,
    strict: bool = True,
    builder: Callable[..., nn.Module] | None = None,
) -> tuple[nn.Module, InferenceMeta]:
    """Rebuild the model of a checkpoint, load its weights, and put it in eval mode.

    The class is imported from the stored ``"module:QualName"`` path and built
    with the stored keyword arguments; the training loop is never imported.

    Parameters
    ----------
    path : path-like
        A checkpoint written by :func:`galforge.train.loop.fit`.
    map_location : str or torch.device
        Where the weights go (default CPU).
    strict : bool
        Passed to ``load_state_dict``.
    builder : callable, optional
        ``builder(**kwargs) -> nn.Module`` to use instead of the stored class
        (e.g. for a renamed class, or a model saved without kwargs: then it is
        called without arguments).

    Returns
    -------
    model : torch.nn.Module
        In ``eval()`` mode, on ``map_location``.
    meta : InferenceMeta
        Normalisation statistics, configurations and progress.
    """
    state = load_checkpoint(path, map_location=map_location)
    spec = state["model"]
    kwargs = decode(spec.get("kwargs"))
    if kwargs is None and builder is None:
        raise CheckpointError(
            f"{path}: the model {spec['class_path']} was saved without constructor kwargs; "
            "decorate it with galforge.train.checkpoint.record_init_kwargs or pass "
            "model_kwargs to fit"
        )
    make = builder if builder is not None else _import_class(spec["class_path"])
    kwargs = kwargs if kwargs is not None else {}
    model = make(**kwargs)
    model.load_state_dict(spec["state_dict"], strict=strict)
    if map_location is not None:
        model.to(map_location)
    model.eval()
    progress, es = state["progress"], state["early_stopping"]
    meta = InferenceMeta(
        normalization=decode(state.get("normalization")),
        run_config=decode(state.get("run_config")),
        train_config=dict(state.get("train_config") or {}),
        class_path=spec["class_path"],
        model_kwargs=kwargs,
        epochs_completed=int(progress["epochs_completed"]),
        step=int(progress["step"]),
        finished=bool(progress["finished"]),
        best_val_loss=float(es["best_val_loss"]),
        best_epoch=int(es["best_epoch"]),
        extra=dict(decode(state.get("meta") or {})),
    )
    return model, meta
