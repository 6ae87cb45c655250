"""Figures of the spectra study (Iwasaki, Cooray, Takeuchi): pure plotting functions.

Every ``fig_*`` function takes arrays / data frames and returns a
:class:`matplotlib.figure.Figure` made with :func:`galforge.figures.new_figure` inside the
house :func:`galforge.figures.style` (nothing is registered with pyplot). None of them
reads or writes files; :func:`galforge.spectra.figure_set.make_figures` reads the
workflow's files and saves with :func:`galforge.figures.save_figure`.

============================  ===============================================  ===========
function                      figure                                           stem
============================  ===============================================  ===========
fig_latent_property_maps      Fig 1: mean M*, SFR, sSFR over the (D1, D2) plane  fig1_…
fig_bic_grid                  Fig 2: BIC and reduced χ² vs latent size         fig2_…
fig_component_sweeps          Fig 3: decoded spectra as one D_i varies         fig3_…
fig_mutual_information        Fig 4: normalised MI of D_i with properties      fig4_…
fig_cvae_condition_sweeps     Fig 5: CVAE spectra as one condition varies      fig5_…
fig_shap                      Fig 6: SHAP importance over wavelength           fig6_…
fig_pca_variance              variance fraction of each D                      pca_variance
fig_model_loss_curves         validation loss of every model of the grid       loss_curves
fig_truth_recovery            mock: planted parameters vs their best D         truth_recovery
============================  ===============================================  ===========

The module stays one (about 800 lines): it is the study's catalogue of figures, indexed
by this table, the paper's and the diagnostic ones together as in
:mod:`galforge.environment.figures`. Each function stands alone; all they share are the
labels, line marks and sweep panels at the top, so no second module would own a seam.

Conventions
-----------
* Spectra are on the rest-frame wavelength grid of :mod:`galforge.spectra.preprocess`
  (Å) and in the preprocessed, normalised flux units; the main emission lines
  (:data:`EMISSION_LINES`) are drawn as faint vertical lines and named above the top panel.
* Components are ``D1 … Dk``, the PCA axes of the best VAE's latent means
  (:func:`galforge.spectra.analysis.fit_latent_pca`), D1 carrying the most variance.
* Colours: the Okabe–Ito :data:`~galforge.figures.PALETTE` for categories, ``viridis``
  for sequential scales, ``RdBu_r`` for signed SHAP values.
* Statistics printed on the panels are the caller's (from the tables); nothing is
  recomputed here except the bin means of Fig 1
  (:func:`galforge.spectra.analysis.binned_property_means`).

One module on purpose (over 800 lines): one function per figure of the study, all
sharing this module's panel helpers; :mod:`figure_set` maps the workflow's stems onto them.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from galforge.figures import PALETTE, new_figure, style
from galforge.figures.helpers import (
    GALAXY_PROPERTY_LABELS,
    annotate_cells,
    color_norm,
    fmt_nmi,
    fmt_signed,
    heatmap,
    metric_series,
    pivot_matrix,
    plain_log_ticks,
    text_box,
)

__all__ = [
    "EMISSION_LINES",
    "PROPERTY_LABELS",
    "property_label",
    "property_symbol",
    "group_label",
    "fig_latent_property_maps",
    "fig_bic_grid",
    "fig_component_sweeps",
    "fig_mutual_information",
    "fig_cvae_condition_sweeps",
    "fig_shap",
    "fig_pca_variance",
    "fig_model_loss_curves",
    "fig_truth_recovery",
]

#: Main emission lines marked on the spectra: mathtext name -> rest (vacuum) wavelength [Å].
EMISSION_LINES: dict[str, float] = {
    "[O II]": 3728.5,
    r"H$\beta$": 4862.7,
    "[O III]": 5008.2,
    r"H$\alpha$": 6564.6,
    "[N II]": 6585.3,
    "[S II]": 6718.3,
}

#: Labels of the lines above a panel: (text, wavelength of the label, alignment). Close
#: pairs are merged or aligned away from each other so the names never overlap.
_LINE_LABELS: tuple[tuple[str, float, str], ...] = (
    ("[O II]", 3728.5, "center"),
    (r"H$\beta$", 4862.7, "right"),
    ("[O III]", 5008.2, "left"),
    (r"H$\alpha$+[N II]", 6575.0, "right"),
    ("[S II]", 6718.3, "left"),
)

#: ``name -> (symbol, unit)`` of the galaxy properties and the mock's planted parameters.
PROPERTY_LABELS: dict[str, tuple[str, str]] = {
    **GALAXY_PROPERTY_LABELS,
    "oh_p50": (r"$12+\log_{10}(\mathrm{O/H})$", ""),
    "av": (r"$A_V$", "mag"),
    "log_age": (r"$\log_{10}\,\mathrm{age}$", "yr"),
    "log_u": (r"$\log_{10} U$", ""),
    "a_v": (r"$A_V$", "mag"),
    "d4000": (r"$D_n4000$", ""),
    "ew_halpha": (r"EW(H$\alpha$)", "Å"),
}

#: Short condition names of the model grid (:data:`galforge.spectra.model_ids.CONDITION_SHORT`).
_SHORT_TO_COLUMN: dict[str, str] = {
    "mstar": "log_mstar", "sfr": "log_sfr", "ssfr": "log_ssfr", "z": "oh_p50",
}

WAVE_LABEL = "rest-frame wavelength [Å]"
FLUX_LABEL = "normalised flux"


# --------------------------------------------------------------------------- labels
def _base_name(name: str) -> tuple[str, bool]:
    name = _SHORT_TO_COLUMN.get(str(name), str(name))
    if name.startswith("true_"):
        return name[len("true_"):], True
    return name, False


def property_symbol(name: str) -> str:
    """Short mathtext symbol of a property (no unit); ``true_<x>`` gets a "true" prefix."""
    base, true = _base_name(name)
    sym = PROPERTY_LABELS.get(base, (base.replace("_", " "), ""))[0]
    return f"true {sym}" if true else sym


def property_label(name: str, multiline: bool = False) -> str:
    """Axis label of a property with its unit, e.g. ``log_mstar -> log10 M* [M☉]``.

    Short condition names (``mstar``, ``sfr``, ``ssfr``, ``z``) are accepted.
    ``multiline=True`` puts the unit on a second line.
    """
    base, _ = _base_name(name)
    unit = PROPERTY_LABELS.get(base, ("", ""))[1]
    sym = property_symbol(name)
    if not unit:
        return sym
    return f"{sym}\n[{unit}]" if multiline else f"{sym} [{unit}]"


def group_label(kind: str, conditions: str) -> str:
    """Legend label of a model family: ``"VAE"`` or ``"CVAE (mstar+sfr)"``."""
    kind = str(kind).lower()
    if kind == "vae":
        return "VAE"
    conditions = str(conditions or "")
    return f"CVAE ({conditions})" if conditions else "CVAE"


def _component_sort_key(name: str) -> tuple[int, str]:
    m = re.fullmatch(r"[A-Za-z]*(\d+)", str(name))
    return (int(m[1]) if m else 10**9, str(name))


#: The spectra study's boxed notes: inset (0.03, 0.05) from the panel's edges, 85 % opaque.
_text_box = functools.partial(text_box, margin=(0.03, 0.05), alpha=0.85)
#: The spectra study's log axes: the 2s and 5s of each decade labelled under two decades.
_plain_log_ticks = functools.partial(plain_log_ticks, minor_labels=((2.0, (2, 5)),))


def _mark_lines(ax: Any, wave: np.ndarray, *, label: bool) -> None:
    """Faint vertical lines at :data:`EMISSION_LINES` (inside the wavelength range); with
    ``label`` their names on a secondary x axis above the panel."""
    lo, hi = float(np.nanmin(wave)), float(np.nanmax(wave))
    for w in EMISSION_LINES.values():
        if lo <= w <= hi:
            ax.axvline(w, color="0.6", lw=0.5, ls=":", zorder=0.5)
    if not label:
        return
    shown = [(t, w, ha) for t, w, ha in _LINE_LABELS if lo <= w <= hi]
    if not shown:
        return
    sec = ax.secondary_xaxis("top")
    sec.set_xticks([w for _, w, _ in shown], [t for t, _, _ in shown])
    sec.tick_params(axis="x", length=0, pad=1.5, labelsize=6.5, labelcolor="0.35")
    for lab, (_, _, ha) in zip(sec.get_xticklabels(), shown, strict=True):
        lab.set_horizontalalignment(ha)
    ax.tick_params(axis="x", top=False)


def _as_2d(name: str, a: Any, ndim: int) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _flux_limits(spectra: np.ndarray) -> tuple[float, float]:
    v = spectra[np.isfinite(spectra)]
    if not v.size:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return lo - 0.5, hi + 0.5
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad


def _sweep_panel(
    fig: Figure, ax: Any, wave: np.ndarray, values: np.ndarray, spectra: np.ndarray,
    cbar_label: str, cmap: str = "viridis",
) -> None:
    """Spectra (n_steps, npix) coloured by ``values``, with a colourbar."""
    fin = values[np.isfinite(values)]
    vlo, vhi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    if not vhi > vlo:
        vlo, vhi = vlo - 0.5, vhi + 0.5
    norm = mcolors.Normalize(vlo, vhi)
    cm = matplotlib.colormaps[cmap]
    for v, s in zip(values, spectra, strict=True):
        ax.plot(wave, s, color=cm(norm(v)) if np.isfinite(v) else "0.5", lw=0.6)
    ax.set_xlim(float(wave[0]), float(wave[-1]))
    ax.set_ylim(*_flux_limits(spectra))
    ax.set_ylabel(FLUX_LABEL)
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=ax, pad=0.01, aspect=15)
    cb.set_label(cbar_label)


# --------------------------------------------------------------------------- Fig 1
def fig_latent_property_maps(
    d1: Any,
    d2: Any | None,
    properties: Mapping[str, Any],
    *,
    n_bins: int = 20,
    min_count: int = 5,
    names: tuple[str, str] = ("D1", "D2"),
) -> Figure:
    """Fig 1: mean galaxy properties over the plane of the first two components.

    One panel per entry of ``properties`` (name -> per-spectrum values, normally
    ``log_mstar``, ``log_sfr``, ``log_ssfr``): the mean of the property in
    ``n_bins × n_bins`` bins of (``d1``, ``d2``)
    (:func:`galforge.spectra.analysis.binned_property_means`; bins with fewer than
    ``min_count`` spectra are blank), drawn with ``pcolormesh`` and a colourbar each.
    With ``d2 = None`` (a one-component latent space) each panel is instead a hexbin of
    the property against D1, coloured by the number of spectra. A property without two
    finite values gets a panel saying so.
    """
    from galforge.spectra.analysis import binned_property_means

    x = np.asarray(d1, dtype=float).ravel()
    y = None if d2 is None else np.asarray(d2, dtype=float).ravel()
    if y is not None and y.shape != x.shape:
        raise ValueError(f"d1 and d2 differ in length: {x.size} vs {y.size}")
    props = {str(k): np.asarray(v, dtype=float).ravel() for k, v in properties.items()}
    for k, v in props.items():
        if v.shape != x.shape:
            raise ValueError(f"property {k!r} has {v.size} values for {x.size} spectra")
    n = max(len(props), 1)
    with style():
        fig = new_figure(figsize=(min(7.2, 2.45 * n), 2.55), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, n))
        for ax, (name, v) in zip(axes, props.items(), strict=False):
            title = f"mean {property_symbol(name)}" if y is not None else property_symbol(name)
            ax.set_title(title)
            ax.set_xlabel(names[0])
            try:
                if y is None:
                    ok = np.isfinite(x) & np.isfinite(v)
                    if ok.sum() < 2:
                        raise ValueError("fewer than 2 valid rows")
                    hb = ax.hexbin(x[ok], v[ok], gridsize=n_bins, mincnt=1, cmap="Blues",
                                   norm=mcolors.LogNorm(), linewidths=0.0, rasterized=True)
                    ax.set_ylabel(property_label(name))
                    cb = fig.colorbar(hb, ax=ax, pad=0.02)
                    cb.set_label("spectra per hexagon")
                    continue
                b = binned_property_means(x, y, v, n_bins=n_bins, min_count=min_count)
            except ValueError:
                _text_box(ax, "no finite values", "center")
                ax.set_ylabel(names[1] if y is not None else property_label(name))
                continue
            cm = matplotlib.colormaps["viridis"].with_extremes(bad="white")
            mesh = ax.pcolormesh(b["x_edges"], b["y_edges"], np.ma.masked_invalid(b["mean"].T),
                                 cmap=cm, rasterized=True, shading="flat")
            ax.set_ylabel(names[1])
            cb = fig.colorbar(mesh, ax=ax, pad=0.02, location="bottom", shrink=0.9)
            cb.set_label(property_label(name))
        if not props:
            _text_box(axes[0], "no properties", "center")
    return fig


# --------------------------------------------------------------------------- Fig 2
def _as_bool(s: pd.Series) -> np.ndarray:
    if s.dtype == bool:
        return s.to_numpy()
    return s.astype(str).str.strip().str.lower().isin(("true", "1", "yes")).to_numpy()


def fig_bic_grid(
    summary: pd.DataFrame,
    seeds: pd.DataFrame | None = None,
    *,
    n_planted: int | None = None,
    column: str = "bic",
) -> Figure:
    """Fig 2: model selection over the grid — BIC (left) and mean reduced χ² (right), each
    the mean over the training seeds with its spread.

    ``summary`` has one row per grid point (:func:`galforge.spectra.bic.bic_summary`:
    ``bic_mean``, ``bic_std``, ``chi2_nu_mean``, ``chi2_nu_std``, ``best_in_kind``); one
    line per model family (``kind``, ``conditions``): "VAE", "CVAE (mstar+sfr)", … against
    ``latent_dim``, with error bars of ± one standard deviation over the seeds. ``seeds``
    (optional, :func:`~galforge.spectra.bic.bic_table`: ``bic``, ``chi2_nu`` per model and
    seed) adds every seed's value as a small point beside its mean. Left: the mean BIC
    relative to the smallest mean of the whole table (``column="bic"``) or of its kind
    (``"delta_bic"``); the y axis turns symmetric-log when the values span more than
    three decades above 10. The ``best_in_kind`` grid point of each kind (lowest mean)
    is marked with a star and named. Right: ``chi2_nu`` (mean χ² per weighted pixel on the
    validation spectra). With ``n_planted`` (the mock's number of planted parameters) a
    dotted vertical line marks it on both panels. Two axes.
    """
    need = {"kind", "conditions", "latent_dim", "bic_mean", "bic_std", "chi2_nu_mean",
            "best_in_kind"}
    if missing := sorted(need - set(summary.columns)):
        raise ValueError(f"BIC summary lacks column(s) {missing}")
    if column not in ("bic", "delta_bic"):
        raise ValueError(f"column must be 'bic' or 'delta_bic', got {column!r}")

    def frame(t: pd.DataFrame) -> pd.DataFrame:
        t = t.copy()
        t["conditions"] = [("" if pd.isna(v) else str(v)) for v in t["conditions"]]
        t["kind"] = t["kind"].astype(str).str.lower()
        t["latent_dim"] = pd.to_numeric(t["latent_dim"], errors="coerce")
        return t

    df = frame(summary)
    mean = pd.to_numeric(df["bic_mean"], errors="coerce")
    if column == "bic":
        fin = mean[np.isfinite(mean)]
        ref = pd.Series(fin.min() if fin.size else 0.0, index=df.index)
        ylab = r"mean BIC $-$ its minimum"
    else:
        ref = mean.groupby(df["kind"]).transform("min")
        ylab = r"$\Delta$ mean BIC (vs best of its kind)"
    ref_of_kind = dict(zip(df["kind"], ref, strict=True))
    df["_y"] = mean - ref
    df["_err"] = pd.to_numeric(df["bic_std"], errors="coerce").fillna(0.0)
    df["_chi"] = pd.to_numeric(df["chi2_nu_mean"], errors="coerce")
    chi_std = df["chi2_nu_std"] if "chi2_nu_std" in df.columns else pd.Series(0.0, df.index)
    df["_chi_err"] = pd.to_numeric(chi_std, errors="coerce").fillna(0.0)
    df["_best"] = _as_bool(df["best_in_kind"])
    n_seeds = pd.to_numeric(df.get("n_seeds", pd.Series(1, df.index)), errors="coerce")
    n_max = int(n_seeds.max()) if n_seeds.notna().any() else 1
    sd = None
    if seeds is not None:
        if missing := sorted({"kind", "conditions", "latent_dim", "bic", "chi2_nu"}
                             - set(seeds.columns)):
            raise ValueError(f"per-seed BIC table lacks column(s) {missing}")
        sd = frame(seeds)
        sd["_y"] = pd.to_numeric(sd["bic"], errors="coerce") - sd["kind"].map(ref_of_kind)
        sd["_chi"] = pd.to_numeric(sd["chi2_nu"], errors="coerce")
    groups = list(dict.fromkeys(zip(df["kind"], df["conditions"], strict=True)))
    groups.sort(key=lambda g: (g[0] != "vae", g[1].count("+"), g[1]))
    colours = [c for i, c in enumerate(PALETTE) if i != 6]  # no yellow on white
    markers = "osD^vP<>X"

    with style():
        fig = new_figure(figsize=(7.2, 2.9), layout="constrained")
        ax_b, ax_c = fig.subplots(1, 2, sharex=True)
        seed_label = "one training seed"
        for gi, (kind, conds) in enumerate(groups):
            sub = df[(df["kind"] == kind) & (df["conditions"] == conds)].sort_values("latent_dim")
            colour = colours[gi % len(colours)]
            style_kw = dict(color=colour, marker=markers[gi % len(markers)], ms=3.5, lw=1.0,
                            ls="-" if kind == "vae" else "--", capsize=2.0, elinewidth=0.8)
            lab = group_label(kind, conds)
            ax_b.errorbar(sub["latent_dim"], sub["_y"], yerr=sub["_err"], label=lab, **style_kw)
            ax_c.errorbar(sub["latent_dim"], sub["_chi"], yerr=sub["_chi_err"], label=lab,
                          **style_kw)
            if sd is not None:
                pts = sd[(sd["kind"] == kind) & (sd["conditions"] == conds)]
                x = pts["latent_dim"] + 0.12 * (1 if kind == "vae" else -1)
                for ax, ycol in ((ax_b, "_y"), (ax_c, "_chi")):
                    ax.plot(x, pts[ycol], ls="none", marker=".", ms=3.0, color=colour,
                            alpha=0.55, gid=f"seeds-{kind}-{conds}",
                            label=seed_label if ax is ax_b else None)
                seed_label = None  # one legend entry for every seed point
        star_label = "lowest mean BIC of its kind"
        bests = {k: df[(df["kind"] == k) & df["_best"]] for k in ("vae", "cvae")}
        bests = {k: b.iloc[0] for k, b in bests.items() if not b.empty}
        top = max(bests, key=lambda k: (bests[k]["_y"], k == "cvae")) if bests else None
        for kind, r in bests.items():
            name = "VAE" if kind == "vae" else "CVAE"
            for ax, ycol in ((ax_b, "_y"), (ax_c, "_chi")):
                ax.plot([r["latent_dim"]], [r[ycol]], ls="none", marker="*", ms=11, mfc="none",
                        mec="black", mew=0.9, zorder=5, gid=f"best-{kind}",
                        label=star_label if ax is ax_b else None)
            star_label = None  # one legend entry for all stars
            # the label of the higher star above it, the other's below (no overlap)
            ax_b.annotate(f"best {name}\n(d = {int(r['latent_dim'])})",
                          (r["latent_dim"], r["_y"]), xytext=(6, 6 if kind == top else -6),
                          textcoords="offset points", fontsize=6.5, ha="left",
                          va="bottom" if kind == top else "top")
        fin = df["_y"].to_numpy(float)
        fin = fin[np.isfinite(fin)]
        if fin.size and np.max(np.abs(fin)) > 1e4:
            ax_b.set_yscale("symlog", linthresh=10.0)
        if n_planted is not None:
            for ax in (ax_b, ax_c):
                ax.axvline(n_planted, color="0.35", ls=":", lw=1.0, gid="planted", zorder=0.5)
                ax.text(n_planted, 0.98, " planted", transform=ax.get_xaxis_transform(),
                        ha="left", va="top", fontsize=6.5, color="0.35")
        ax_b.set_ylabel(ylab)
        ax_c.set_ylabel(r"mean reduced $\chi^2$ ($\chi^2_\nu$)")
        spread = f" (mean ± s.d., {n_max} seeds)" if n_max > 1 else ""
        ax_b.set_title("Bayesian information criterion" if n_max == 1 else "BIC" + spread)
        ax_c.set_title("reconstruction quality (validation)")
        for ax in (ax_b, ax_c):
            ax.set_xlabel("latent dimension $d$")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        h, lab = ax_b.get_legend_handles_labels()
        fig.legend(h, lab, loc="outside right center", fontsize=7)
    return fig


# --------------------------------------------------------------------------- Fig 3
def fig_component_sweeps(
    wave: Any,
    values: Any,
    spectra: Any,
    *,
    names: Sequence[str] | None = None,
    max_components: int = 4,
) -> Figure:
    """Fig 3: what each component encodes — spectra decoded while one D_i varies.

    ``values`` (k, n_steps) are the swept values of D_i (the other D at 0, the mean
    latent) and ``spectra`` (k, n_steps, npix) the decoded spectra on ``wave`` (npix,,
    rest-frame Å). One row per component (the first ``max_components``), each
    spectrum coloured by its D_i value (colourbar per row); the main emission lines are
    marked and named above the top row. ``max_components`` rows, plus colourbars.
    """
    w = np.asarray(wave, dtype=float).ravel()
    vals = _as_2d("values", values, 2)
    spec = _as_2d("spectra", spectra, 3)
    if spec.shape[:2] != vals.shape or spec.shape[2] != w.size:
        raise ValueError(f"spectra {spec.shape} must be (k, n_steps, npix) = "
                         f"{(*vals.shape, w.size)}")
    k = min(vals.shape[0], int(max_components))
    labels = list(names) if names is not None else [f"D{i + 1}" for i in range(vals.shape[0])]
    with style():
        fig = new_figure(figsize=(7.2, 1.65 * max(k, 1) + 0.55), layout="constrained")
        axes = np.atleast_1d(fig.subplots(max(k, 1), 1, sharex=True, squeeze=False)[:, 0])
        for i in range(k):
            _sweep_panel(fig, axes[i], w, vals[i], spec[i], labels[i])
            _mark_lines(axes[i], w, label=i == 0)
        if k == 0:
            _text_box(axes[0], "no components", "center")
        axes[-1].set_xlabel(WAVE_LABEL)
        fig.align_ylabels(axes)
        fig.suptitle("decoded spectra as one component varies (the others at 0)", fontsize=9)
    return fig


# --------------------------------------------------------------------------- Fig 4
def fig_mutual_information(
    mi: pd.DataFrame,
    *,
    components: Sequence[str] | None = None,
    properties: Sequence[str] | None = None,
    annotate: bool = True,
) -> Figure:
    """Fig 4: normalised mutual information between the components and the properties.

    Heat map of ``nmi`` (the shuffle-normalised MI: ≈ 1 for independent variables,
    ≫ 1 for a dependence), rows ``components`` (default D1 … Dk in numeric order),
    columns ``properties`` (default in order of first appearance in ``mi``), log colour
    scale when all values are positive. With ``annotate`` each cell shows the NMI and,
    below it, Spearman's ρ with its sign. Missing pairs are grey. Two axes (map + bar).
    """
    need = {"component", "property", "nmi"}
    if missing := sorted(need - set(mi.columns)):
        raise ValueError(f"MI table lacks column(s) {missing}")
    t = mi.assign(component=mi["component"].astype(str), property=mi["property"].astype(str))
    comps = (list(components) if components is not None
             else sorted(dict.fromkeys(t["component"]), key=_component_sort_key))
    props = (list(properties) if properties is not None
             else list(dict.fromkeys(t["property"])))
    nmi = pivot_matrix(t, "component", "property", "nmi", comps, props)
    rho = pivot_matrix(t, "component", "property", "rho", comps, props)
    norm, use_log = color_norm(nmi)
    with style():
        cw, ch = 0.62, 0.48
        fig = new_figure(figsize=(min(7.2, max(3.4, cw * len(props) + 1.9)),
                                  ch * len(comps) + 1.6), layout="constrained")
        ax = fig.add_subplot()
        im = heatmap(ax, nmi, cmap="viridis", norm=norm,
                     xlabels=[property_symbol(p) for p in props], ylabels=comps, bad="0.88",
                     rotation=40)
        if annotate:
            def cell(i: int, j: int, v: float) -> str:
                txt = fmt_nmi(v)
                if np.isfinite(rho[i, j]):
                    txt += f"\nρ {fmt_signed(float(rho[i, j]))}"
                return txt

            annotate_cells(ax, im, nmi, cell, fontsize=5.5, linespacing=1.1)
        ax.set_title("normalised mutual information MI / ⟨MI of shuffled pairs⟩ "
                     "(cells: NMI and Spearman ρ)", fontsize=8)
        cb = fig.colorbar(im, ax=ax, pad=0.02, shrink=0.95)
        cb.set_label("normalised MI" + (" (log scale)" if use_log else ""))
        if use_log:
            _plain_log_ticks(cb.ax.yaxis)
    return fig


# --------------------------------------------------------------------------- Fig 5
def fig_cvae_condition_sweeps(
    wave: Any,
    sweeps: Mapping[str, tuple[Any, Any]],
    *,
    model_id: str | None = None,
) -> Figure:
    """Fig 5: the best CVAE's decoded spectra as one condition varies (latents at 0).

    ``sweeps`` maps each condition column (``log_mstar`` …) to ``(values, spectra)``:
    the condition values (n_steps,) in physical units and the decoded spectra
    (n_steps, npix); the other conditions sit at their training means. One panel per
    condition, spectra coloured by the value (colourbar labelled with the condition).
    An empty ``sweeps`` (no CVAE in the model grid) gives one panel saying so.
    """
    w = np.asarray(wave, dtype=float).ravel()
    with style():
        if not sweeps:
            fig = new_figure(figsize=(7.2, 1.8), layout="constrained")
            ax = fig.add_subplot()
            ax.text(0.5, 0.5, "no CVAE in the model grid", transform=ax.transAxes,
                    ha="center", va="center", fontsize=10, color="0.3")
            ax.set_xticks([])
            ax.set_yticks([])
            return fig
        n = len(sweeps)
        fig = new_figure(figsize=(7.2, 1.65 * n + 0.55), layout="constrained")
        axes = np.atleast_1d(fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
        for i, (cond, (values, spectra)) in enumerate(sweeps.items()):
            v = np.asarray(values, dtype=float).ravel()
            s = _as_2d(f"spectra of {cond!r}", spectra, 2)
            if s.shape != (v.size, w.size):
                raise ValueError(f"spectra of {cond!r} {s.shape} must be (n_steps, npix) = "
                                 f"{(v.size, w.size)}")
            _sweep_panel(fig, axes[i], w, v, s, property_label(cond, multiline=True),
                         cmap="plasma")
            _mark_lines(axes[i], w, label=i == 0)
        axes[-1].set_xlabel(WAVE_LABEL)
        fig.align_ylabels(axes)
        what = f"best CVAE {model_id}" if model_id else "best CVAE"
        fig.suptitle(f"{what}: decoded spectra as one condition varies (latents at 0)",
                     fontsize=9)
    return fig


# --------------------------------------------------------------------------- Fig 6
def fig_shap(
    wave: Any,
    mean_abs: Any,
    example_flux: Any,
    example_values: Any,
    *,
    components: Sequence[str] | None = None,
    additivity_error: float = math.nan,
    relative_additivity_error: float = math.nan,
    example_labels: Sequence[str] | None = None,
    component: int = 0,
    max_examples: int = 4,
) -> Figure:
    """Fig 6: which wavelengths drive each component (SHAP, DeepExplainer).

    Top: mean |SHAP| against wavelength for every component (``mean_abs`` (k, npix)),
    emission lines marked, the additivity error of the explanation
    (``max |Σφ + E[D] − D|``, absolute and relative to the spread of D) in the title.
    Below, for each example galaxy (``example_flux`` (n_ex, npix), the first
    ``max_examples``): its spectrum, and beneath it the SHAP values of component
    ``component`` (``example_values`` (n_ex, k, npix)) filled red where they raise D and
    blue where they lower it. ``example_labels`` name the galaxies (panel titles).
    """
    w = np.asarray(wave, dtype=float).ravel()
    ma = _as_2d("mean_abs", mean_abs, 2)
    fx = _as_2d("example_flux", example_flux, 2)
    ev = _as_2d("example_values", example_values, 3)
    if ma.shape[1] != w.size:
        raise ValueError(f"mean_abs {ma.shape} must be (k, npix) with npix = {w.size}")
    if fx.shape[0] != ev.shape[0] or fx.shape[1] != w.size or ev.shape[2] != w.size:
        raise ValueError(f"example_flux {fx.shape} and example_values {ev.shape} must be "
                         f"(n_ex, npix) and (n_ex, k, npix) with npix = {w.size}")
    names = list(components) if components is not None else [f"D{i + 1}"
                                                             for i in range(ma.shape[0])]
    n_ex = min(fx.shape[0], int(max_examples))
    comp = int(component)
    if n_ex and not 0 <= comp < ev.shape[1]:
        raise IndexError(f"component {comp} out of range for {ev.shape[1]} components")
    cname = names[comp] if comp < len(names) else f"D{comp + 1}"
    labels = list(example_labels) if example_labels is not None else [
        f"example {i + 1}" for i in range(n_ex)]
    with style():
        fig = new_figure(figsize=(7.2, 2.1 + 2.0 * n_ex), layout="constrained")
        gs = fig.add_gridspec(1 + 2 * n_ex, 1, height_ratios=[1.5] + [1.2, 0.7] * n_ex)
        ax0 = fig.add_subplot(gs[0])
        for i in range(ma.shape[0]):
            col = [c for j, c in enumerate(PALETTE) if j != 6][i % 7]
            ax0.plot(w, ma[i], color=col, lw=1.0 if i == 0 else 0.7,
                     label=names[i] if i < len(names) else f"D{i + 1}", zorder=3 - 0.1 * i)
        _mark_lines(ax0, w, label=True)
        ax0.set_xlim(float(w[0]), float(w[-1]))
        ax0.set_ylim(bottom=0)
        ax0.set_ylabel("mean |SHAP|")
        ax0.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
        err = []
        if np.isfinite(additivity_error):
            err.append(f"additivity error {additivity_error:.2g}")
        if np.isfinite(relative_additivity_error):
            err.append(f"{100 * relative_additivity_error:.2g} % of the spread of D")
        ax0.set_title("mean |SHAP| per pixel" + (f" ({', '.join(err)})" if err else ""))
        ax0.set_xlabel(WAVE_LABEL)
        last = ax0
        for e in range(n_ex):
            ax_f = fig.add_subplot(gs[1 + 2 * e], sharex=ax0)
            ax_s = fig.add_subplot(gs[2 + 2 * e], sharex=ax0)
            ax_f.plot(w, fx[e], color="0.15", lw=0.5)
            ax_f.set_ylabel(FLUX_LABEL)
            ax_f.set_title(labels[e] if e < len(labels) else f"example {e + 1}", fontsize=8)
            ax_f.tick_params(labelbottom=False)
            _mark_lines(ax_f, w, label=False)
            phi = ev[e, comp]
            ax_s.fill_between(w, 0, phi, where=phi >= 0, color=PALETTE[3], lw=0,
                              interpolate=True, label=f"raises {cname}")
            ax_s.fill_between(w, 0, phi, where=phi < 0, color=PALETTE[0], lw=0,
                              interpolate=True, label=f"lowers {cname}")
            ax_s.axhline(0, color="0.4", lw=0.4)
            lim = float(np.nanmax(np.abs(phi))) if np.isfinite(phi).any() else 1.0
            ax_s.set_ylim(-1.1 * (lim or 1.0), 1.1 * (lim or 1.0))
            ax_s.set_ylabel(f"SHAP ({cname})", fontsize=7.5)
            ax_s.tick_params(labelbottom=e == n_ex - 1)
            _mark_lines(ax_s, w, label=False)
            if e == 0:
                ax_s.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6.5)
            last = ax_s
        if n_ex:
            last.set_xlabel(WAVE_LABEL)
        fig.align_ylabels(fig.axes)
    return fig


# --------------------------------------------------------------------------- others
def fig_pca_variance(table: pd.DataFrame) -> Figure:
    """Fraction of the latent variance along each component (bars) and its cumulative sum
    (line, right-hand scale shared), from ``pca_variance.csv`` (``component``,
    ``fraction``, ``cumulative``; ``cumulative`` is recomputed when absent). One axis."""
    need = {"component", "fraction"}
    if missing := sorted(need - set(table.columns)):
        raise ValueError(f"PCA table lacks column(s) {missing}")
    names = table["component"].astype(str).tolist()
    frac = pd.to_numeric(table["fraction"], errors="coerce").to_numpy(float)
    cum = (pd.to_numeric(table["cumulative"], errors="coerce").to_numpy(float)
           if "cumulative" in table else np.nancumsum(frac))
    x = np.arange(len(names))
    with style():
        fig = new_figure(figsize=(3.5, 2.6), layout="constrained")
        ax = fig.add_subplot()
        ax.bar(x, frac, width=0.7, color=PALETTE[0], label="per component")
        ax.plot(x, cum, color=PALETTE[3], marker="o", ms=3.5, label="cumulative")
        ax.set_xticks(x, names, rotation=0 if len(names) <= 10 else 90)
        ax.set_ylim(0, 1.05)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xlabel("component")
        ax.set_ylabel("fraction of latent variance")
        ax.legend(loc="center right")
        ax.set_title("PCA of the best VAE's latent means")
    return fig


def _parse_model_id(mid: str) -> tuple[str, str, int]:
    """``("vae" | "cvae", short conditions, latent_dim)`` of a grid id (``d = 0`` if unknown)."""
    m = re.fullmatch(r"(c?vae)(?:-(.*))?-d(\d+)", str(mid))
    if m:
        return m[1], m[2] or "", int(m[3])
    return ("cvae" if str(mid).startswith("cvae") else "vae"), "", 0


def _loss_series(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, bool]:
    """(epoch, loss, is_validation) of a metrics table: ``val_loss``, else ``train_loss``."""
    for col, is_val in (("val_loss", True), ("train_loss", False)):
        if (xy := metric_series(df, col)) is not None:
            return xy[0], xy[1], is_val
    return np.array([]), np.array([]), True


#: Above this many models the loss curves are split by kind, coloured by latent size.
_MAX_LISTED_MODELS = 12
_LINESTYLES: tuple[Any, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))


def fig_model_loss_curves(metrics: Mapping[str, pd.DataFrame]) -> Figure:
    """Validation loss (negative β-ELBO per spectrum) per epoch of every model of the grid.

    ``metrics`` maps a model id (``vae-d3``, ``cvae-mstar+sfr-d2`` …) to its
    ``metrics.csv`` rows. VAEs are drawn in shades of blue, CVAEs in shades of orange,
    darker for a larger latent space; a model without any validation value shows its
    training loss, dotted (up to 12 models) or thinner. Up to 12 models share one panel
    with one legend entry each; more are split into a VAE and a CVAE panel (shared y)
    with a colourbar of the latent dimension and, for the CVAEs, one line style per
    condition set. Log y when every value is positive.
    """
    ids = sorted(metrics, key=lambda m: (*_parse_model_id(m)[:2], _parse_model_id(m)[2], m))
    series = {m: _loss_series(metrics[m]) for m in ids}
    ids = [m for m in ids if series[m][0].size]
    kinds = {m: _parse_model_id(m) for m in ids}
    cmaps = {"vae": "Blues", "cvae": "Oranges"}
    allv = np.concatenate([series[m][1] for m in ids]) if ids else np.array([])
    log_y = bool(allv.size and np.all(allv > 0))
    split = len(ids) > _MAX_LISTED_MODELS
    with style():
        if not split:
            fig = new_figure(figsize=(4.8, 3.0), layout="constrained")
            axes = {"all": fig.add_subplot()}
        else:
            fig = new_figure(figsize=(7.2, 3.0), layout="constrained")
            a1, a2 = fig.subplots(1, 2, sharey=True)
            axes = {"vae": a1, "cvae": a2}
        for kind in ("vae", "cvae"):
            members = [m for m in ids if kinds[m][0] == kind]
            dims = sorted({kinds[m][2] for m in members})
            conds = list(dict.fromkeys(kinds[m][1] for m in members))
            cm = matplotlib.colormaps[cmaps[kind]]
            if split:
                lo, hi = (min(dims), max(dims)) if dims else (0, 1)
                norm = mcolors.Normalize(lo - 0.6 * max(hi - lo, 1), hi)
            for j, m in enumerate(members):
                x, y, is_val = series[m]
                if split:
                    ax = axes[kind]
                    colour = cm(norm(kinds[m][2]))
                    ls = _LINESTYLES[conds.index(kinds[m][1]) % len(_LINESTYLES)]
                    lw, lab = (1.0 if is_val else 0.5), None
                else:
                    ax = axes["all"]
                    colour = cm(0.45 + 0.5 * (j / max(len(members) - 1, 1)))
                    ls, lw = ("-" if is_val else ":"), 1.0
                    lab = m if is_val else f"{m} (train)"
                ax.plot(x, y, color=colour, ls=ls, lw=lw, label=lab,
                        marker="o" if x.size < 3 else None, ms=3)
            if split:
                ax = axes[kind]
                ax.set_title("VAEs" if kind == "vae" else "CVAEs")
                if members:
                    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=ax, pad=0.01,
                                      aspect=25, ticks=dims if len(dims) <= 10 else None)
                    cb.ax.set_ylim(min(dims) - 0.5, max(dims) + 0.5)
                    cb.set_label("latent dimension $d$")
                else:
                    _text_box(ax, f"no {kind.upper()} in the grid", "center")
                if kind == "cvae" and len(conds) > 1:
                    for c in conds:
                        ax.plot([], [], color="0.3", lw=1.0, label=c or "(none)",
                                ls=_LINESTYLES[conds.index(c) % len(_LINESTYLES)])
                    ax.legend(loc="upper right", fontsize=6, title="conditions",
                              title_fontsize=6.5, handlelength=2.6)
        for name, ax in axes.items():
            if log_y:
                ax.set_yscale("log")
                _plain_log_ticks(ax.yaxis)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if name != "cvae":
                ax.set_ylabel(r"validation loss [nats / spectrum]")
        if not ids:
            _text_box(next(iter(axes.values())), "no loss values", "center")
        if not split:
            ax = axes["all"]
            ax.set_title(r"training curves ($-$ELBO, validation)")
            if ids:
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6,
                          handlelength=1.5)
        else:
            fig.suptitle(r"training curves ($-$ELBO, validation)", fontsize=9)
    return fig


def fig_truth_recovery(panels: Sequence[Mapping[str, Any]]) -> Figure:
    """Mock: each planted parameter against the component that carries it.

    ``panels``: one mapping per planted parameter with ``name`` (e.g. ``log_age``),
    ``truth`` and ``d`` (per-spectrum arrays), ``component`` (``D2``), ``nmi`` and
    ``rho`` (from ``mi.csv``, printed in the title); an entry with ``note`` instead of
    arrays draws a panel with that text (e.g. a parameter held constant in the mock).
    Points are drawn as a scatter (hexbin above 5000 spectra). Up to three panels a row.
    """
    n = max(len(panels), 1)
    ncol = min(n, 3) if n != 4 else 2
    nrow = math.ceil(n / ncol)
    with style():
        fig = new_figure(figsize=(min(7.2, 2.5 * ncol + 0.3), 2.45 * nrow), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False).ravel())
        for ax in axes[len(panels):]:
            ax.set_axis_off()
        if not panels:
            axes[0].set_axis_on()
            _text_box(axes[0], "no planted parameters", "center")
        for ax, p in zip(axes, panels, strict=False):
            name = str(p["name"])
            ax.set_xlabel("true " + property_label(name))
            if p.get("note"):
                ax.set_title(property_symbol(name), fontsize=8)
                _text_box(ax, str(p["note"]), "center")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            x = np.asarray(p["truth"], dtype=float).ravel()
            y = np.asarray(p["d"], dtype=float).ravel()
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() > 5000:
                ax.hexbin(x[ok], y[ok], gridsize=35, mincnt=1, cmap="Blues",
                          norm=mcolors.LogNorm(), linewidths=0.0, rasterized=True)
            else:
                ax.scatter(x[ok], y[ok], s=3, lw=0, alpha=0.5, color=PALETTE[0],
                           rasterized=True)
            comp = str(p.get("component", "D"))
            ax.set_ylabel(comp)
            nmi, rho = float(p.get("nmi", math.nan)), float(p.get("rho", math.nan))
            stats = []
            if np.isfinite(nmi):
                stats.append(f"NMI {fmt_nmi(nmi)}")
            if np.isfinite(rho):
                stats.append(f"ρ {fmt_signed(rho)}")
            ax.set_title(f"{comp}: " + ", ".join(stats) if stats else comp, fontsize=8)
        fig.suptitle("mock: planted parameters against their most informative component",
                     fontsize=9)
    return fig
