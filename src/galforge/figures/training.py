"""Figures of a training run, shared by every study."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from galforge.figures.common import PALETTE, new_figure, style
from galforge.figures.helpers import metric_series, plain_log_ticks, text_box

__all__ = ["fig_loss_curves"]


def fig_loss_curves(metrics: pd.DataFrame, *, title: str | None = None,
                    per: str = "map") -> Figure:
    """Training (solid) and validation (dashed) loss per epoch from ``metrics.csv``.

    Left: ``train_loss`` / ``val_loss`` (either may be absent or NaN; the best validation
    epoch is marked). Right, only when other ``train_<m>`` / ``val_<m>`` columns exist
    (e.g. ``recon``, ``kl``): those parts, one colour per part. Each panel is log-y when
    all its finite values are positive. x is ``epoch`` (the row number from 1 if absent).
    The loss axis reads "loss per ``per`` [nats]". One or two axes.
    """
    df = metrics.copy()

    def series(name: str) -> tuple[np.ndarray, np.ndarray] | None:
        return metric_series(df, name)

    parts: list[str] = []
    for col in df.columns:
        m = re.fullmatch(r"(?:train|val)_(.+)", str(col))
        if m and m[1] != "loss" and m[1] not in parts:
            parts.append(m[1])
    parts = [p for p in parts if series(f"train_{p}") or series(f"val_{p}")]

    def finish(ax: Any, ys: list[np.ndarray], ylabel: str) -> None:
        allv = np.concatenate(ys) if ys else np.array([])
        if allv.size and np.all(allv > 0):
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if ys:
            ax.legend(fontsize=7)

    with style():
        n_ax = 2 if parts else 1
        fig = new_figure(figsize=(3.5 * n_ax, 2.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, n_ax))
        ax = axes[0]
        ys: list[np.ndarray] = []
        tr, va = series("train_loss"), series("val_loss")
        if tr:
            ax.plot(*tr, color=PALETTE[0], label="train", marker="o" if tr[0].size < 3 else None)
            ys.append(tr[1])
        if va:
            ax.plot(*va, color=PALETTE[1], ls="--", label="validation",
                    marker="o" if va[0].size < 3 else None)
            ys.append(va[1])
            i = int(np.argmin(va[1]))
            ax.plot(va[0][i], va[1][i], marker="o", ms=5, mfc="none", mec="black", ls="none",
                    label=f"best (epoch {va[0][i]:g})")
        if not ys:
            text_box(ax, "no loss values", "upper right", margin=(0.04, 0.04), alpha=0.8)
        finish(ax, ys, f"loss per {per} [nats]")
        ax.set_title(title or "training loss")
        if parts:
            ax2 = axes[1]
            ys2: list[np.ndarray] = []
            for i, p in enumerate(parts):
                colour = PALETTE[(i + 2) % len(PALETTE)]
                for split, ls in (("train", "-"), ("val", "--")):
                    s = series(f"{split}_{p}")
                    if s:
                        ax2.plot(*s, color=colour, ls=ls, label=f"{p} ({split})")
                        ys2.append(s[1])
            finish(ax2, ys2, "loss part [nats]")
            ax2.set_title("parts (solid: train, dashed: val)")
    return fig
