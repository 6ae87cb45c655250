"""Figures of the exsitu study (each PDF + PNG with the provenance stamp).

``fig2_examples`` the paper's Fig. 2: for test projections across f_ex, the five inputs,
the true ex-situ map, the flow's mean map, its spread and the residual; ``fig3_residuals``
the paper's Fig. 3: per-pixel residual distributions of the encoder, flow and prior latents
with their means, and the mean residual against the pixel's true ex-situ fraction;
``error_vs_radius``; ``integrated_fex``: predicted against true integrated f_ex;
``coverage``: the 68 % / 95 % interval coverage by radius; ``loss_curves`` of the CVAE and
the flow; ``truth_recovery`` (mock): the planted-truth checks against their thresholds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.exsitu import analysis as an
from galforge.exsitu.maps import CHANNELS, read_maps
from galforge.figures import new_figure, save_figure
from galforge.provenance import Provenance

__all__ = ["FIGURES", "make_figures"]

FIGURES = ("fig2_examples", "fig3_residuals", "error_vs_radius", "integrated_fex", "coverage",
           "loss_curves")
_LABELS = {"log_sigma": r"log $\Sigma_*$", "v_los": r"$v_{\rm los}$",
           "sigma_los": r"$\sigma_{\rm los}$", "log_z": r"log $Z/Z_\odot$", "age": "age",
           "f_ex": r"$f_{\rm ex}$"}
_COLORS = {"encoder": "C0", "flow": "C2", "prior": "C3", "baseline": "0.5"}


def _examples(m: Any, rows: np.ndarray, p: dict[str, np.ndarray]) -> Any:
    fex = m.meta["fex"][rows]
    pick = [int(np.argmin(np.abs(fex - q))) for q in np.quantile(fex, [0.05, 0.35, 0.65, 0.95])]
    fig = new_figure(figsize=(13, 1.5 * len(pick) + 0.5), layout="constrained")
    axes = fig.subplots(len(pick), 9, squeeze=False)
    for i, k in enumerate(pick):
        r, mask = rows[k], m.masks[rows[k]]
        panels = [*(m.maps[r, c] for c in range(5)), m.maps[r, 5], p["mean"][k], p["std"][k],
                  p["mean"][k] - m.maps[r, 5]]
        names = [*(_LABELS[c] for c in CHANNELS[:5]), "true $f_{ex}$", "mean", "spread",
                 "residual"]
        for j, (img, name) in enumerate(zip(panels, names, strict=True)):
            ax = axes[i, j]
            img = np.where(mask, img, np.nan)
            kw = {"vmin": 0, "vmax": 1} if j in (5, 6) else (
                {"cmap": "RdBu_r", "vmin": -0.5, "vmax": 0.5} if j == 8 else {})
            ax.imshow(img.T, origin="lower", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
        axes[i, 0].set_ylabel(f"f_ex = {fex[k]:.2f}", fontsize=8)
    return fig


def _residuals(true: np.ndarray, masks: np.ndarray, preds: dict[str, dict]) -> Any:
    fig = new_figure(figsize=(9, 3.4), layout="constrained")
    a, b = fig.subplots(1, 2)
    t = true[masks]
    edges = np.linspace(0, 1, 11)
    mid = 0.5 * (edges[1:] + edges[:-1])
    for src, p in preds.items():
        r = (p["mean"] - true)[masks]
        a.hist(r, bins=np.linspace(-0.6, 0.6, 61), histtype="step", color=_COLORS[src],
               label=f"{src}: mean {r.mean():+.3f}, |r| {np.abs(r).mean():.3f}")
        idx = np.clip(np.digitize(t, edges) - 1, 0, len(mid) - 1)
        mean_r = [r[idx == i].mean() if (idx == i).any() else np.nan for i in range(len(mid))]
        b.plot(mid, mean_r, "o-", color=_COLORS[src], label=src)
    a.set_xlabel("predicted - true $f_{ex}$ per pixel")
    a.set_ylabel("pixels")
    a.legend(fontsize=7)
    b.axhline(0, color="k", lw=0.5)
    b.set_xlabel("true pixel $f_{ex}$")
    b.set_ylabel("mean residual")
    return fig


def _by_radius(true: np.ndarray, masks: np.ndarray, preds: dict[str, dict],
               base: np.ndarray) -> Any:
    fig = new_figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    ring = np.broadcast_to(an.ring_index(true.shape[-1]), true.shape)[masks]
    x = (np.arange(an.N_RINGS) + 0.5) / an.N_RINGS
    for src, pred in [*((s, p["mean"]) for s, p in preds.items()), ("baseline", base)]:
        e = np.abs(pred - true)[masks]
        ax.plot(x, [e[ring == i].mean() if (ring == i).any() else np.nan
                    for i in range(an.N_RINGS)], "o-", color=_COLORS[src], label=src)
    ax.set_xlabel("radius / map half side (= 2 half-mass radii)")
    ax.set_ylabel("mean |error| per pixel")
    ax.legend(fontsize=7)
    return fig


def _integrated(fint_true: np.ndarray, preds: dict[str, dict]) -> Any:
    fig = new_figure(figsize=(4.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for src, p in preds.items():
        d = p["fex_int_mean"] - fint_true
        ax.errorbar(fint_true, p["fex_int_mean"], yerr=p["fex_int_std"], fmt="o", ms=2,
                    alpha=0.6, color=_COLORS[src],
                    label=f"{src}: scatter {d.std():.3f}, bias {d.mean():+.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.7)
    ax.set_xlabel("true integrated $f_{ex}$ (map)")
    ax.set_ylabel("predicted")
    ax.legend(fontsize=7)
    return fig


def _coverage(report: dict[str, Any]) -> Any:
    fig = new_figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.subplots()
    x = (np.arange(an.N_RINGS) + 0.5) / an.N_RINGS
    for src in ("encoder", "flow", "prior"):
        if src not in report:
            continue
        for level, ls in (("68", "-"), ("95", "--")):
            ax.plot(x, report[src][f"coverage{level}_by_ring"], ls, marker="o", ms=3,
                    color=_COLORS[src], label=f"{src} {level} %: "
                    f"{report[src][f'coverage{level}']:.2f}")
    for nominal in (0.68, 0.95):
        ax.axhline(nominal, color="k", lw=0.5)
    ax.set_xlabel("radius / map half side")
    ax.set_ylabel("fraction of true pixels inside")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6, ncol=2)
    return fig


def _truth(truth: dict[str, Any]) -> Any:
    fig = new_figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    th = truth["thresholds"]
    rows = [(f"error <= {th['max_error']:.2f}", truth["error"], th["max_error"],
             truth["pass_error"]),
            ("< baseline", truth["error"], truth["baseline_error"], truth["pass_beats_baseline"]),
            ("< prior", truth["error"], truth["prior_error"], truth["pass_flow_beats_prior"]),
            (f"Spearman >= {th['min_spearman']:.1f}", truth["fex_int_spearman"],
             th["min_spearman"], truth["pass_integrated_fex"]),
            ("coverage68 ~ 0.68", truth["coverage68"], 0.68, truth["pass_coverage68"])]
    for i, (_name, value, ref, ok) in enumerate(rows):
        ax.barh(i, value, color="C2" if ok else "C3")
        ax.plot([ref, ref], [i - 0.4, i + 0.4], "k-")
        ax.text(value, i, f" {value:.3f} ({'pass' if ok else 'FAIL'})", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.set_xlabel("value (black: threshold or reference)")
    return fig


def make_figures(maps_in: str | os.PathLike[str], predictions_in: str | os.PathLike[str],
                 evaluation_in: str | os.PathLike[str], cvae_metrics: str | os.PathLike[str],
                 flow_metrics: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 provenance: Provenance, truth_in: str | os.PathLike[str] | None = None
                 ) -> list[Path]:
    """Write every figure (and ``truth_recovery`` when ``truth_in`` is given)."""
    m = read_maps(maps_in)
    rows, preds = an.read_predictions(predictions_in)
    report = json.loads(Path(evaluation_in).read_text())
    true, masks = m.maps[rows, 5], m.masks[rows]
    base = an.baseline_maps(np.asarray(report["baseline_profile"]), len(rows), true.shape[-1])
    fint_true = an.integrated(true, m.maps[rows, 0], masks)
    out = Path(out_dir)
    src = "flow" if "flow" in preds else "prior"
    figs = {
        "fig2_examples": _examples(m, rows, preds[src]),
        "fig3_residuals": _residuals(true, masks, preds),
        "error_vs_radius": _by_radius(true, masks, preds, base),
        "integrated_fex": _integrated(fint_true, preds),
        "coverage": _coverage(report),
    }
    loss = new_figure(figsize=(9, 3.4), layout="constrained")
    for ax, (name, path) in zip(loss.subplots(1, 2), (("CVAE: MSE + beta KL", cvae_metrics),
                                                      ("flow: NLL", flow_metrics)), strict=True):
        df = pd.read_csv(path)
        for col, ls in (("train_loss", "-"), ("val_loss", "--")):
            if col in df:
                ax.plot(df["epoch"], df[col], ls, label=col.replace("_loss", ""))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    figs["loss_curves"] = loss
    if truth_in is not None:
        figs["truth_recovery"] = _truth(json.loads(Path(truth_in).read_text()))
    written: list[Path] = []
    for stem, fig in figs.items():
        written.extend(save_figure(fig, out / stem, provenance))
    return written
