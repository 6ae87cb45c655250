"""Every figure of the spectra study, from the workflow's files (paper Figs 1-6 and more).

:func:`make_figures` reads the preprocessed spectra (wavelengths and properties only),
the latent catalog, the BIC, PCA and MI tables, the analysis arrays and the training
metrics, calls the plotting functions of :mod:`galforge.spectra.figures` and writes
each figure as PDF + PNG stamped with the run, the data source, the configuration hash
and the code version (:func:`galforge.figures.save_figure`). No model is loaded and
torch is not imported: everything needed is in the files. A missing file, dataset or
column raises :class:`galforge.io.InputError` naming the file and what is missing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.io import InputError
from galforge.provenance import Provenance

log = logging.getLogger("galforge.spectra")

__all__ = ["FIGURES", "TRUTH_FIGURE", "FIG1_PROPERTIES", "make_figures"]

#: Stems of the figures :func:`make_figures` always writes (``<stem>.pdf`` and ``<stem>.png``).
FIGURES: tuple[str, ...] = (
    "fig1_latent_property_maps",
    "fig2_bic_grid",
    "fig3_component_sweeps",
    "fig4_mutual_information",
    "fig5_cvae_condition_sweeps",
    "fig6_shap",
    "pca_variance",
    "loss_curves",
)
#: The mock-only figure of the planted truth (written when ``truth`` is given).
TRUTH_FIGURE = "truth_recovery"
#: Properties shown over the latent plane in Fig 1 (``properties/<name>`` of the spectra file).
FIG1_PROPERTIES: tuple[str, ...] = ("log_mstar", "log_sfr", "log_ssfr")

_PLANTED_KEY = b"galforge.planted_parameters"


# --------------------------------------------------------------------------- readers
def _need_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    return p


def _need_columns(df: pd.DataFrame, cols: Iterable[str], path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{path}: column(s) {', '.join(map(repr, missing))} missing "
                         f"(has {', '.join(map(str, df.columns))})")


def _read_csv(path: str | os.PathLike, what: str, cols: Iterable[str], **kw: Any) -> pd.DataFrame:
    p = _need_file(path, what)
    try:
        df = pd.read_csv(p, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a readable CSV ({exc})") from None
    _need_columns(df, cols, p)
    return df


def _read_spectra(path: str | os.PathLike) -> dict[str, Any]:
    from galforge.spectra.store import read_spectra_file

    p = _need_file(path, "spectra file")
    data = read_spectra_file(p, arrays=False)
    missing = [n for n in FIG1_PROPERTIES if n not in data.properties]
    if missing:
        raise InputError(f"{p}: dataset 'properties/{missing[0]}' missing")
    props = {n: data.properties[n] for n in FIG1_PROPERTIES}
    return {"path": p, "wave": data.wave, "key": data.key, "properties": props}


def _read_truth(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str], int]:
    """Truth table, the planted parameter names, and how many of them vary in it."""
    import pyarrow.parquet as pq

    p = _need_file(path, "truth file")
    meta = pq.read_schema(p).metadata or {}
    if _PLANTED_KEY not in meta:
        raise InputError(f"{p}: schema metadata {_PLANTED_KEY.decode()!r} missing "
                         "(not a spectra-mock truth file)")
    try:
        planted = list(json.loads(meta[_PLANTED_KEY]))
    except json.JSONDecodeError:
        raise InputError(f"{p}: schema metadata {_PLANTED_KEY.decode()!r} is not JSON") from None
    truth = pd.read_parquet(p)
    _need_columns(truth, ["key", *planted], p)
    varying = 0
    for n in planted:
        v = pd.to_numeric(truth[n], errors="coerce").to_numpy(float)
        v = v[np.isfinite(v)]
        varying += int(v.size > 1 and float(np.ptp(v)) > 0)
    return truth, planted, varying


# --------------------------------------------------------------------------- driver
def make_figures(
    *,
    spectra: str | os.PathLike,
    catalog: str | os.PathLike,
    bic: str | os.PathLike,
    bic_summary: str | os.PathLike,
    pca: str | os.PathLike,
    mi: str | os.PathLike,
    analysis: str | os.PathLike,
    metrics: Mapping[str, str | os.PathLike],
    outdir: str | os.PathLike,
    cfg: Mapping[str, Any],
    truth: str | os.PathLike | None = None,
) -> list[Path]:
    """Write every figure of :data:`FIGURES` (and :data:`TRUTH_FIGURE` with ``truth``) into
    ``outdir``; returns the paths written (PDF, PNG per figure).

    Parameters
    ----------
    spectra : path
        The preprocessed spectra (HDF5): ``wave``, ``key`` and ``properties/<name>`` for
        the names of :data:`FIG1_PROPERTIES` are read.
    catalog : path
        The latent catalog (Parquet): ``key`` and ``D1 … Dk``, rows in spectra order.
    bic, bic_summary : path
        ``bic.csv`` (every model and seed) and ``bic_summary.csv`` (every grid point: the
        BIC over the seeds, the choice) of the BIC step.
    pca, mi : path
        ``pca_variance.csv`` and ``mi.csv`` of the analysis.
    analysis : path
        The analysis arrays (HDF5): sweeps, CVAE sweeps (optional group) and SHAP.
    metrics : mapping
        Model id → its training ``metrics.csv`` (one per grid point: its representative
        repeat, :func:`galforge.spectra.steps.figures`).
    outdir : path
        Folder of the figures (created).
    cfg : mapping
        The resolved configuration (provenance; ``spectra.analysis`` bin settings).
    truth : path, optional
        The mock's truth table (Parquet with ``galforge.planted_parameters`` metadata).
    """
    from galforge.figures import save_figure, style
    from galforge.spectra import figures as F
    from galforge.spectra.analysis import (
        AnalysisSettings,
        read_analysis_arrays,
        read_latent_catalog,
    )
    from galforge.spectra.bic import read_bic_summary, read_bic_table

    section = cfg.get("spectra") or {}
    settings = AnalysisSettings.from_dict(section.get("analysis") or {})
    prov = Provenance.from_config(cfg, study="spectra")
    out = Path(outdir)
    written: list[Path] = []

    def save(fig: Any, stem: str) -> None:
        written.extend(save_figure(fig, out / stem, prov))

    # ---- read everything first: a bad input fails before any figure is written
    spec = _read_spectra(spectra)
    cat_path = Path(catalog)
    cat, ds = read_latent_catalog(cat_path)
    if len(cat) != len(spec["key"]):
        raise InputError(f"{cat_path}: {len(cat)} rows but {spec['path']} holds "
                         f"{len(spec['key'])} spectra")
    if not np.array_equal(cat["key"].to_numpy(np.int64), spec["key"]):
        raise InputError(f"{cat_path}: column 'key' is not in the order of {spec['path']}")
    bic_t = read_bic_table(bic)
    summary_t = read_bic_summary(bic_summary)
    pca_t = _read_csv(pca, "PCA variance table", ("component", "fraction"))
    mi_path = Path(mi)
    mi_t = _read_csv(mi, "MI table", ("component", "property", "nmi"))
    metric_frames = {}
    for mid, mpath in metrics.items():
        metric_frames[str(mid)] = _read_csv(mpath, f"metrics of {mid}", ("epoch",))
    truth_info = _read_truth(truth) if truth is not None else None

    arr = read_analysis_arrays(analysis)
    a_path = Path(analysis)
    wave, npix = arr.wave, arr.wave.size
    sweep_vals, sweep_spec = arr.sweep_values, arr.sweep_spectra
    best_cvae, cvae = arr.best_cvae, arr.cvae_sweeps
    mean_abs, ex_rows, ex_flux = arr.shap_mean_abs, arr.shap_example_rows, arr.shap_example_flux
    ex_vals, ex_d = arr.shap_example_values, arr.shap_example_D
    add_err, rel_err = arr.shap_additivity_error, arr.shap_relative_additivity_error
    shap_names = arr.shap_components
    if spec["wave"].size != npix:
        raise InputError(f"{a_path}: {npix} wavelengths but {spec['path']} has "
                         f"{spec['wave'].size}")
    if ex_rows.size and (ex_rows.min() < 0 or ex_rows.max() >= len(spec["key"])):
        raise InputError(f"{a_path}: shap/example_rows outside the {len(spec['key'])} spectra")

    with style():
        # Fig 1: properties over the (D1, D2) plane
        d2 = cat[ds[1]].to_numpy(float) if len(ds) > 1 else None
        save(F.fig_latent_property_maps(
            cat[ds[0]].to_numpy(float), d2, spec["properties"],
            n_bins=settings.n_bins, min_count=settings.min_count,
            names=(ds[0], ds[1] if len(ds) > 1 else ""),
        ), "fig1_latent_property_maps")

        # Fig 2: the BIC grid
        n_planted = truth_info[2] if truth_info is not None else None
        try:
            fig2 = F.fig_bic_grid(summary_t, bic_t, n_planted=n_planted)
        except ValueError as exc:
            raise InputError(f"{bic_summary}, {bic}: {exc}") from None
        save(fig2, "fig2_bic_grid")

        # Fig 3: decoded sweeps along each D
        save(F.fig_component_sweeps(wave, sweep_vals, sweep_spec,
                                    names=[f"D{i + 1}" for i in range(len(sweep_vals))]),
             "fig3_component_sweeps")

        # Fig 4: normalised MI (on the mock, with the true_* columns of the truth file)
        try:
            fig4 = F.fig_mutual_information(mi_t)
        except ValueError as exc:
            raise InputError(f"{mi_path}: {exc}") from None
        save(fig4, "fig4_mutual_information")

        # Fig 5: the best CVAE's condition sweeps
        save(F.fig_cvae_condition_sweeps(wave, cvae, model_id=best_cvae or None),
             "fig5_cvae_condition_sweeps")

        # Fig 6: SHAP
        ssfr = spec["properties"].get("log_ssfr")
        labels = []
        for i, r in enumerate(ex_rows):
            lab = f"spectrum {int(spec['key'][r])}"
            if ex_d.shape[1]:
                lab += f" · {shap_names[0]} = {ex_d[i, 0]:.2f}".replace("-", "\N{MINUS SIGN}")
            if ssfr is not None and np.isfinite(ssfr[r]):
                lab += (f" · log sSFR = {ssfr[r]:.2f}".replace("-", "\N{MINUS SIGN}")
                        + " yr\N{SUPERSCRIPT MINUS}\N{SUPERSCRIPT ONE}")
            labels.append(lab)
        save(F.fig_shap(wave, mean_abs, ex_flux, ex_vals, components=shap_names,
                        additivity_error=add_err, relative_additivity_error=rel_err,
                        example_labels=labels), "fig6_shap")

        save(F.fig_pca_variance(pca_t), "pca_variance")
        save(F.fig_model_loss_curves(metric_frames), "loss_curves")

        if truth_info is not None:
            tr, planted, _ = truth_info
            save(F.fig_truth_recovery(_truth_panels(cat, ds, tr, planted, mi_t, mi_path)),
                 TRUTH_FIGURE)
    log.info("wrote %d figure files to %s", len(written), out)
    return written


def _truth_panels(cat: pd.DataFrame, ds: list[str], truth: pd.DataFrame, planted: list[str],
                  mi: pd.DataFrame, mi_path: Path) -> list[dict[str, Any]]:
    """One panel per planted parameter: its truth against the D of highest NMI."""
    joined = cat[["key", *ds]].merge(truth[["key", *planted]], on="key", how="inner")
    t = mi.assign(nmi=pd.to_numeric(mi["nmi"], errors="coerce"),
                  property=mi["property"].astype(str), component=mi["component"].astype(str))
    panels: list[dict[str, Any]] = []
    for name in planted:
        rows = t[(t["property"] == f"true_{name}") & t["nmi"].notna() & t["component"].isin(ds)]
        values = pd.to_numeric(joined[name], errors="coerce").to_numpy(float)
        finite = values[np.isfinite(values)]
        if finite.size < 2 or not np.std(finite) > 0:
            note = "held constant in the mock" if finite.size >= 2 else "no finite truth values"
            panels.append({"name": name, "note": note})
            continue
        if rows.empty:
            panels.append({"name": name, "note": f"no MI row 'true_{name}'\nin {mi_path.name}"})
            continue
        best = rows.loc[rows["nmi"].idxmax()]
        comp = str(best["component"])
        panels.append({
            "name": name, "truth": values, "d": joined[comp].to_numpy(float), "component": comp,
            "nmi": float(best["nmi"]),
            "rho": float(pd.to_numeric(best.get("rho", np.nan), errors="coerce")),
        })
    return panels
