"""Bayesian information criterion of the VAE / CVAE grid (the paper's Fig. 2).

``BIC = k ln n − 2 ln L`` (Schwarz 1978) with, as in Iwasaki, Cooray &
Takeuchi, ``k = latent_dim + n_conditions``. What ``L`` and ``n`` are decides
whether the criterion can find anything, so we state our choice:

* ``n`` is the number of **validation spectra** (held out from training; the
  same rows for every model of the grid, see
  :func:`galforge.train.split.split_indices`).
* ``L`` is the Gaussian likelihood of the validation spectra under the decoder
  at the posterior mean (z = μ), with the file's inverse-variance weights
  times one free global factor ``1/σ²`` (profiled out), **each spectrum counted
  as one observation**: the log-likelihood of spectrum j is divided by its
  number of weighted pixels ``n_j`` (a tempered or "coarsened" likelihood,
  Miller & Dunson 2019). Then

  ``σ̂² = (1/n) Σ_j χ²_j / n_j`` (the mean reduced χ²) and
  ``ln L = −(n/2) [ln(2π σ̂²) + 1]``,

  the classic ``n ln(RSS/n)`` form of the BIC for Gaussian errors of unknown
  variance, with the per-spectrum reduced χ² as the squared residual.

Why not the plain per-pixel likelihood (or the held-out ELBO): the pixels of a
spectrum are not independent given an imperfect decoder, and summing ~4000
pixel terms per spectrum makes ``ln L`` differ between two equally good models
by many thousands just from training noise, against a penalty of ``ln n ≈ 6``
per parameter; the argmin then lands on the largest model of the grid. With
the tempered form an extra latent must lower the mean reduced χ² by more than
``2 ln(n) / n`` (2 % for n = 600) to pay for itself. Both alternatives are
still reported (``gauss_log_l``, ``elbo`` and their BICs) for comparison.

Several training seeds
----------------------
A trained model's BIC carries training noise (initial weights, batch order): on the
demo mock (seed 42, 10 epochs) the BIC of one VAE grid point varied by a standard
deviation of 0.3–5 over three training seeds, and two seeds had their minimum at d = 5,
the third at d = 6 (1.0 below its d = 5). Every grid point is therefore trained
``grid.seeds`` times (repeats, each with its own seed, all on the same validation spectra), :func:`bic_table` keeps one row per
(model, repeat), and :func:`bic_summary` one row per grid point: mean, standard
deviation, min and max of the BIC over the repeats, and the difference of the mean to
the lowest mean of its kind with its standard error
``sqrt(s²_d / m_d + s²_best / m_best)`` (the repeats of two grid points are independent
trainings). The latent size is chosen by the **mean** BIC per kind; the analyses use
the chosen grid point's repeat with the lowest BIC (its *representative*).

Evidence (synthetic spectra with P known non-linear factors; the grids are in
the docstring of ``tests/spectra/test_bic.py``): the tempered BIC's minimum sat
at P or P + 1 in every grid we ran (P = 2, 3, 4), while the per-pixel Gaussian
BIC always chose the largest or second-largest model. The minimum lands at
P + 1 when the P-latent model is still short of the noise floor (4-factor demo
grid: mean reduced χ² 1.018 at d = 4 against 1.006 at d = 5, BICs 0.27 apart);
longer training moves it towards P.

Why the demo grid can land at P + 2 (run seed 7, measured 2026-12-04; the mock and the
split change with the run seed): with the demo's 10 epochs all three training seeds chose
d = 6 (mean reduced χ² on the validation spectra 1.126 / 1.118 / 1.078 at d = 4 / 5 / 6);
with 25 epochs all three chose d = 4 (1.097 / 1.095 / 1.071; mean BICs 1266.6, 1271.9,
1268.7). The four planted parameters act non-linearly on the flux (line strengths are
products of sSFR, age and dust terms), so a *linear* model needs six directions: the
noise-weighted PCA of those spectra reaches 1.091 / 1.090 / 1.038 with 4 / 5 / 6
components. A d = 6 model gets the sixth direction through its PCA-started linear
shortcut, while the d = 4 model must learn it in its non-linear paths, which the demo's
2,400 training spectra and 10 epochs do only in part (after 25 epochs the d = 4 model fits
its training spectra to 1.035 but the validation spectra only to 1.097). Without the
linear shortcuts every grid point stayed above 1.5 after 10 epochs. These numbers are
with the spectra standardised by each pixel's spread over the spectra
(``model.pixel_scale: spread``); standardised by the pixel's noise (the default since),
the PCA start ranks directions by the weighted residual, the d = 4 models reach 1.030
in 10 epochs, and every training seed chooses d = 4 at run seeds 7 and 42.

References
----------
Schwarz, G. 1978, "Estimating the Dimension of a Model", Ann. Stat. 6, 461.
Miller, J. W. & Dunson, D. B. 2019, "Robust Bayesian Inference via Coarsening",
JASA 114, 1113.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.io import InputError, atomic_path
from galforge.spectra.model_ids import CONDITION_SHORT

log = logging.getLogger("galforge.spectra")

__all__ = [
    "BIC_COLUMNS",
    "SUMMARY_COLUMNS",
    "best_model",
    "bic_summary",
    "bic_table",
    "chosen_run",
    "evaluate_model",
    "load_evaluations",
    "read_bic_summary",
    "read_bic_table",
    "tempered_log_likelihood",
    "write_bic_table",
    "write_evaluation",
]

#: Columns :func:`read_bic_table` needs.
_READ_COLUMNS: tuple[str, ...] = ("model_id", "repeat", "seed", "kind", "conditions",
                                  "latent_dim", "bic", "chi2_nu", "best_in_kind")
#: Columns :func:`read_bic_summary` needs.
_READ_SUMMARY_COLUMNS: tuple[str, ...] = (
    "model_id", "kind", "conditions", "latent_dim", "n_seeds", "bic_mean", "bic_std",
    "delta_bic", "delta_bic_se", "best_in_kind", "chi2_nu_mean", "representative_repeat",
    "representative_seed")
#: Columns of :func:`bic_table` (one row per model and repeat), in order.
BIC_COLUMNS: tuple[str, ...] = (
    "model_id", "repeat", "seed", "kind", "conditions", "latent_dim", "n_conditions", "k", "n",
    "log_l", "bic", "delta_bic", "best_in_kind", "best_in_group", "chi2_nu", "gauss_log_l",
    "bic_gauss", "elbo", "bic_elbo", "kl_mean", "active_latents",
)
#: Columns of :func:`bic_summary` (one row per grid point), in order.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "model_id", "kind", "conditions", "latent_dim", "n_conditions", "k", "n", "n_seeds",
    "bic_mean", "bic_std", "bic_min", "bic_max", "delta_bic", "delta_bic_se", "best_in_kind",
    "best_in_group", "n_seeds_best", "chi2_nu_mean", "chi2_nu_std", "representative_repeat",
    "representative_seed",
)


def tempered_log_likelihood(chi2: np.ndarray, npix: np.ndarray) -> tuple[float, float]:
    """``(ln L, σ̂²)`` of the BIC's likelihood from per-spectrum χ² and weighted-pixel counts.

    ``σ̂² = mean_j χ²_j / n_j`` and ``ln L = −(n/2) [ln(2π σ̂²) + 1]`` (module docstring).
    """
    chi2 = np.asarray(chi2, dtype=np.float64)
    npix = np.asarray(npix, dtype=np.float64)
    if chi2.shape != npix.shape or chi2.ndim != 1 or chi2.size == 0:
        raise ValueError("chi2 and npix must be equal-length, non-empty 1-D arrays")
    if np.any(npix <= 0):
        raise ValueError("every spectrum needs at least one weighted pixel")
    s2 = float(np.mean(chi2 / npix))
    n = chi2.size
    return -0.5 * n * (math.log(2.0 * math.pi * s2) + 1.0), s2


def evaluate_model(
    model_path: str | Path,
    data_path: str | Path,
    *,
    batch_size: int = 256,
    active_kl: float = 0.01,
) -> dict[str, Any]:
    """Held-out likelihoods and BICs of one trained model.

    The validation rows are those of the model's training split (stored in the
    model file; the data file must be the one it was trained on). Eval mode,
    z = μ, no gradients.

    Returns
    -------
    dict
        ``model_id``, ``seed`` (the training seed stored in the model file), ``kind``,
        ``conditions`` (property columns), ``latent_dim``,
        ``n_conditions``, ``k``, ``n`` (validation spectra used), ``log_l``
        (:func:`tempered_log_likelihood`), ``bic`` (``k ln n − 2 log_l``), ``chi2_nu``
        (σ̂², the mean reduced χ²), ``gauss_log_l`` (Σ_j of the full per-pixel
        Gaussian log-likelihood ``−½ χ²_j + ½ Σ_p ln(w/2π)``) and ``bic_gauss``,
        ``elbo`` (``gauss_log_l − Σ_j KL_j``, plug-in at z = μ) and ``bic_elbo``,
        ``kl_mean`` (mean KL per spectrum), ``kl_per_latent`` (list), ``active_latents``
        (latents whose mean KL exceeds ``active_kl`` nats; Burda et al. 2016).
    """
    import torch

    from galforge.spectra.model import weighted_sq_residuals
    from galforge.spectra.store import read_spectra_file
    from galforge.spectra.training import _finite_rows, validation_rows
    from galforge.train import load_for_inference
    from galforge.train.vae import eval_mode, kl_to_standard_normal

    model, meta = load_for_inference(model_path)
    norm = meta.normalization or {}
    rows = validation_rows(norm, data_path)
    data = read_spectra_file(data_path, model.conditions, rows=rows)
    assert data.flux is not None and data.weight is not None
    ok = np.flatnonzero(_finite_rows(data.conditions))
    if ok.size == 0:
        raise InputError(f"{data_path}: no validation spectrum with finite conditions")
    chi2 = np.empty(ok.size)
    npix = np.empty(ok.size)
    lognorm = np.empty(ok.size)
    kl = np.empty((ok.size, model.latent_dim))
    with torch.no_grad(), eval_mode(model):
        for s in range(0, ok.size, int(batch_size)):
            idx = ok[s : s + int(batch_size)]
            x = torch.from_numpy(data.flux[idx])
            w = torch.from_numpy(data.weight[idx])
            c = data.conditions[idx] if model.n_cond else None
            mu, logvar = model.encode(x, c)
            xhat = model.decode(mu, c)
            sl = slice(s, s + len(idx))
            chi2[sl] = weighted_sq_residuals(x.double(), xhat.double(), w.double()).numpy()
            npix[sl] = (w > 0).sum(dim=1).numpy()
            wd = w.double()
            lognorm[sl] = torch.where(wd > 0, torch.log(wd / (2 * math.pi)),
                                      torch.zeros_like(wd)).sum(dim=1).numpy()
            kl[sl] = kl_to_standard_normal(mu.double(), logvar.double()).numpy()
    n = int(ok.size)
    log_l, s2 = tempered_log_likelihood(chi2, npix)
    gauss = float(np.sum(-0.5 * chi2 + 0.5 * lognorm))
    kl_tot = kl.sum(axis=1)
    elbo = gauss - float(kl_tot.sum())
    k = int(model.latent_dim + model.n_cond)
    kind = "cvae" if model.n_cond else "vae"
    from galforge.spectra.model_ids import model_id

    kl_per = kl.mean(axis=0)
    out = {
        "model_id": model_id(kind, model.conditions, model.latent_dim),
        "seed": int(norm.get("seed", norm.get("split", {}).get("seed", -1))),
        "kind": kind,
        "conditions": list(model.conditions),
        "latent_dim": int(model.latent_dim),
        "n_conditions": int(model.n_cond),
        "k": k,
        "n": n,
        "log_l": float(log_l),
        "bic": float(k * math.log(n) - 2.0 * log_l),
        "chi2_nu": float(s2),
        "gauss_log_l": gauss,
        "bic_gauss": float(k * math.log(n) - 2.0 * gauss),
        "elbo": elbo,
        "bic_elbo": float(k * math.log(n) - 2.0 * elbo),
        "kl_mean": float(kl_tot.mean()),
        "kl_per_latent": [float(v) for v in kl_per],
        "active_latents": int(np.sum(kl_per > active_kl)),
        "n_pixels_mean": float(npix.mean()),
    }
    log.info("%s: n=%d k=%d chi2_nu=%.4f log L=%.2f BIC=%.2f", out["model_id"], n, k, s2,
             log_l, out["bic"])
    return out


def write_evaluation(evaluation: Mapping[str, Any], dest: str | Path) -> Path:
    """Write an :func:`evaluate_model` result as JSON, atomically."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(dict(evaluation), indent=2, sort_keys=True) + "\n",
                       encoding="utf-8")
    return dest


def load_evaluations(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read evaluation JSON files; :class:`~galforge.io.InputError` names a bad file or key."""
    rows = []
    need = ("model_id", "kind", "conditions", "latent_dim", "k", "n", "log_l")
    for p in paths:
        p = Path(p)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{p}: not a readable evaluation JSON file ({exc})") from None
        if not isinstance(d, dict):
            raise InputError(f"{p}: expected a JSON object")
        for key in need:
            if key not in d:
                raise InputError(f"{p}: key {key!r} is missing")
        rows.append(d)
    return rows


def _cond_label(conds: Any) -> str:
    conds = list(conds or [])
    return "+".join(CONDITION_SHORT.get(c, str(c)) for c in conds)


def bic_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model and repeat, sorted by kind, conditions, latent size and repeat.

    ``bic`` is recomputed from ``k``, ``n`` and ``log_l`` (so the table never
    disagrees with its inputs). Within each repeat (one training seed): ``delta_bic`` is
    relative to the smallest BIC of the same kind, ``best_in_kind`` marks the lowest BIC
    among the VAEs and among the CVAEs (that seed's own choice), ``best_in_group`` the
    lowest within each condition set. ``conditions`` is written with short names
    (``""`` for the VAE). A row without ``repeat`` is repeat 0 (an evaluation of a
    one-seed grid); ``seed`` is the training seed (−1 when unknown). The choice over
    the repeats is :func:`bic_summary`'s. A warning is logged when the models were
    evaluated on different numbers of spectra (CVAE rows without finite conditions),
    since BICs then compare slightly different data.
    """
    recs = []
    for r in rows:
        n, k, log_l = int(r["n"]), int(r["k"]), float(r["log_l"])
        if n < 1:
            raise InputError(f"model {r.get('model_id')!r}: n must be >= 1, got {n}")
        rec = {c: r.get(c, np.nan) for c in BIC_COLUMNS}
        rec.update(
            model_id=str(r["model_id"]), repeat=int(r.get("repeat", 0)),
            seed=int(r.get("seed", -1)), kind=str(r["kind"]),
            conditions=_cond_label(r.get("conditions")), latent_dim=int(r["latent_dim"]),
            n_conditions=int(r.get("n_conditions", len(r.get("conditions") or []))), k=k, n=n,
            log_l=log_l, bic=k * math.log(n) - 2.0 * log_l,
        )
        recs.append(rec)
    if not recs:
        raise InputError("no model evaluations to tabulate")
    df = pd.DataFrame(recs, columns=list(BIC_COLUMNS))
    dup = df.duplicated(["model_id", "repeat"])
    if dup.any():
        first = df.loc[dup].iloc[0]
        raise InputError(f"model {first['model_id']!r} repeat {first['repeat']} is listed twice")
    if df["n"].nunique() > 1:
        log.warning("the models were evaluated on different numbers of spectra (%s): their BICs "
                    "compare slightly different data", sorted(df["n"].unique().tolist()))
    df = df.sort_values(["kind", "n_conditions", "conditions", "latent_dim", "repeat"],
                        kind="stable").reset_index(drop=True)
    df["delta_bic"] = df["bic"] - df.groupby(["kind", "repeat"])["bic"].transform("min")
    df["best_in_kind"] = False
    df.loc[df.groupby(["kind", "repeat"])["bic"].idxmin(), "best_in_kind"] = True
    df["best_in_group"] = False
    df.loc[df.groupby(["kind", "conditions", "repeat"])["bic"].idxmin(), "best_in_group"] = True
    return df


def bic_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per grid point of a :func:`bic_table`: the BIC over the repeats, the choice.

    ``bic_mean``, ``bic_std`` (sample standard deviation, NaN for one repeat), ``bic_min``,
    ``bic_max`` over the ``n_seeds`` repeats; ``chi2_nu_mean``, ``chi2_nu_std`` likewise.
    ``best_in_kind`` marks the lowest **mean** BIC among the VAEs and among the CVAEs (the
    choice; a tie goes to the smaller model), ``best_in_group`` the lowest within each
    condition set. ``delta_bic`` is the mean's excess over the best mean of its kind and
    ``delta_bic_se`` its standard error ``sqrt(s²/m + s²_best/m_best)`` (0 for the best
    itself, NaN with one repeat). ``n_seeds_best``: in how many repeats this grid point
    had that repeat's lowest BIC of its kind (the per-seed choices).
    ``representative_repeat`` / ``representative_seed``: the repeat with the grid
    point's lowest BIC, which the analyses use.

    Raises :class:`~galforge.io.InputError` when the grid points were not all trained
    with the same repeats (their means would average different seeds).
    """
    need = ("model_id", "repeat", "seed", "kind", "conditions", "latent_dim", "bic", "chi2_nu",
            "best_in_kind")
    if missing := [c for c in need if c not in table.columns]:
        raise InputError(f"the BIC table lacks column(s) {', '.join(missing)}")
    if table.empty:
        raise InputError("the BIC table is empty")
    repeats = table.groupby("model_id", sort=False)["repeat"].apply(lambda r: tuple(sorted(r)))
    if repeats.nunique() > 1:
        want = max(repeats, key=len)
        odd = next(m for m, r in repeats.items() if r != want)
        raise InputError(f"model {odd!r} has repeats {list(repeats[odd])}, others "
                         f"{list(want)}: every grid point needs the same repeats")
    first = [c for c in ("model_id", "kind", "conditions", "latent_dim", "n_conditions", "k", "n")
             if c in table.columns]
    g = table.groupby("model_id", sort=False)
    out = g[first].first().reset_index(drop=True)
    bic = g["bic"]
    out["n_seeds"] = g.size().to_numpy()
    out["bic_mean"] = bic.mean().to_numpy()
    out["bic_std"] = bic.std(ddof=1).to_numpy()
    out["bic_min"] = bic.min().to_numpy()
    out["bic_max"] = bic.max().to_numpy()
    best_of = out.groupby("kind")["bic_mean"].idxmin()
    ref = out.loc[best_of.reindex(out["kind"]).to_numpy()].reset_index(drop=True)
    out["delta_bic"] = out["bic_mean"] - ref["bic_mean"]
    se = np.sqrt(out["bic_std"] ** 2 / out["n_seeds"] + ref["bic_std"] ** 2 / ref["n_seeds"])
    out["delta_bic_se"] = np.where(out["model_id"] == ref["model_id"],
                                   np.where(out["n_seeds"] > 1, 0.0, np.nan), se)
    out["best_in_kind"] = False
    out.loc[best_of.to_numpy(), "best_in_kind"] = True
    out["best_in_group"] = False
    out.loc[out.groupby(["kind", "conditions"])["bic_mean"].idxmin().to_numpy(),
            "best_in_group"] = True
    best_rows = table["best_in_kind"].astype(str).str.lower().isin(("true", "1"))
    per_seed = table[best_rows].groupby("model_id").size()
    out["n_seeds_best"] = per_seed.reindex(out["model_id"]).fillna(0).astype(int).to_numpy()
    out["chi2_nu_mean"] = g["chi2_nu"].mean().to_numpy()
    out["chi2_nu_std"] = g["chi2_nu"].std(ddof=1).to_numpy()
    rep = table.loc[bic.idxmin().to_numpy(), ["repeat", "seed"]].reset_index(drop=True)
    out["representative_repeat"] = rep["repeat"].astype(int).to_numpy()
    out["representative_seed"] = rep["seed"].astype(np.int64).to_numpy()
    return out[[c for c in SUMMARY_COLUMNS if c in out.columns]]


def write_bic_table(table: pd.DataFrame, csv: str | os.PathLike, md: str | os.PathLike) -> None:
    """Write a BIC table (:func:`bic_table` or :func:`bic_summary`) as CSV and Markdown."""
    from galforge.stats import write_tables

    write_tables(table, csv, md)


def _read_csv_table(path: str | os.PathLike, what: str, columns: Sequence[str],
                    numeric: Sequence[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        t = pd.read_csv(path, dtype={"conditions": str, "kind": str, "model_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in columns if c not in t.columns]
    if missing:
        raise InputError(f"{path}: column(s) {', '.join(map(repr, missing))} missing "
                         f"(has {', '.join(map(str, t.columns))})")
    t["conditions"] = t["conditions"].fillna("")
    for col in numeric:
        v = pd.to_numeric(t[col], errors="coerce")
        if v.isna().all() and len(t):
            raise InputError(f"{path}: column {col!r} has no numeric value")
        t[col] = v
    return t


def read_bic_table(path: str | os.PathLike) -> pd.DataFrame:
    """The per-(model, repeat) BIC table written by :func:`write_bic_table` (``bic.csv``).

    VAE conditions read as ``""``; ``latent_dim``, ``repeat``, ``seed``, ``bic`` and
    ``chi2_nu`` as numbers. Raises :class:`~galforge.io.InputError` naming the file on a
    missing file or column.
    """
    return _read_csv_table(path, "BIC table", _READ_COLUMNS,
                           ("latent_dim", "repeat", "seed", "bic", "chi2_nu"))


def read_bic_summary(path: str | os.PathLike) -> pd.DataFrame:
    """The per-grid-point summary written by :func:`write_bic_table` (``bic_summary.csv``).

    VAE conditions read as ``""``; the latent size, the BIC statistics and the
    representative repeat and seed as numbers. Raises :class:`~galforge.io.InputError`
    naming the file on a missing file or column.
    """
    return _read_csv_table(path, "BIC summary", _READ_SUMMARY_COLUMNS,
                           ("latent_dim", "n_seeds", "bic_mean", "chi2_nu_mean",
                            "representative_repeat", "representative_seed"))


def best_model(table: pd.DataFrame, kind: str = "vae", conditions: str | None = None) -> str:
    """``model_id`` of the chosen model of ``kind`` (and condition set, short names).

    On a :func:`bic_summary` the lowest mean BIC (the choice); on a :func:`bic_table`
    of one repeat, the lowest BIC.
    """
    sub = table[table["kind"] == kind]
    if conditions is not None:
        sub = sub[sub["conditions"] == conditions]
    if sub.empty:
        raise InputError(f"no {kind} model{' with conditions ' + conditions if conditions else ''} "
                         "in the BIC table")
    column = "bic_mean" if "bic_mean" in sub.columns else "bic"
    return str(sub.loc[sub[column].idxmin(), "model_id"])


def chosen_run(summary: pd.DataFrame, kind: str = "vae") -> tuple[str, int, int]:
    """``(model_id, repeat, seed)`` the analyses use for ``kind``: the grid point of lowest
    mean BIC (:func:`bic_summary`) and its repeat with the lowest BIC."""
    mid = best_model(summary, kind)
    row = summary[summary["model_id"] == mid].iloc[0]
    return mid, int(row["representative_repeat"]), int(row["representative_seed"])
