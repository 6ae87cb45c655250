"""The spectra study's paper-vs-ours table (``tables/parity.csv`` / ``.md`` / ``.html``).

Iwasaki, Cooray & Takeuchi's headline results beside ours on this run:

* the latent size the BIC chooses among the VAEs, by its mean over the training seeds
  (``tables/bic_summary.csv``);
* the fraction of the variance of the latents along each principal axis D1, D2, …
  (``tables/pca_variance.csv``);
* where SHAP finds the spectra informative (the mean |SHAP| per pixel of every D in
  ``analysis.h5``): the share of the importance below :data:`SHAP_SPLIT_WAVE`, against
  the share of the observed pixels there, and which of the paper's emission lines
  (:data:`PAPER_LINES`) lie within :data:`LINE_TOLERANCE` of one of the
  :data:`N_PEAKS` highest peaks of some D.

On the mock, ``truth_recovery.json`` adds how many parameters the mock planted: a BIC
answer of 4 there is a recovery of the mock's design, not a measurement of the sky.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from galforge.io import InputError
from galforge.parity import PaperValue, parity_frame, parity_row, read_report

__all__ = ["LINE_TOLERANCE", "N_PEAKS", "PAPER", "PAPER_LINES", "SHAP_SPLIT_WAVE", "TITLE",
           "line_hits", "parity_from_files", "parity_table", "shap_share_below"]

_REF = "Iwasaki, Cooray & Takeuchi (arXiv:2311.17414)"
#: The paper's headline results, with where each is stated (the one place they live).
PAPER: dict[str, PaperValue] = {
    "latent_dim": PaperValue("Latent size chosen by the BIC (VAE)", 4,
                             f"{_REF}, abstract; Fig. 2 (BIC of the model grid)"),
    "pca_variance": PaperValue("Variance along the PCA axes of the latents, D1-D4",
                               (34, 32, 16, 18), f"{_REF}, PCA of the latent variables (D1-D4)",
                               unit="%"),
    "shap_region": PaperValue("SHAP: share of the importance below 5000 Å",
                              "the region below 5000 Å is particularly informative",
                              f"{_REF}, abstract; Fig. 6 (SHAP)"),
    "shap_lines": PaperValue("SHAP: emission lines among the most informative pixels",
                             ("[O II]", "[O III]", "Hα"), f"{_REF}, abstract; Fig. 6 (SHAP)"),
}
#: The paper's split of the spectrum [Å, rest frame] (``PAPER["shap_region"]``).
SHAP_SPLIT_WAVE = 5000.0
#: Rest-frame vacuum wavelengths [Å] of the paper's lines (``PAPER["shap_lines"]``).
PAPER_LINES: dict[str, tuple[float, ...]] = {
    "[O II]": (3727.09, 3729.88),
    "[O III]": (4960.30, 5008.24),
    "Hα": (6564.61,),
}
#: Peaks of each D's mean |SHAP| that count, and how close to a line one must be [Å].
N_PEAKS = 5
LINE_TOLERANCE = 10.0

TITLE = "Spectra study: paper (Iwasaki, Cooray & Takeuchi) vs ours"


def shap_share_below(wave: np.ndarray, mean_abs: np.ndarray, split: float = SHAP_SPLIT_WAVE
                     ) -> tuple[float, float]:
    """Share of the importance at ``wave < split`` and share of the observed pixels there.

    ``mean_abs`` (k, npix): the mean |SHAP| of each D (NaN where too few spectra observe
    the pixel). Each D's curve is normalised to unit sum first, so every D weighs the same.
    """
    imp = np.atleast_2d(np.asarray(mean_abs, dtype=np.float64))
    wave = np.asarray(wave, dtype=np.float64)
    observed = np.isfinite(imp).all(axis=0)
    if not observed.any():
        raise InputError("the mean |SHAP| is NaN at every pixel")
    imp = np.where(observed, imp, 0.0)
    imp = imp / np.maximum(imp.sum(axis=1, keepdims=True), np.finfo(float).tiny)
    below = wave < split
    return float(imp[:, below].sum() / imp.sum()), float((below & observed).sum() / observed.sum())


def line_hits(wave: np.ndarray, mean_abs: np.ndarray, components: Sequence[str], *,
              lines: Mapping[str, Sequence[float]] = PAPER_LINES, n_peaks: int = N_PEAKS,
              tolerance: float = LINE_TOLERANCE) -> dict[str, list[str]]:
    """For each line, the D whose ``n_peaks`` highest mean-|SHAP| peaks include one within
    ``tolerance`` Å of it (``[]``: none)."""
    from galforge.spectra.analysis import importance_peaks

    hits: dict[str, list[str]] = {name: [] for name in lines}
    for comp, curve in zip(components, np.atleast_2d(mean_abs), strict=True):
        peaks = importance_peaks(wave, curve, n_peaks=n_peaks)["wave"].to_numpy()
        for name, waves in lines.items():
            if any(abs(p - w) <= tolerance for p in peaks for w in waves):
                hits[name].append(str(comp))
    return hits


def _grid_note(bic: pd.DataFrame, truth: Mapping[str, Any] | None) -> str:
    vae = bic[bic["kind"] == "vae"]
    dims = sorted(int(d) for d in vae["latent_dim"])
    n_seeds = int(pd.to_numeric(bic["n_seeds"], errors="coerce").max())
    note = (f"VAE grid d = {dims[0]}-{dims[-1]}, lowest BIC averaged over {n_seeds} training "
            f"seeds" if n_seeds > 1 else f"VAE grid d = {dims[0]}-{dims[-1]}, one training seed")
    cvae = bic[bic["kind"] == "cvae"]
    if len(cvae):
        best = {c: int(g.loc[g["bic_mean"].idxmin(), "latent_dim"])
                for c, g in cvae.groupby("conditions")}
        note += "; lowest-BIC CVAE: " + ", ".join(f"{c} d = {d}" for c, d in best.items())
    if truth is not None and "n_planted" in truth:
        note += f"; the mock plants {int(truth['n_planted'])} parameters"
    return note


def parity_table(bic: pd.DataFrame, pca: pd.DataFrame, wave: np.ndarray, mean_abs: np.ndarray,
                 components: Sequence[str], truth: Mapping[str, Any] | None, *, source: str
                 ) -> pd.DataFrame:
    """The paper's headline numbers beside ours.

    ``bic``: the BIC summary over the seeds (``kind``, ``conditions``, ``latent_dim``,
    ``n_seeds``, ``bic_mean``, ``representative_seed``); ``pca``: the
    PCA variance table (``component``, ``fraction``); ``wave``, ``mean_abs`` (k, npix) and
    ``components``: the mean |SHAP| of each D; ``truth``: the analysis step's report;
    ``source``: ``mock`` or ``archive``.
    """
    vae = bic[bic["kind"] == "vae"].dropna(subset=["bic_mean"])
    if vae.empty:
        raise InputError("the BIC table has no VAE")
    best = vae.loc[vae["bic_mean"].idxmin()]
    percent = [round(100.0 * float(f)) for f in pca["fraction"]]
    names = list(pca["component"])
    below, pixels = shap_share_below(wave, mean_abs)
    hits = line_hits(wave, mean_abs, components)
    found = [f"{name} ({', '.join(c)})" for name, c in hits.items() if c]
    missed = [name for name, c in hits.items() if not c]
    lines = ", ".join(found) if found else "none of them"
    if found and missed:
        lines += f"; not {', '.join(missed)}"
    rows = [
        parity_row(PAPER["latent_dim"], int(best["latent_dim"]), source=source,
                   note=_grid_note(bic, truth)),
        parity_row(PAPER["pca_variance"], percent, source=source,
                   quantity=f"Variance along the PCA axes of the latents, {names[0]}-{names[-1]}",
                   note=f"PCA of the latent means of {best['model_id']} (seed "
                        f"{int(best['representative_seed'])}), the VAE of lowest mean BIC"),
        parity_row(PAPER["shap_region"],
                   f"{100 * below:.0f} % of the mean |SHAP| on {100 * pixels:.0f} % of the pixels",
                   source=source,
                   note="each D's mean |SHAP| normalised to unit sum; observed pixels only"),
        parity_row(PAPER["shap_lines"], lines, source=source,
                   note=f"a line counts when one of the {N_PEAKS} highest mean-|SHAP| peaks of "
                        f"a D lies within {LINE_TOLERANCE:g} Å of it"),
    ]
    return parity_frame(rows)


def parity_from_files(bic: str | os.PathLike, pca: str | os.PathLike,
                      arrays: str | os.PathLike, truth_report: str | os.PathLike, *,
                      source: str) -> pd.DataFrame:
    """:func:`parity_table` of the BIC and analysis steps' files (``tables/bic_summary.csv``,
    ``tables/pca_variance.csv``, ``analysis.h5``, ``tables/truth_recovery.json``)."""
    from galforge.spectra.analysis import read_analysis_arrays
    from galforge.spectra.bic import read_bic_summary

    try:
        pca_table = pd.read_csv(pca)
    except (OSError, ValueError) as exc:
        raise InputError(f"{pca}: not a PCA variance table ({exc})") from None
    if not {"component", "fraction"} <= set(pca_table.columns):
        raise InputError(f"{pca}: columns 'component', 'fraction' missing")
    a = read_analysis_arrays(arrays)
    return parity_table(read_bic_summary(bic), pca_table, a.wave, a.shap_mean_abs,
                        a.shap_components, read_report(truth_report), source=source)
