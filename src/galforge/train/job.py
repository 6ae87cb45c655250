"""The body of a study's training job: split, build, fit with resume, write the outputs.

Every study's ``train_*_model`` function reads its data and then does the same
thing; :func:`run_training_job` is that thing, once:

1. the :class:`~galforge.train.settings.TrainSettings` from the study's ``train``
   section, with the run's ``seed`` and ``progress``;
2. the seeded train/validation split (:func:`galforge.train.split.split_indices`,
   with the study's salt), less the rows the study marks unusable;
3. the work folder ``<workroot>/<settings_key(...)>/``: it holds the rolling
   checkpoint between a killed job and its rerun (Snakemake removes a failed
   job's declared outputs, so the checkpoint must not be one of them) and is
   keyed by everything that changes the numbers, so a changed configuration
   starts afresh;
4. :func:`~galforge.train.seeding.seed_everything` then the study's model
   factory (so the initial weights depend on the seed alone);
5. :func:`galforge.train.loop.fit`;
6. the final checkpoint and ``metrics.csv`` copied atomically to the job's outputs.

The study supplies only what differs, in a :class:`TrainingJob`: the rows'
identity (count and checksum), the model settings that name the run, the model
factory, the tensors of a set of rows, the loss and what to store as the
model's normalisation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from galforge.io import InputError, atomic_path

if TYPE_CHECKING:
    from torch import Tensor, nn

    from galforge.train.loop import TrainResult
    from galforge.train.settings import TrainSettings

__all__ = ["JobOptions", "JobResult", "TrainingJob", "run_training_job", "settings_key"]

log = logging.getLogger("galforge.train")


def settings_key(*parts: Any) -> str:
    """Short hash of the settings that determine a training run (its work folder's name).

    ``parts`` are JSON-encoded with sorted keys (other values through ``str``) and
    hashed with SHA-256; the first 12 hex digits are returned.
    """
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class JobOptions(TypedDict):
    """Keyword arguments a study's ``train_*_model`` passes through to :func:`run_training_job`
    (see there): ``out_model``, ``out_metrics``, ``workroot``, and optionally ``progress``
    and ``run_config``."""

    out_model: str | Path
    out_metrics: str | Path
    workroot: str | Path
    progress: NotRequired[bool]
    run_config: NotRequired[Mapping[str, Any] | None]


@dataclass(frozen=True)
class TrainingJob:
    """What a study hands to :func:`run_training_job`.

    Attributes
    ----------
    name
        Prefix of the log lines (e.g. a model id; ``""`` for none).
    noun
        What a row is, for the log and errors (``"maps"``, ``"spectra"``).
    source
        Where the rows come from (named in errors).
    n_rows
        Number of rows the split is drawn over (all of them, usable or not).
    rows_checksum
        An integer that identifies the rows (part of the work folder's key).
    model_settings
        The model settings as a plain mapping (part of the work folder's key).
    build_model
        ``build_model(train_rows)``: the model, built right after the RNGs are
        seeded; it may set data-dependent buffers from the training rows.
    tensors
        ``tensors(rows)``: the tuple of tensors :func:`~galforge.train.loop.fit`
        takes as the data set of those rows.
    loss_fn
        ``loss_fn(model, batch) -> (loss, metrics)`` as :func:`~galforge.train.loop.fit`
        takes it.
    normalization
        Stored in the checkpoint as the model's normalisation (plain values).
    model_kwargs
        Constructor keyword arguments stored in the checkpoint; ``None``: the
        model's ``init_kwargs``.
    usable
        Boolean mask over the rows (``None``: all usable). Unusable rows are
        dropped from both sides after the split is drawn over every row.
    """

    name: str
    noun: str
    source: str | Path
    n_rows: int
    rows_checksum: int
    model_settings: Mapping[str, Any]
    build_model: Callable[[np.ndarray], nn.Module]
    tensors: Callable[[np.ndarray], tuple[Tensor, ...]]
    loss_fn: Callable[[nn.Module, Any], tuple[Tensor, dict[str, float]]]
    normalization: Mapping[str, Any]
    model_kwargs: Mapping[str, Any] | None = None
    usable: np.ndarray | None = None


@dataclass(frozen=True)
class JobResult:
    """What :func:`run_training_job` did: the rows used, the work folder and ``fit``'s result."""

    train_rows: np.ndarray
    val_rows: np.ndarray
    workdir: Path
    fit: TrainResult

    def summary(self) -> dict[str, Any]:
        """Plain summary: ``n_train``, ``n_val``, ``epochs``, ``stop_reason``,
        ``best_val_loss``, ``best_epoch``, ``device``, ``resumed``."""
        r = self.fit
        return {
            "n_train": int(len(self.train_rows)), "n_val": int(len(self.val_rows)),
            "epochs": int(r.epochs_completed), "stop_reason": r.stop_reason,
            "best_val_loss": float(r.best_val_loss), "best_epoch": int(r.best_epoch),
            "device": str(r.device), "resumed": bool(r.resumed),
        }


def run_training_job(
    job: TrainingJob,
    train_settings: TrainSettings | Mapping[str, Any] | None,
    *,
    seed: int,
    val_fraction: float,
    salt: int,
    out_model: str | Path,
    out_metrics: str | Path,
    workroot: str | Path,
    progress: bool = True,
    run_config: Mapping[str, Any] | None = None,
    split_seed: int | None = None,
) -> JobResult:
    """Split, build, train (resuming from ``workroot``) and write the model and metrics.

    Parameters
    ----------
    job
        The study's part (:class:`TrainingJob`).
    train_settings
        :class:`~galforge.train.settings.TrainSettings` keys (``seed`` and
        ``progress`` are set here).
    seed, val_fraction, salt
        The run seed (weights, shuffling, split), the validation fraction and the
        study's split salt (:func:`~galforge.train.split.split_indices`).
    out_model, out_metrics
        The final checkpoint (``load_for_inference`` reads it) and the metrics CSV,
        each written atomically.
    workroot
        Parent of the work folder ``<workroot>/<settings key>/`` holding the rolling
        checkpoint; rerunning a killed job with the same settings resumes there.
    run_config
        Stored in the checkpoint (provenance).
    split_seed
        Seed of the train/validation split when it differs from ``seed`` (a study that
        trains one model with several seeds on the same validation rows); ``None``: ``seed``.

    Raises
    ------
    InputError
        When fewer than 2 usable training rows or no usable validation row remain.
    """
    from galforge.train.loop import fit
    from galforge.train.seeding import seed_everything
    from galforge.train.settings import RESUME_SAFE_FIELDS, TrainSettings
    from galforge.train.split import split_indices

    tsettings = TrainSettings.from_dict(train_settings).replace(seed=int(seed),
                                                                progress=bool(progress))
    split = int(seed) if split_seed is None else int(split_seed)
    train_idx, val_idx = split_indices(job.n_rows, val_fraction, split, salt=salt)
    if job.usable is not None:
        ok = np.asarray(job.usable, dtype=bool)
        train_idx, val_idx = train_idx[ok[train_idx]], val_idx[ok[val_idx]]
    if len(train_idx) < 2 or len(val_idx) < 1:
        raise InputError(f"{job.source}: too few usable {job.noun} to train ({len(train_idx)} "
                         f"training, {len(val_idx)} validation)")
    # fields that may change between a kill and the rerun (progress bar, ...) stay out of the key
    resumable = {k: v for k, v in tsettings.to_dict().items() if k not in RESUME_SAFE_FIELDS}
    key = settings_key(dict(job.model_settings), resumable, float(val_fraction), int(job.n_rows),
                       int(job.rows_checksum), *(() if split_seed is None else (split,)))
    workdir = Path(workroot) / key
    prefix = f"{job.name}: " if job.name else ""
    log.info("%straining on %d %s (%d validation); work folder %s", prefix, len(train_idx),
             job.noun, len(val_idx), workdir)

    seed_everything(int(seed))
    model = job.build_model(train_idx)
    result = fit(
        model, job.loss_fn, job.tensors(train_idx), job.tensors(val_idx), tsettings,
        workdir=workdir, log_dir=workdir, run_config=run_config,
        normalization=dict(job.normalization),
        model_kwargs=None if job.model_kwargs is None else dict(job.model_kwargs),
    )
    from galforge.train.distributed import is_main_process

    if is_main_process():  # under torchrun, rank 0 writes the outputs
        with atomic_path(out_model) as tmp:
            shutil.copyfile(result.checkpoint_path, tmp)
        with atomic_path(out_metrics) as tmp:
            shutil.copyfile(result.metrics_path, tmp)
    return JobResult(train_rows=train_idx, val_rows=val_idx, workdir=workdir, fit=result)
