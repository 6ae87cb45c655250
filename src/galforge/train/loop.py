"""The shared training loop: seeded, checkpointed, resumable bit for bit.

:func:`fit` trains any ``torch.nn.Module`` with a user ``loss_fn(model, batch)
-> (loss, metrics)``. What it guarantees:

* **Determinism.** A fresh run seeds everything with ``TrainSettings.seed`` and
  (``deterministic=True``) enables deterministic algorithms; the permutation of
  epoch *e* is drawn from a generator seeded by
  :func:`~galforge.train.checkpoint.epoch_seed` ``(seed, e)``, and every
  DataLoader gets its own generator so that iterating never consumes the global
  torch RNG. Same seed, same data, same machine → bit-identical weights.
* **Checkpoints** (``<workdir>/checkpoint.pt``, one file, replaced atomically)
  every ``checkpoint_every`` steps, at every epoch end and when training ends;
  see :mod:`galforge.train.checkpoint` for the contents.
* **Resume.** Rerunning ``fit`` with the same arguments continues from the
  checkpoint: model, optimiser, scheduler, scaler, early-stopping state, epoch
  running sums and all RNG states are restored, and a checkpoint written in the
  middle of an epoch re-enters that epoch at the next batch of the same
  permutation. The resumed run ends with the weights an uninterrupted run would
  have had (CPU, ``num_workers=0`` or a deterministic dataset). A finished
  checkpoint returns at once.
* **Early stopping** on the validation loss (Prechelt 1998), optional best-weight
  restore.
* **Divergence.** A NaN/inf loss, validation loss, gradient norm or weight
  raises :class:`TrainingDivergedError` before anything is written, so the last
  good checkpoint stays intact.
* **Logs.** A tqdm bar, ``logging.getLogger("galforge.train")``, and
  ``<log_dir>/metrics.csv`` (:mod:`galforge.train.metrics`).
* **CUDA extras.** Mixed precision (``torch.autocast`` + ``GradScaler``;
  Micikevicius et al. 2018) and ``torch.compile``; both are ignored with a log
  line on CPU.
* **Data parallel.** Started by ``torchrun`` (one process per device), ``fit``
  trains with ``DistributedDataParallel``, each process taking a shard of every
  global batch, and only rank 0 writes; the steps are those of one process with
  the same global batch (:mod:`galforge.train.distributed`).

The datasets, loaders and batches are in :mod:`galforge.train.batches`, the
optimiser and schedule in :mod:`galforge.train.optim`. The rest stays one module
(about 800 lines): :func:`fit`, the loop, the checkpoint payload
(``_saver``) and the restore (``_restore``) share the run state ``_State``, and the
bit-for-bit resume holds only because they write and read back the same fields at
the same points of an epoch; split apart, that agreement would span files.

References
----------
Prechelt, L. 1998, "Early Stopping - But When?", in Neural Networks: Tricks of
the Trade, LNCS 1524, 55.
Micikevicius, P. et al. 2018, "Mixed Precision Training", ICLR.
Loshchilov, I. & Hutter, F. 2017, "SGDR: Stochastic Gradient Descent with Warm
Restarts", ICLR (cosine schedule); 2019, "Decoupled Weight Decay
Regularization", ICLR (AdamW).

One module on purpose (over 800 lines): the loop, its checkpoint/resume and DDP paths
share the per-step state, and splitting them would pass that state across modules.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from galforge.train import distributed
from galforge.train.batches import (
    DataLike,
    as_dataset,
    batch_len,
    count_batches,
    epoch_generator,
    make_loader,
    to_device,
)
from galforge.train.checkpoint import (
    CheckpointError,
    capture_rng,
    encode,
    epoch_seed,
    load_checkpoint,
    model_spec,
    restore_rng,
    save_checkpoint,
)
from galforge.train.metrics import MetricsLog
from galforge.train.optim import STEP_SCHEDULERS, make_optimizer, make_scheduler
from galforge.train.seeding import deterministic_mode, seed_everything
from galforge.train.settings import TrainSettings

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "LossFn",
    "StepInfo",
    "TrainResult",
    "TrainingDivergedError",
    "fit",
    "evaluate",
]

log = logging.getLogger("galforge.train")

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"

#: ``loss_fn(model, batch) -> (loss, metrics)``: a scalar tensor to minimise and
#: a dict of floats (or 0-d tensors) to log; returning a bare tensor also works.
LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, Mapping[str, float]] | torch.Tensor"]


class TrainingDivergedError(RuntimeError):
    """A non-finite loss, gradient norm or weight stopped training.

    Attributes
    ----------
    epoch : int
        1-based epoch in which it happened.
    step : int
        Optimiser step (1-based: the step being taken).
    metric : str
        What was not finite (``"train loss"``, ``"validation loss"``, ...).
    value : float
        The offending value.
    """

    def __init__(self, message: str, *, epoch: int, step: int, metric: str, value: float) -> None:
        super().__init__(message)
        self.epoch, self.step, self.metric, self.value = epoch, step, metric, value


@dataclass(frozen=True)
class StepInfo:
    """What a callback receives after each optimiser step (and any checkpoint write).

    ``epoch`` is 0-based, ``step`` counts optimiser steps so far,
    ``batch_in_epoch`` the batches of this epoch done so far.
    """

    epoch: int
    step: int
    batch_in_epoch: int
    loss: float
    metrics: Mapping[str, float]
    checkpointed: bool


@dataclass
class TrainResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (best weights if ``restore_best_weights``), in train mode.
    history : list of dict
        The rows of ``metrics.csv``.
    best_val_loss : float
        ``inf`` without validation data.
    best_epoch : int
        1-based; 0 when there is no validation data.
    epochs_completed, step : int
        Epochs and optimiser steps done.
    stop_reason : str
        ``"max_epochs"`` or ``"early_stopping"``.
    resumed : bool
        Whether this call started from an existing checkpoint.
    checkpoint_path, metrics_path : Path
    device : torch.device
    """

    model: nn.Module
    history: list[dict[str, float]]
    best_val_loss: float
    best_epoch: int
    epochs_completed: int
    step: int
    stop_reason: str
    resumed: bool
    checkpoint_path: Path
    metrics_path: Path
    device: torch.device


@dataclass
class _State:
    """Mutable bookkeeping of one run (everything but tensors lives here)."""

    epochs_completed: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    finished: bool = False
    stop_reason: str | None = None
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state_dict: dict[str, torch.Tensor] | None = None
    accum: dict[str, Any] = field(default_factory=lambda: _fresh_accum())
    last_checkpoint_step: int | None = None


class _Unwritten(MetricsLog):
    """The metrics of a process other than rank 0: kept in memory, never written."""

    def write(self) -> None:
        pass


def _fresh_accum() -> dict[str, Any]:
    return {"n": 0, "loss_sum": 0.0, "metric_sums": {}, "seconds": 0.0}


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def _in_process_group(f: Callable[..., TrainResult]) -> Callable[..., TrainResult]:
    """Run ``fit`` inside the process group of ``torchrun``, when there is one
    (:mod:`galforge.train.distributed`), on the device of this process."""

    @functools.wraps(f)
    def wrapper(*args: Any, device: torch.device | str | None = None,
                **kwargs: Any) -> TrainResult:
        with distributed.session(device) as (_, device):
            return f(*args, device=device, **kwargs)

    return wrapper


@_in_process_group
def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: DataLike,
    val_data: DataLike | None,
    config: TrainSettings,
    *,
    workdir: str | os.PathLike,
    log_dir: str | os.PathLike | None = None,
    normalization: Mapping[str, Any] | None = None,
    run_config: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> TrainResult:
    """Train ``model``, checkpointing to ``workdir``; resume if a checkpoint is there.

    Parameters
    ----------
    model : torch.nn.Module
        The model; moved to ``device``. Its class path and constructor kwargs
        (``model_kwargs``, else ``model.init_kwargs`` from
        :func:`~galforge.train.checkpoint.record_init_kwargs`) go into the
        checkpoint so :func:`~galforge.train.checkpoint.load_for_inference` can
        rebuild it.
    loss_fn : callable
        ``loss_fn(model, batch) -> (loss, metrics)``. ``batch`` is what the
        DataLoader yields, moved to ``device`` (for tensors or a
        ``TensorDataset``: a sequence of tensors ``(x, y, ...)``).
    train_data, val_data : Dataset, Tensor or sequence of Tensors
        Tensors are wrapped in a ``TensorDataset``. ``val_data`` may be
        ``None`` (then early stopping, the plateau schedule and best-weight
        restore are unavailable).
    config : TrainSettings
    workdir : path-like
        Holds ``checkpoint.pt``. Rerunning with the same workdir resumes.
    log_dir : path-like, optional
        Holds ``metrics.csv`` (default: ``workdir``).
    normalization : dict, optional
        Normalisation statistics to store in the checkpoint (numbers, lists,
        numpy arrays, tensors).
    run_config : dict, optional
        The run's configuration, stored in the checkpoint.
    model_kwargs : dict, optional
        Constructor kwargs of ``model`` (overrides ``model.init_kwargs``).
    device : torch.device or str, optional
        Default: :func:`galforge.train.devices.select_device` ``("auto")``.
    callbacks : sequence of callables
        Each called with a :class:`StepInfo` after every optimiser step (after
        that step's checkpoint, if any). An exception propagates and stops
        training; the last checkpoint stays valid.
    collate_fn : callable, optional
        DataLoader ``collate_fn`` for datasets other than ``TensorDataset``.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingDivergedError
        On a non-finite loss, validation loss, gradient norm or weight.
    CheckpointError
        When the checkpoint in ``workdir`` belongs to a different run
        (configuration, model class or training-set size).
    """
    if not isinstance(config, TrainSettings):
        raise TypeError(f"config must be a TrainSettings, got {type(config).__name__}")
    dist_info = distributed.current()
    workdir = Path(workdir)
    log_dir = Path(log_dir) if log_dir is not None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / CHECKPOINT_NAME
    _remove_stale_parts(ckpt_path)

    dev = _resolve_device(device)
    train_ds = as_dataset(train_data, "train_data")
    val_ds = as_dataset(val_data, "val_data") if val_data is not None else None
    _check_validation_needs(config, val_ds)
    n_train = len(train_ds)  # type: ignore[arg-type]
    n_batches = count_batches(n_train, config)

    with deterministic_mode(config.deterministic):
        model.to(dev)
        static = {
            "spec": model_spec(model, model_kwargs),
            "normalization": encode(normalization, where="normalization"),
            "run_config": encode(run_config, where="run_config"),
            "train_config": config.to_dict(),
            "n_train": n_train,
        }
        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config, n_batches)
        use_amp = _amp_enabled(config, dev)
        scaler = (torch.amp.GradScaler("cuda") if use_amp and config.amp_dtype == "float16"
                  else None)
        state = _State()
        resumed = ckpt_path.exists()
        if resumed:
            ck = load_checkpoint(ckpt_path)
            _check_resumable(ck, static, ckpt_path)
            _restore(ck, state, model, optimizer, scheduler, scaler)
            metrics = (MetricsLog.resume(log_dir / METRICS_NAME, state.epochs_completed)
                       if dist_info.main else _Unwritten(log_dir / METRICS_NAME))
            log.info(
                "resuming from %s: epoch %d, batch %d, step %d%s", ckpt_path,
                state.epochs_completed + 1, state.batch_in_epoch, state.step,
                " (finished)" if state.finished else "",
            )
        else:
            seed_everything(config.seed)
            metrics = (MetricsLog.fresh(log_dir / METRICS_NAME) if dist_info.main
                       else _Unwritten(log_dir / METRICS_NAME))
        if not state.finished:
            eager = distributed.wrap(model, dev) if dist_info.active else model
            fwd_model = _maybe_compile(eager, config, dev)
            if resumed:
                restore_rng(ck["rng"])  # last: nothing may draw random numbers after this
            _train(
                model, fwd_model, loss_fn, train_ds, val_ds, config, dev, optimizer, scheduler,
                scaler, use_amp, state, static, metrics, ckpt_path, n_batches, callbacks,
                collate_fn, eager=eager,
            )
    return TrainResult(
        model=model,
        history=list(metrics.rows),
        best_val_loss=state.best_val_loss,
        best_epoch=state.best_epoch,
        epochs_completed=state.epochs_completed,
        step=state.step,
        stop_reason=state.stop_reason or "max_epochs",
        resumed=resumed,
        checkpoint_path=ckpt_path,
        metrics_path=metrics.path,
        device=dev,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    data: DataLike,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> tuple[float, dict[str, float]]:
    """Sample-weighted mean loss and metrics of ``model`` on ``data`` in eval mode.

    The model's train/eval mode is restored afterwards. ``amp_dtype`` enables
    CUDA autocast.
    """
    ds = as_dataset(data, "data")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    loader = make_loader(ds, list(range(len(ds))), batch_size, False, 0, 0, collate_fn)  # type: ignore[arg-type]
    was_training = model.training
    model.eval()
    n, loss_sum, sums = 0, 0.0, {}
    try:
        for batch in loader:
            batch = to_device(batch, dev)
            with _autocast(dev, amp_dtype):
                loss, mets = _call_loss(loss_fn, model, batch)
            k = batch_len(batch)
            n += k
            loss_sum += float(loss.detach().float()) * k
            for name, v in mets.items():
                sums[name] = sums.get(name, 0.0) + v * k
    finally:
        model.train(was_training)
    if n == 0:
        return math.nan, {}
    return loss_sum / n, {k: v / n for k, v in sums.items()}


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


def _train(
    model: nn.Module,
    fwd_model: nn.Module,
    loss_fn: LossFn,
    train_ds: Dataset,
    val_ds: Dataset | None,
    cfg: TrainSettings,
    dev: torch.device,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    use_amp: bool,
    state: _State,
    static: dict[str, Any],
    metrics: MetricsLog,
    ckpt_path: Path,
    n_batches: int,
    callbacks: Sequence[Callable[[StepInfo], None]],
    collate_fn: Callable[[list[Any]], Any] | None,
    eager: nn.Module | None = None,
) -> None:
    amp_dtype = getattr(torch, cfg.amp_dtype) if use_amp else None
    eager = model if eager is None else eager  # the uncompiled model (DDP-wrapped if so)
    dist_info = distributed.current()
    save = _saver(model, optimizer, scheduler, scaler, state, static, ckpt_path)
    if not dist_info.main:  # one writer: rank 0

        def save(epoch: int) -> None:
            state.last_checkpoint_step = state.step

    bar = tqdm(
        total=cfg.epochs * n_batches, initial=state.epochs_completed * n_batches + state.batch_in_epoch,
        desc="train", unit="step", disable=not cfg.progress or not dist_info.main,
        dynamic_ncols=True,
        mininterval=0.1 if _is_tty() else 30.0, leave=False,
    )
    compiled_ok = False
    try:
        for epoch in range(state.epochs_completed, cfg.epochs):
            t_start = time.perf_counter() - state.accum["seconds"]
            perm = torch.randperm(len(train_ds), generator=epoch_generator(cfg.seed, epoch)).tolist()  # type: ignore[arg-type]
            skip = state.batch_in_epoch * cfg.batch_size
            loader = make_loader(train_ds, perm[skip:], cfg.batch_size, cfg.drop_last,
                             cfg.num_workers, epoch_seed(cfg.seed, epoch), collate_fn)
            model.train()
            for batch in loader:
                if dist_info.active and batch_len(batch) < dist_info.world:
                    log.warning("a last batch of %d rows cannot be split between %d "
                                "processes: skipped", batch_len(batch), dist_info.world)
                    continue
                step_args = (loss_fn, batch, dev, optimizer, scheduler, scaler, amp_dtype, cfg,
                             state, epoch, ckpt_path)
                if fwd_model is not eager and not compiled_ok:
                    loss, mets, fwd_model = _guarded_first_step(fwd_model, eager, step_args)
                    compiled_ok = True
                else:
                    loss, mets = _train_step(fwd_model, *step_args)
                _accumulate(state.accum, loss, mets, batch_len(batch))
                state.step += 1
                state.batch_in_epoch += 1
                state.accum["seconds"] = time.perf_counter() - t_start
                due = (cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0
                       and state.batch_in_epoch < n_batches)  # the epoch end saves anyway
                if due:
                    save(epoch)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.4g}", refresh=False)
                info = StepInfo(epoch, state.step, state.batch_in_epoch, loss, mets, due)
                for cb in callbacks:
                    cb(info)
            if _end_epoch(model, loss_fn, val_ds, cfg, dev, optimizer, scheduler, amp_dtype,
                          state, metrics, epoch, t_start, collate_fn, ckpt_path):
                break
            if epoch + 1 < cfg.epochs:  # the last epoch's state is saved by the final write
                save(epoch)
        _finish(model, cfg, state)
        save(state.epochs_completed - 1)
    finally:
        bar.close()


def _train_step(
    fwd_model: nn.Module,
    loss_fn: LossFn,
    batch: Any,
    dev: torch.device,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    amp_dtype: torch.dtype | None,
    cfg: TrainSettings,
    state: _State,
    epoch: int,
    ckpt_path: Path,
) -> tuple[float, dict[str, float]]:
    """One optimiser step; returns the batch loss and metrics as floats."""
    batch = to_device(batch, dev)
    dist_info = distributed.current()
    if dist_info.active:  # this process's shard of the global batch
        n_global = batch_len(batch)
        batch, n_local = distributed.shard(batch, n_global, dist_info)
    optimizer.zero_grad(set_to_none=True)
    with _autocast(dev, amp_dtype):
        loss, mets = _call_loss(loss_fn, fwd_model, batch)
    value = float(loss.detach().float())
    if dist_info.active:
        value, mets = distributed.global_mean(value, mets, n_local, n_global)
        # DDP averages the processes' gradients: weighting each shard's mean by its share
        # makes that average the gradient of the global batch's mean loss
        loss = loss * (n_local * dist_info.world / n_global)
    if not math.isfinite(value):
        _diverged("train loss", value, cfg, state, epoch, ckpt_path)
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if cfg.grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        if scaler is None and not math.isfinite(norm):
            _diverged("gradient norm", norm, cfg, state, epoch, ckpt_path)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if cfg.scheduler in STEP_SCHEDULERS:
        scheduler.step()
    return value, mets


def _guarded_first_step(
    compiled: nn.Module, eager: nn.Module, step_args: tuple[Any, ...]
) -> tuple[float, dict[str, float], nn.Module]:
    """First step of a ``torch.compile``'d model; on a compiler failure, redo it eagerly.

    ``torch.compile`` compiles lazily, so a missing or failing backend only shows
    on the first call; an optional speed-up must not stop the job.
    """
    try:
        loss, mets = _train_step(compiled, *step_args)
        return loss, mets, compiled
    except TrainingDivergedError:
        raise
    except Exception as exc:  # noqa: BLE001
        log.warning("the torch.compile'd model failed on its first batch (%s: %s): training the "
                    "eager model", type(exc).__name__, exc)
        loss, mets = _train_step(eager, *step_args)
        return loss, mets, eager


def _end_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    val_ds: Dataset | None,
    cfg: TrainSettings,
    dev: torch.device,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    amp_dtype: torch.dtype | None,
    state: _State,
    metrics: MetricsLog,
    epoch: int,
    t_start: float,
    collate_fn: Callable[[list[Any]], Any] | None,
    ckpt_path: Path,
) -> bool:
    """Validate, step the plateau schedule and early stopping, log; True to stop."""
    acc = state.accum
    train_loss = acc["loss_sum"] / acc["n"] if acc["n"] else math.nan
    lr = float(optimizer.param_groups[0]["lr"])
    val_loss, val_mets = math.nan, {}
    if val_ds is not None:
        val_loss, val_mets = evaluate(model, loss_fn, val_ds, batch_size=cfg.batch_size,
                                      device=dev, amp_dtype=amp_dtype, collate_fn=collate_fn)
        if not math.isfinite(val_loss):
            _diverged("validation loss", val_loss, cfg, state, epoch, ckpt_path, in_step=False)
    if cfg.scheduler == "plateau":
        scheduler.step(val_loss)
    stop = _early_stopping(model, cfg, state, val_loss, epoch) if val_ds is not None else False
    seconds = time.perf_counter() - t_start
    row: dict[str, float] = {
        "epoch": epoch + 1, "step": state.step, "train_loss": train_loss, "val_loss": val_loss,
        "lr": lr, "seconds": seconds,
        **{f"train_{k}": v / acc["n"] for k, v in acc["metric_sums"].items()},
        **{f"val_{k}": v for k, v in val_mets.items()},
    }
    metrics.append(row)
    log.info(
        "epoch %d/%d step %d: train_loss=%.6g val_loss=%.6g lr=%.3g (%.1f s)%s",
        epoch + 1, cfg.epochs, state.step, train_loss, val_loss, lr, seconds,
        " *" if state.best_epoch == epoch + 1 else "",
    )
    state.epochs_completed = epoch + 1
    state.batch_in_epoch = 0
    state.accum = _fresh_accum()
    if stop:
        state.stop_reason = "early_stopping"
        log.info(
            "early stopping after epoch %d: no val_loss improvement > %g for %d epochs "
            "(best %.6g at epoch %d)", epoch + 1, cfg.early_stopping_min_delta,
            cfg.early_stopping_patience, state.best_val_loss, state.best_epoch,
        )
    return stop


def _early_stopping(model: nn.Module, cfg: TrainSettings, state: _State, val_loss: float,
                    epoch: int) -> bool:
    """Update the best loss and the patience counter; True when patience ran out."""
    if val_loss < state.best_val_loss - cfg.early_stopping_min_delta:
        state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, epoch + 1, 0
        if cfg.restore_best_weights:
            state.best_state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        state.bad_epochs += 1
    patience = cfg.early_stopping_patience
    return patience is not None and state.bad_epochs >= patience


def _finish(model: nn.Module, cfg: TrainSettings, state: _State) -> None:
    if cfg.restore_best_weights and state.best_state_dict is not None:
        model.load_state_dict(state.best_state_dict)
        log.info("restored the weights of epoch %d (val_loss %.6g)", state.best_epoch,
                 state.best_val_loss)
    state.finished = True
    state.stop_reason = state.stop_reason or "max_epochs"


def _diverged(metric: str, value: float, cfg: TrainSettings, state: _State, epoch: int,
              ckpt_path: Path, *, in_step: bool = True) -> None:
    step = state.step + 1 if in_step else state.step
    where = (f"epoch {epoch + 1}, step {step} (batch {state.batch_in_epoch + 1} of the epoch)"
             if in_step else f"the end of epoch {epoch + 1} (step {step})")
    kept = (f"the last good checkpoint {ckpt_path} (step {state.last_checkpoint_step}) is intact"
            if state.last_checkpoint_step is not None else "no checkpoint had been written yet")
    raise TrainingDivergedError(
        f"training diverged: the {metric} is {value} at {where}; {kept}. "
        f"Hint: lower the learning rate (lr={cfg.lr:g}), set grad_clip, or check the inputs "
        "and normalisation for NaN/inf.",
        epoch=epoch + 1, step=step, metric=metric, value=value,
    )


# --------------------------------------------------------------------------------------
# Checkpoint state
# --------------------------------------------------------------------------------------


def _saver(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
           scaler: torch.amp.GradScaler | None, state: _State, static: dict[str, Any],
           ckpt_path: Path) -> Callable[[int], None]:
    def save(epoch: int) -> None:
        for name, p in model.state_dict().items():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise TrainingDivergedError(
                    f"training diverged: weight {name!r} holds NaN/inf at step {state.step}; "
                    f"the last good checkpoint {ckpt_path} (step {state.last_checkpoint_step}) "
                    "is intact. Hint: lower the learning rate or set grad_clip.",
                    epoch=epoch + 1, step=state.step, metric=f"weight {name}", value=math.nan,
                )
        payload = {
            "model": {**static["spec"], "state_dict": model.state_dict()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "progress": {
                "epochs_completed": state.epochs_completed,
                "batch_in_epoch": state.batch_in_epoch,
                "step": state.step,
                "finished": state.finished,
                "stop_reason": state.stop_reason,
                "n_train": static["n_train"],
            },
            "early_stopping": {
                "best_val_loss": state.best_val_loss,
                "best_epoch": state.best_epoch,
                "bad_epochs": state.bad_epochs,
                "best_state_dict": state.best_state_dict,
            },
            "epoch_accum": dict(state.accum),
            "rng": {**capture_rng(), "loader": {
                "seed": static["train_config"]["seed"],
                "epoch": state.epochs_completed,
                "epoch_seed": epoch_seed(static["train_config"]["seed"], state.epochs_completed),
                "batches_done": state.batch_in_epoch,
            }},
            "normalization": static["normalization"],
            "run_config": static["run_config"],
            "train_config": static["train_config"],
            "meta": _provenance(next(iter(model.parameters()), torch.empty(0)).device),
        }
        save_checkpoint(payload, ckpt_path)
        state.last_checkpoint_step = state.step
        log.debug("checkpoint written: %s (step %d)", ckpt_path, state.step)

    return save


def _check_resumable(ck: dict[str, Any], static: dict[str, Any], path: Path) -> None:
    mismatched = TrainSettings.from_dict(static["train_config"]).resume_mismatches(ck["train_config"])
    problems = [f"{k}: checkpoint {ck['train_config'].get(k)!r}, now {static['train_config'].get(k)!r}"
                for k in mismatched]
    if ck["model"]["class_path"] != static["spec"]["class_path"]:
        problems.append(f"model class: checkpoint {ck['model']['class_path']}, now "
                        f"{static['spec']['class_path']}")
    if ck["progress"]["n_train"] != static["n_train"]:
        problems.append(f"training-set size: checkpoint {ck['progress']['n_train']}, now "
                        f"{static['n_train']}")
    if problems:
        raise CheckpointError(
            f"{path} belongs to a different run and cannot be resumed:\n  " + "\n  ".join(problems)
            + f"\nDelete {path.parent} to start over."
        )


def _restore(ck: dict[str, Any], state: _State, model: nn.Module,
             optimizer: torch.optim.Optimizer, scheduler: Any,
             scaler: torch.amp.GradScaler | None) -> None:
    model.load_state_dict(ck["model"]["state_dict"])
    optimizer.load_state_dict(ck["optimizer"])
    if scheduler is not None and ck["scheduler"] is not None:
        scheduler.load_state_dict(ck["scheduler"])
    if scaler is not None and ck["scaler"] is not None:
        scaler.load_state_dict(ck["scaler"])
    prog, es = ck["progress"], ck["early_stopping"]
    state.epochs_completed = int(prog["epochs_completed"])
    state.batch_in_epoch = int(prog["batch_in_epoch"])
    state.step = int(prog["step"])
    state.finished = bool(prog["finished"])
    state.stop_reason = prog["stop_reason"]
    state.best_val_loss = float(es["best_val_loss"])
    state.best_epoch = int(es["best_epoch"])
    state.bad_epochs = int(es["bad_epochs"])
    state.best_state_dict = es["best_state_dict"]
    state.accum = dict(ck["epoch_accum"])
    state.last_checkpoint_step = state.step


def _provenance(dev: torch.device) -> dict[str, Any]:
    try:
        from galforge import __version__ as gf_version
    except Exception:  # noqa: BLE001
        gf_version = "unknown"
    return {
        "torch_version": str(torch.__version__),
        "galforge_version": str(gf_version),
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": str(dev),
    }


def _remove_stale_parts(ckpt_path: Path) -> None:
    """Delete temporary files of a checkpoint write killed halfway (``atomic_path`` leftovers)."""
    for part in ckpt_path.parent.glob(f".{ckpt_path.name}.*.part*"):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
            log.info("removed the partial checkpoint %s of a killed run", part)


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def _check_validation_needs(cfg: TrainSettings, val_ds: Dataset | None) -> None:
    if val_ds is not None:
        return
    needs = [name for name, on in (
        ("early_stopping_patience", cfg.early_stopping_patience is not None),
        ("scheduler='plateau'", cfg.scheduler == "plateau"),
        ("restore_best_weights", cfg.restore_best_weights),
    ) if on]
    if needs:
        raise ValueError(f"training settings {', '.join(needs)} need validation data (val_data is None)")


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        from galforge.train.devices import select_device

        return select_device("auto")
    return torch.device(device)


def _amp_enabled(cfg: TrainSettings, dev: torch.device) -> bool:
    if not cfg.amp:
        return False
    if dev.type != "cuda":
        log.info("amp=True ignored: mixed precision is only used on CUDA (device %s)", dev)
        return False
    return True


def _maybe_compile(model: nn.Module, cfg: TrainSettings, dev: torch.device) -> nn.Module:
    if not cfg.compile:
        return model
    if dev.type != "cuda":
        log.info("compile=True ignored: torch.compile is only used on CUDA (device %s)", dev)
        return model
    try:
        compiled = torch.compile(model)
    except Exception as exc:  # noqa: BLE001 - an optional speed-up must never stop training
        log.warning("torch.compile failed (%s): training the eager model", exc)
        return model
    log.info("training the torch.compile'd model")
    return compiled  # type: ignore[return-value]


def _autocast(dev: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if amp_dtype is None or dev.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype)


def _call_loss(loss_fn: LossFn, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
    out = loss_fn(model, batch)
    loss, mets = (out if isinstance(out, tuple) else (out, {}))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError("loss_fn must return (scalar tensor, dict of metrics); got a loss of "
                        f"type {type(loss).__name__}"
                        + (f" with shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
    return loss.reshape(()), {str(k): float(v) for k, v in (mets or {}).items()}


def _accumulate(acc: dict[str, Any], loss: float, mets: Mapping[str, float], k: int) -> None:
    acc["n"] += k
    acc["loss_sum"] += loss * k
    sums = acc["metric_sums"]
    for name, v in mets.items():
        sums[name] = sums.get(name, 0.0) + v * k


def _is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
