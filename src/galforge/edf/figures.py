"""The edf study's figures: each function returns a matplotlib Figure (saved by
:func:`make_figures` as PDF + PNG with the provenance stamp).

* :func:`fig_mmd_vs_dlogm` - the paper's MMD against Δlog M*: model samples of held-out
  galaxies against every data galaxy (points), data galaxies against each other
  (contours), kernel and linear MMD;
* :func:`fig_corner` - a corner plot (the ``corner`` package) of data vs model for a
  held-out galaxy;
* :func:`fig_density_maps` - face-on and edge-on stellar density, data vs model;
* :func:`fig_marginals` - the 1-D marginal of every feature, data vs model;
* :func:`fig_losses` - training and validation loss of every model;
* :func:`fig_truth_recovery` - the mock's checks: model MMD in noise floors, against the
  nearest-neighbour MMD, and the rotation's inclination errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from galforge.figures.common import PALETTE, new_figure, style
from galforge.figures.helpers import text_box

__all__ = ["FEATURE_LABELS", "fig_corner", "fig_density_maps", "fig_losses", "fig_marginals",
           "fig_mmd_vs_dlogm", "fig_truth_recovery", "plotted"]

#: Axis labels of the flow's features as plotted (Z on a log scale).
FEATURE_LABELS: tuple[str, ...] = (
    "x [kpc]", "y [kpc]", "z [kpc]", r"$v_x$ [km/s]", r"$v_y$ [km/s]", r"$v_z$ [km/s]",
    r"$\log_{10} Z$", "[Fe/H]", "[O/Fe]", "age [Gyr]",
)
DATA, MODEL = PALETTE[0], PALETTE[1]


def plotted(features: np.ndarray) -> np.ndarray:
    """Features as plotted: log10 on Z (column 6)."""
    out = np.array(features, dtype=np.float64)
    out[:, 6] = np.log10(np.clip(out[:, 6], 1e-30, None))
    return out


def _ranges(data: np.ndarray, model: np.ndarray, q: float = 0.005) -> list[tuple[float, float]]:
    both = np.concatenate([data, model])
    lo, hi = np.quantile(both, q, axis=0), np.quantile(both, 1 - q, axis=0)
    return [(float(a), float(b) if b > a else float(a) + 1.0) for a, b in zip(lo, hi, strict=True)]


def fig_mmd_vs_dlogm(mmd: pd.DataFrame) -> Figure:
    """MMD against Δlog M* = log M*(data galaxy) - log M*(held-out galaxy)."""
    with style():
        fig = new_figure(figsize=(7.0, 2.8), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, col, name in zip(axes, ("mmd_kernel", "mmd_linear"),
                                 ("kernel MMD²", "linear MMD (seed)"), strict=True):
            data = mmd[mmd["kind"] == "data"]
            model = mmd[mmd["kind"] == "model"]
            floor = max(1e-8, float(np.nanmin(mmd.loc[mmd[col] > 0, col])) if (mmd[col] > 0).any()
                        else 1e-8)
            if len(data) > 10:
                x, y = data["dlogm"].to_numpy(), np.log10(np.clip(data[col], floor, None))
                h, xe, ye = np.histogram2d(x, y, bins=(24, 24))
                levels = _mass_levels(h, (0.9, 0.5))
                ax.contour(0.5 * (xe[1:] + xe[:-1]), 10 ** (0.5 * (ye[1:] + ye[:-1])), h.T,
                           levels=levels, colors=[DATA], linewidths=(0.8, 1.4))
                ax.plot([], [], color=DATA, label="data vs data (50, 90 %)")
            ax.scatter(model["dlogm"], np.clip(model[col], floor, None), s=4, color=MODEL,
                       alpha=0.6, lw=0, label="model (held-out) vs data")
            ax.axvline(0, color="0.6", lw=0.6, ls=":")
            ax.set_yscale("log")
            ax.set_xlabel(r"$\Delta \log_{10} M_\star$")
            ax.set_ylabel(name)
            ax.legend(loc="upper center", fontsize=6)
    return fig


def _mass_levels(h: np.ndarray, fractions: tuple[float, ...]) -> list[float]:
    """Histogram heights enclosing the given fractions of the counts (increasing)."""
    flat = np.sort(h.ravel())[::-1]
    cum = np.cumsum(flat) / max(flat.sum(), 1)
    levels = sorted({float(flat[min(np.searchsorted(cum, f), len(flat) - 1)]) for f in fractions})
    return [lv for lv in levels if lv > 0] or [0.5]


def fig_corner(data: np.ndarray, model: np.ndarray, title: str) -> Figure:
    """Corner plot of the 10 features: data (blue) and model (orange)."""
    import corner

    d, m = plotted(data), plotted(model)
    rng = _ranges(d, m)
    with style({"font.size": 6, "xtick.labelsize": 5, "ytick.labelsize": 5}):
        fig = new_figure(figsize=(9.0, 9.0))
        kw = {"range": rng, "bins": 25, "plot_datapoints": False, "plot_density": False,
              "levels": (0.5, 0.9), "smooth": 1.0}
        # a fresh hist_kwargs each call: corner writes its colour into the dict it is given
        corner.corner(d, fig=fig, color=DATA, labels=list(FEATURE_LABELS),
                      hist_kwargs={"density": True}, **kw)
        corner.corner(m, fig=fig, color=MODEL, hist_kwargs={"density": True}, **kw)
        fig.legend(handles=[_line(DATA, "data (held out)"), _line(MODEL, "flow")],
                   loc="upper right", fontsize=9, title=title, title_fontsize=9)
    return fig


def _line(color: str, label: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, label=label)


def fig_density_maps(data: np.ndarray, model: np.ndarray, title: str) -> Figure:
    """Face-on (x-y) and edge-on (x-z) stellar density, data (top) and model (bottom)."""
    r = float(np.quantile(np.abs(data[:, :3]), 0.99))
    edges = np.linspace(-r, r, 61)
    with style():
        fig = new_figure(figsize=(5.0, 4.8), layout="constrained")
        axes = fig.subplots(2, 2, sharex=True, sharey=True)
        for row, (stars, name) in enumerate(((data, "data"), (model, "flow"))):
            for col, (j, lab) in enumerate(((1, "y [kpc]"), (2, "z [kpc]"))):
                h, _, _ = np.histogram2d(stars[:, 0], stars[:, j], bins=(edges, edges))
                h = np.log10(1 + h / max(len(stars), 1) * 1e4)
                ax = axes[row, col]
                ax.imshow(h.T, origin="lower", extent=(-r, r, -r, r), cmap="magma",
                          aspect="equal")
                ax.set_title(f"{name}, {'face-on' if j == 1 else 'edge-on'}", fontsize=8)
                if row == 1:
                    ax.set_xlabel("x [kpc]")
                if col == 0 or row == 0:
                    ax.set_ylabel(lab)
        fig.suptitle(title, fontsize=8)
    return fig


def fig_marginals(data: np.ndarray, model: np.ndarray, title: str) -> Figure:
    """1-D marginal density of each feature, data vs model."""
    d, m = plotted(data), plotted(model)
    rng = _ranges(d, m, 0.002)
    with style():
        fig = new_figure(figsize=(8.0, 3.6), layout="constrained")
        axes = fig.subplots(2, 5).ravel()
        for j, ax in enumerate(axes):
            bins = np.linspace(*rng[j], 41)
            ax.hist(d[:, j], bins=bins, density=True, histtype="stepfilled", color=DATA,
                    alpha=0.35, label="data")
            ax.hist(m[:, j], bins=bins, density=True, histtype="step", color=MODEL, lw=1.2,
                    label="flow")
            ax.set_xlabel(FEATURE_LABELS[j], fontsize=7)
            ax.set_yticks([])
        axes[0].legend(fontsize=6)
        fig.suptitle(title, fontsize=8)
    return fig


def fig_losses(metrics: Mapping[str, pd.DataFrame]) -> Figure:
    """Training (solid) and validation (dashed) loss per epoch of every model."""
    with style():
        fig = new_figure(figsize=(4.0, 2.8), layout="constrained")
        ax = fig.subplots()
        for k, (name, df) in enumerate(sorted(metrics.items())):
            color = PALETTE[k % len(PALETTE)]
            ax.plot(df["epoch"], df["train_loss"], color=color, lw=1.0, label=name)
            if "val_loss" in df and df["val_loss"].notna().any():
                ax.plot(df["epoch"], df["val_loss"], color=color, lw=1.0, ls="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel("negative log-likelihood per star [nats]")
        ax.legend(fontsize=6, ncol=2, title="solid: train, dashed: validation",
                  title_fontsize=6)
    return fig


def fig_truth_recovery(heldout: pd.DataFrame, checks: Mapping[str, Any],
                       inclination: Mapping[str, float] | None) -> Figure:
    """The planted-truth checks: (a) model MMD in noise floors per held-out galaxy, (b)
    model vs nearest-neighbour MMD, (c) the rotation's errors."""
    n_ax = 3 if inclination else 2
    with style():
        fig = new_figure(figsize=(3.0 * n_ax, 2.8), layout="constrained")
        axes = fig.subplots(1, n_ax)
        ok = heldout["passes"].to_numpy(dtype=bool)
        ax = axes[0]
        ax.scatter(heldout["log_mstar"], heldout["ratio_to_floor"], s=10,
                   c=np.where(ok, PALETTE[2], PALETTE[3]))
        ax.axhline(checks["floor_factor"], color="0.4", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel(r"$\log_{10} M_\star$ of the held-out galaxy")
        ax.set_ylabel("kernel MMD² / noise floor")
        text_box(ax, f"{checks['fraction_heldout_passing']:.0%} pass "
                     f"(need {checks['required_fraction_passing']:.0%})", "upper left")
        ax = axes[1]
        lo = float(min(heldout["mmd_model"].min(), heldout["mmd_nearest"].min()))
        hi = float(max(heldout["mmd_model"].max(), heldout["mmd_nearest"].max()))
        ax.loglog([lo, hi], [lo, hi], color="0.5", lw=0.8)
        ax.scatter(heldout["mmd_nearest"], heldout["mmd_model"], s=10,
                   c=np.where(ok, PALETTE[2], PALETTE[3]))
        ax.set_xlabel("nearest training galaxy in log M*")
        ax.set_ylabel("flow (held out)")
        ax.set_title("kernel MMD² to a fresh true sample", fontsize=8)
        text_box(ax, f"Spearman ρ(MMD, |ΔlogM*|) = {checks['spearman_mmd_vs_abs_dlogm']:.2f}",
                 "lower right", fontsize=6)
        if inclination:
            ax = axes[2]
            ax.hist(list(inclination.values()), bins=20, color=PALETTE[0])
            ax.axvline(1.0, color="0.4", ls="--", lw=0.8)
            ax.set_xlabel("spin axis error after rotation [deg]")
            ax.set_ylabel("galaxies")
    return fig
