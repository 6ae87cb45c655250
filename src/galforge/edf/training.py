"""Train one flow of the edf study: a cross-validation model or the all-galaxies model.

Thin glue between the eDF table (:mod:`galforge.edf.table`), the flow
(:mod:`galforge.edf.flow`) and the shared training job
(:func:`galforge.train.job.run_training_job`):

* :func:`heldout_galaxies`: which galaxies each model leaves out. ``leave_out`` (the
  seed's ``get_crossval_leavouts``): ``n_models`` draws of ``n_leave_out`` galaxies,
  each without repeats, independent of each other (a galaxy may be left out by several
  models or by none), from a generator seeded with ``(seed, CV_SALT)``; ``kfold``: one
  seeded permutation cut into ``k`` near-equal folds (a partition). ``all`` leaves out
  none. The seed drew its leave-outs unseeded; ours are reproducible.
* the rows are stars; the stars of held-out galaxies are unusable, and of the others a
  seeded ``split.val_fraction`` (5 %) is the validation set (early stopping, the
  validation curve);
* the standardisation (μ/σ of the features, with log10 of ``model.log_features``, and of
  the conditions with log10 M*, each star counting once, as the seed's
  ``Data_to_flow``) comes from the training stars and is stored in the model's buffers;
  the model file's normalisation holds the model id, the held-out galaxies' ids and
  indices, the training galaxies' ids and the table's identity, so that the evaluation
  and ``galforge edf-sample`` need nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np

from galforge.edf.settings import ALL_MODEL, CrossValidationSettings, EdfModelSettings
from galforge.edf.table import EdfTable, read_edf_table
from galforge.io import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from galforge.train.job import JobOptions
    from galforge.train.settings import TrainSettings

log = logging.getLogger("galforge.edf")

__all__ = ["CV_SALT", "SPLIT_SALT", "features_of", "heldout_galaxies", "table_checksum",
           "train_edf_model"]

#: Salt of the star-level train/validation split (:func:`galforge.train.split.split_indices`).
SPLIT_SALT = 0xED5
#: Salt of the cross-validation draws.
CV_SALT = 0xCF0
#: Archive columns of the flow's features (the layout without the particle mass).
FEATURE_COLUMNS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10)


def features_of(stars: np.ndarray) -> np.ndarray:
    """The flow's features (N, 10) of (N, 11) archive-layout stars (float64)."""
    return np.asarray(stars, dtype=np.float64)[:, FEATURE_COLUMNS]


def heldout_galaxies(n_galaxies: int, cv: CrossValidationSettings, seed: int
                     ) -> dict[str, np.ndarray]:
    """Model id -> sorted indices of the galaxies it leaves out (``all``: none)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), CV_SALT]))
    ids = cv.model_ids()
    out: dict[str, np.ndarray] = {}
    if cv.mode == "leave_out":
        if cv.n_leave_out >= n_galaxies:
            raise InputError(f"cv.n_leave_out = {cv.n_leave_out} leaves no galaxy of "
                             f"{n_galaxies} to train on")
        for mid in ids[:-1]:
            out[mid] = np.sort(rng.choice(n_galaxies, cv.n_leave_out, replace=False))
    else:
        if cv.k > n_galaxies:
            raise InputError(f"cv.k = {cv.k} folds need at least {cv.k} galaxies, "
                             f"the table has {n_galaxies}")
        perm = rng.permutation(n_galaxies)
        for mid, fold in zip(ids[:-1], np.array_split(perm, cv.k), strict=True):
            out[mid] = np.sort(fold)
    out[ALL_MODEL] = np.zeros(0, dtype=np.int64)
    return out


def table_checksum(table: EdfTable) -> int:
    """Identifies a table's galaxies (ids and star counts, in order)."""
    blob = "|".join(f"{g}:{n}" for g, n in zip(table.galaxies["galaxy_id"],
                                               table.galaxies["n_stars"], strict=True))
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:7], "little")


def _transformed_conditions(cond: np.ndarray) -> np.ndarray:
    out = np.array(cond, dtype=np.float64)
    out[:, 0] = np.log10(out[:, 0])
    return out


def train_edf_model(table_path: str | Path, model_id: str,
                    model_settings: EdfModelSettings | Mapping[str, Any],
                    train_settings: TrainSettings | Mapping[str, Any],
                    cv: CrossValidationSettings | Mapping[str, Any], *, seed: int,
                    val_fraction: float, **options: Unpack[JobOptions]) -> dict[str, Any]:
    """Train the flow ``model_id`` (``cv00``, ..., or ``all``) on the eDF table.

    ``options`` (``out_model``, ``out_metrics``, ``workroot``, ``progress``,
    ``run_config``) go to :func:`galforge.train.job.run_training_job`. Returns a summary
    (the job's, the held-out galaxies, parameters, seconds).
    """
    import torch

    from galforge.edf.flow import edf_nll_loss
    from galforge.train.job import TrainingJob, run_training_job

    t0 = time.perf_counter()
    ms = EdfModelSettings.from_dict(model_settings)
    cvs = CrossValidationSettings.from_dict(cv)
    if model_id not in cvs.model_ids():
        raise InputError(f"no model {model_id!r}: the cross-validation settings give "
                         f"{', '.join(cvs.model_ids())}")
    table = read_edf_table(table_path)
    assert table.stars is not None and table.galaxy is not None
    held = heldout_galaxies(table.n_galaxies, cvs, seed)[model_id]
    usable = ~np.isin(table.galaxy, held)
    cond_t = _transformed_conditions(table.conditions())  # (G, 4)
    ids = table.galaxies["galaxy_id"].astype(str).to_numpy()
    x_std = np.zeros(0, dtype=np.float32)
    c_std = np.zeros(0, dtype=np.float32)

    def build(train_idx: np.ndarray) -> torch.nn.Module:
        nonlocal x_std, c_std
        model = ms.build()
        feats = features_of(table.stars)
        if model.log_index:
            bad = feats[:, model.log_index] <= 0
            if bad.any():
                i = int(np.flatnonzero(bad.any(axis=1))[0])
                raise InputError(f"{table.path}: star {i} has a non-positive value of a log "
                                 f"feature {ms.log_features}")
            feats[:, model.log_index] = np.log10(feats[:, model.log_index])
        f_tr = feats[train_idx]
        c_tr = cond_t[table.galaxy[train_idx]]
        f_mean, f_std = f_tr.mean(axis=0), f_tr.std(axis=0)
        c_mean, c_std_ = c_tr.mean(axis=0), c_tr.std(axis=0)
        c_std_ = np.where(c_std_ > 0, c_std_, 1.0)  # one training galaxy: a constant
        if not (f_std > 0).all():
            raise InputError(f"{table.path}: a feature is constant over the training stars")
        model.set_scaling(f_mean, f_std, c_mean, c_std_)
        x_std = ((feats - f_mean) / f_std).astype(np.float32)
        c_std = ((cond_t - c_mean) / c_std_).astype(np.float32)
        return model

    def tensors(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(x_std[rows]), torch.from_numpy(c_std[table.galaxy[rows]]))

    checksum = table_checksum(table)
    job = TrainingJob(
        name=model_id, noun="stars", source=table.path, n_rows=len(table.galaxy),
        rows_checksum=checksum, model_settings={**ms.to_dict(), "heldout": held.tolist()},
        build_model=build, tensors=tensors, loss_fn=edf_nll_loss, usable=usable,
        model_kwargs=ms.model_kwargs(),
        normalization={
            "model_id": model_id, "heldout_index": held.tolist(),
            "heldout_ids": ids[held].tolist(),
            "train_ids": ids[np.setdiff1d(np.arange(table.n_galaxies), held)].tolist(),
            "cv": cvs.to_dict(), "seed": int(seed), "val_fraction": float(val_fraction),
            "table": {"n_galaxies": table.n_galaxies, "n_stars": len(table.galaxy),
                      "checksum": checksum},
        },
    )
    done = run_training_job(job, train_settings, seed=seed, val_fraction=val_fraction,
                            salt=SPLIT_SALT, **options)
    summary = {"model_id": model_id, **done.summary(), "heldout_ids": ids[held].tolist(),
               "n_parameters": int(sum(p.numel() for p in done.fit.model.parameters())),
               "seconds": round(time.perf_counter() - t0, 3)}
    log.info("%s: training done: %s", model_id, summary)
    return summary
