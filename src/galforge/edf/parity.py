"""The edf study's paper-vs-ours table (``tables/parity.csv`` / ``.md`` / ``.html``).

GalacticFlow (Wolf & Buck) learns the 10-D stellar eDF of NIHAO galaxies with a
conditional spline flow of about 2.94 million parameters, trained for 10 epochs (18 h on
one GPU), judged by leave-out models (20, each leaving out 5 galaxies) through the MMD of
a held-out galaxy's flow sample against every data galaxy as a function of Δlog M*, and
sampling a galaxy of a million stars in seconds (3.5 s on an RTX 2080Ti in the authors'
code). Ours, from this run: the parameters of the paper preset's flow (built, not
trained) and of this run's flows, the cross-validation scheme and the training time of
the all-galaxies model (``models/all/training.json``), the held-out checks and the rise of
the MMD with |Δlog M*| (``tables/truth_recovery.json``, ``tables/mmd_vs_dlogm.csv``), and
the time this run's all-galaxies flow takes to sample 1e6 stars on this machine (measured
here on ``sample_stars`` stars and scaled linearly: sampling is a fixed cost per star).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from galforge.io import InputError
from galforge.parity import PaperValue, parity_frame, parity_row, read_report

__all__ = ["PAPER", "TIMED", "TITLE", "paper_preset_parameters", "parity_from_files", "parity_table",
           "time_sampling"]

_REF = "Wolf & Buck, GalacticFlow"
_CODE = f"{_REF} (the authors' code)"
#: The paper's headline numbers, with where they are stated (the one place they live).
PAPER: dict[str, PaperValue] = {
    "parameters": PaperValue(
        "Flow parameters (14 layers, K = 10, 4 × 128 conditioner MLPs)", "2,939,188", _CODE),
    "training": PaperValue(
        "Training of one flow", "~18 h on one RTX 2080Ti (90 galaxies; 10 epochs in the "
        "authors' code)", f"{_REF}, abstract"),
    "cv": PaperValue(
        "Leave-out models (models × galaxies left out of each)", "20 × 5, drawn independently",
        _CODE),
    "heldout": PaperValue(
        "Held-out galaxies reproduced (MMD of the flow's sample)",
        "comparable to data-vs-data at small |Δlog M*| (qualitative)",
        f"{_REF}, MMD vs Δlog M* figure"),
    "rise": PaperValue(
        "MMD of a held-out galaxy's flow sample against data galaxies vs |Δlog M*|",
        "grows with |Δlog M*|, like data-vs-data pairs (qualitative)",
        f"{_REF}, MMD vs Δlog M* figure"),
    "sampling": PaperValue("Time to sample a galaxy of 1e6 stars",
                           "a few seconds (abstract); 3.5 s on an RTX 2080Ti with the authors' code",
                           _REF),
}

TITLE = "eDF study: paper (Wolf & Buck, GalacticFlow) vs ours"
#: Rows whose "ours" is a wall-clock time on this machine (differ between two runs).
TIMED: tuple[str, ...] = (PAPER["training"].quantity, PAPER["sampling"].quantity)


def paper_preset_parameters() -> int:
    """Trainable parameters of the flow at the paper preset (the settings defaults)."""
    import torch

    from galforge.edf.flow import EdfFlow
    from galforge.edf.settings import EdfModelSettings

    torch.manual_seed(0)  # the weights do not matter, only their number
    flow = EdfFlow(**EdfModelSettings().model_kwargs())
    return int(sum(p.numel() for p in flow.parameters() if p.requires_grad))


def time_sampling(model: str | os.PathLike, conditions: Sequence[float], n: int, *,
                  seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Seconds the trained flow in ``model`` takes to sample ``n`` stars at ``conditions``
    on ``device`` (one warm-up draw of 1,000 stars first), and the same scaled to 1e6."""
    import torch

    from galforge.train import load_for_inference

    flow, _ = load_for_inference(model)
    flow.to(device)
    cond = [float(c) for c in conditions]
    flow.sample(1000, cond, seed=seed, devices=[device])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    flow.sample(int(n), cond, seed=seed + 1, devices=[device])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"n": int(n), "seconds": seconds, "seconds_per_million": seconds * 1e6 / n,
            "device": device, "threads": torch.get_num_threads()}


def _fmt_int(n: int) -> str:
    return f"{int(n):,}"


def _near_median(pairs: pd.DataFrame, dlogm: float = 0.1) -> float:
    """Median kernel MMD² of the pairs closer than ``dlogm`` in log M*."""
    return float(pairs.loc[pairs["dlogm"].abs() < dlogm, "mmd_kernel"].median())


def parity_table(*, training: Mapping[str, Any], truth: Mapping[str, Any], mmd: pd.DataFrame,
                 cv: Mapping[str, Any], paper_parameters: int,
                 sampling: Mapping[str, Any] | None, scale: str, source: str) -> pd.DataFrame:
    """The paper's headline numbers beside ours.

    ``training``: the all-galaxies model's ``training.json``; ``truth``: the evaluation's
    ``truth_recovery.json``; ``mmd``: ``tables/mmd_vs_dlogm.csv`` (``kind`` model/data,
    ``dlogm``, ``mmd_kernel``); ``cv``: the ``edf.cv`` settings (``mode``, ``n_models``,
    ``n_leave_out``, ``k``); ``paper_parameters``: :func:`paper_preset_parameters`;
    ``sampling``: :func:`time_sampling` or ``None`` (row left out); ``scale``: the run's
    preset; ``source``: ``mock`` or ``archive``.
    """
    for key in ("n_parameters", "epochs", "seconds", "device"):
        if key not in training:
            raise InputError(f"training summary lacks {key!r}")
    for key in ("fraction_heldout_passing", "spearman_mmd_vs_abs_dlogm", "n_heldout"):
        if key not in truth:
            raise InputError(f"truth-recovery report lacks {key!r}")
    missing = {"kind", "dlogm", "mmd_kernel"} - set(mmd.columns)
    if missing:
        raise InputError(f"MMD vs d log M* table lacks {sorted(missing)}")
    scheme = (f"{cv['n_models']} × {cv['n_leave_out']}, drawn independently"
              if cv["mode"] == "leave_out" else f"{cv['k']}-fold partition")
    rows = [
        parity_row(PAPER["parameters"], _fmt_int(paper_parameters), source=source,
                   note=f"our paper preset (the authors' 1×1 convolution stores the full masked "
                        f"L and U, 1,400 more); this run's flows ({scale}): "
                        f"{_fmt_int(training['n_parameters'])}"),
        parity_row(PAPER["training"],
                   f"{int(training['epochs'])} epochs, {float(training['seconds']) / 60:.1f} min "
                   f"on {training['device']}", source=source,
                   note=f"this run's all-galaxies flow ({scale} preset; {training.get('n_train', 'n/a')} "
                        "training stars)"),
        parity_row(PAPER["cv"], scheme, source=source, note=f"edf.cv.mode = {cv['mode']} ({scale})"),
    ]
    model = mmd[mmd["kind"] == "model"]
    data = mmd[mmd["kind"] == "data"]
    ratio = float(truth.get("median_ratio_to_floor", math.nan))
    rows.append(parity_row(
        PAPER["heldout"],
        f"{float(truth['fraction_heldout_passing']):.0%} of {int(truth['n_heldout'])} within "
        f"{truth.get('floor_factor', 3)}× the noise floor and below the nearest neighbour",
        source=source,
        note=f"kernel MMD² vs a fresh true sample (median {ratio:.2f}× the floor: "
             f"{truth.get('floor', 'two true samples')}); acceptance ≥ "
             f"{float(truth.get('required_fraction_passing', 0.8)):.0%}: "
             + ("pass" if truth.get("pass_heldout") else "fail")))
    rows.append(parity_row(
        PAPER["rise"],
        f"Spearman {float(truth['spearman_mmd_vs_abs_dlogm']):.2f}",
        source=source,
        note=f"{len(model)} flow-vs-data and {len(data)} data-vs-data pairs; median kernel MMD² "
             f"at |Δlog M*| < 0.1: flow {_near_median(model):.4f}, data {_near_median(data):.4f}; acceptance "
             f"Spearman ≥ {truth.get('min_spearman', 0.3)}: "
             + ("pass" if truth.get("pass_mmd_rises_with_dlogm") else "fail")))
    if sampling is not None:
        rows.append(parity_row(
            PAPER["sampling"],
            f"{float(sampling['seconds_per_million']):.1f} s ({sampling['device']})",
            source=source,
            note=f"this run's all-galaxies flow ({scale}, {_fmt_int(training['n_parameters'])} "
                 f"parameters), {_fmt_int(sampling['n'])} stars in {float(sampling['seconds']):.2f} s "
                 f"on {sampling['threads']} thread(s), scaled to 1e6; the paper-size flow: "
                 "README, Performance"))
    return parity_frame(rows)


def parity_from_files(*, model: str | os.PathLike, training: str | os.PathLike,
                      truth_report: str | os.PathLike, mmd_table: str | os.PathLike,
                      table: str | os.PathLike, cv: Mapping[str, Any], scale: str, source: str,
                      sample_stars: int, seed: int = 0) -> pd.DataFrame:
    """:func:`parity_table` of the study's files; the sampling time is measured on the
    all-galaxies ``model`` at the median conditions of the eDF ``table``'s galaxies
    (``sample_stars`` = 0 leaves that row out)."""
    try:
        mmd = pd.read_csv(mmd_table)
    except (OSError, ValueError) as exc:
        raise InputError(f"{mmd_table}: not an MMD vs d log M* table ({exc})") from None
    sampling = None
    if sample_stars > 0:
        from galforge.edf.table import read_edf_table

        conds = read_edf_table(table, stars=False).conditions()
        sampling = time_sampling(model, list(np.median(conds, axis=0)), sample_stars, seed=seed)
    return parity_table(training=read_report(training),
                        truth=read_report(truth_report), mmd=mmd, cv=cv,
                        paper_parameters=paper_preset_parameters(), sampling=sampling,
                        scale=scale, source=source)
