"""Small plotting helpers every study's figure module uses.

Labels of the galaxy properties (:data:`GALAXY_PROPERTY_LABELS`), number formats
(:func:`fmt_signed`, :func:`fmt_nmi`, with the typographic minus
:data:`MINUS`), plain tick labels on log axes (:func:`plain_log_ticks`), a boxed
note on a panel (:func:`text_box`), annotated heat maps of a long table
(:func:`pivot_matrix`, :func:`color_norm`, :func:`heatmap`, :func:`annotate_cells`,
:func:`readable_text_color`) and the series of a ``metrics.csv``
(:func:`metric_epochs`, :func:`metric_series`).

Where the two studies drew a helper differently, the difference is a parameter
(each study passes its own), so their figures are drawn as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.ticker import FuncFormatter, NullFormatter

__all__ = [
    "GALAXY_PROPERTY_LABELS",
    "MINUS",
    "annotate_cells",
    "color_norm",
    "fmt_nmi",
    "fmt_signed",
    "heatmap",
    "metric_epochs",
    "metric_series",
    "pivot_matrix",
    "plain_log_ticks",
    "readable_text_color",
    "text_box",
]

#: The typographic minus sign (U+2212) used in printed numbers.
MINUS = "\N{MINUS SIGN}"

#: ``name -> (symbol, unit)`` of the galaxy properties every study plots (GSWLC-2 columns).
GALAXY_PROPERTY_LABELS: dict[str, tuple[str, str]] = {
    "log_mstar": (r"$\log_{10} M_\star$", r"$M_\odot$"),
    "log_sfr": (r"$\log_{10}\,\mathrm{SFR}$", r"$M_\odot\,\mathrm{yr}^{-1}$"),
    "log_ssfr": (r"$\log_{10}\,\mathrm{sSFR}$", r"$\mathrm{yr}^{-1}$"),
}


# -- numbers -------------------------------------------------------------------------------
def fmt_signed(v: float, digits: int = 2) -> str:
    """``v`` with an explicit sign and ``digits`` decimals, typographic minus (``+0.25``)."""
    return f"{v:+.{digits}f}".replace("-", MINUS)


def fmt_nmi(nmi: float) -> str:
    """Normalised MI to at most 3 significant figures (2 decimals below 10, 1 below 100)."""
    a = abs(nmi)
    s = f"{nmi:.0f}" if a >= 100 else f"{nmi:.1f}" if a >= 10 else f"{nmi:.2f}"
    return s.replace("-", MINUS)


# -- axes ------------------------------------------------------------------------------------
#: Default of :func:`plain_log_ticks`: label the 2s, 3s and 5s of each decade on an axis
#: spanning under 1.5 decades, the 2s and 5s under 3 decades.
MINOR_LABELS: tuple[tuple[float, tuple[int, ...]], ...] = ((1.5, (2, 3, 5)), (3.0, (2, 5)))


def plain_log_ticks(axis: Any,
                    minor_labels: Sequence[tuple[float, Sequence[int]]] = MINOR_LABELS) -> None:
    """Plain numbers (``200``, ``0.01``) instead of ``2×10²`` on a log axis.

    ``minor_labels``: ``(span, leads)`` pairs by increasing ``span``; on an axis
    spanning under ``span`` decades, the minor ticks whose leading digit is in
    ``leads`` are labelled too (the first pair that applies); on a wider axis the
    minor ticks are not labelled. Axes whose view does not lie above 0 are left as
    they are.
    """
    lo, hi = sorted(axis.get_view_interval())
    if not (lo > 0 and hi > lo):
        return
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    span = math.log10(hi / lo)
    leads = next((tuple(ld) for limit, ld in minor_labels if span < limit), None)
    if leads:
        def minor(v: float, _: Any) -> str:
            lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6) if v > 0 else 0
            return f"{v:g}" if lead in leads else ""

        axis.set_minor_formatter(FuncFormatter(minor))
    else:
        axis.set_minor_formatter(NullFormatter())


def text_box(ax: Any, s: str, loc: str = "upper left", fontsize: float = 7.0, *,
             margin: tuple[float, float] = (0.03, 0.05), alpha: float = 0.85) -> Any:
    """A note in a white rounded box at ``loc`` of the panel; returns the text artist.

    ``loc``: ``"upper left"``, ``"upper right"``, ``"lower left"``, ``"lower right"`` or
    ``"center"``; ``margin`` (x, y) is the inset from the panel's edges in axes
    fractions, ``alpha`` the box's opacity.
    """
    mx, my = margin
    x, y, ha, va = {
        "upper left": (mx, 1 - my, "left", "top"),
        "upper right": (1 - mx, 1 - my, "right", "top"),
        "lower right": (1 - mx, my, "right", "bottom"),
        "lower left": (mx, my, "left", "bottom"),
        "center": (0.5, 0.5, "center", "center"),
    }[loc]
    return ax.text(x, y, s, transform=ax.transAxes, ha=ha, va=va, fontsize=fontsize,
                   bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=alpha))


# -- heat maps ---------------------------------------------------------------------------------
def readable_text_color(rgba: Sequence[float]) -> str:
    """``"black"`` or ``"white"``, whichever reads better on the colour ``rgba`` (luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def pivot_matrix(table: pd.DataFrame, row: str, col: str, value: str,
                 rows: Sequence[Any], cols: Sequence[Any]) -> np.ndarray:
    """The ``value`` column of a long table as a (len(rows), len(cols)) float matrix.

    Cells are keyed by the table's ``row`` and ``col`` columns (the last of
    duplicate keys wins); missing cells, non-numeric values and a missing ``value``
    column give NaN.
    """
    if value not in table.columns:
        return np.full((len(rows), len(cols)), np.nan)
    t = table.drop_duplicates([row, col], keep="last").set_index([row, col])
    idx = pd.MultiIndex.from_product([list(rows), list(cols)])
    v = pd.to_numeric(t[value], errors="coerce").reindex(idx).to_numpy(float)
    return v.reshape(len(rows), len(cols))


def color_norm(values: np.ndarray, *, log: bool = True) -> tuple[mcolors.Normalize, bool]:
    """A colour scale for ``values`` (NaN ignored) and whether it is logarithmic.

    Logarithmic over the finite range when ``log`` and every finite value is
    positive (a range of one value is widened by a factor 2 each way); otherwise
    linear from ``min(0, smallest)`` to the largest value (1 when there is none).
    """
    fin = values[np.isfinite(values)]
    if log and fin.size > 0 and bool(np.all(fin > 0)):
        lo, hi = float(fin.min()), float(fin.max())
        if hi <= lo:
            lo, hi = lo / 2.0, hi * 2.0
        return mcolors.LogNorm(lo, hi), True
    hi = float(fin.max()) if fin.size else 1.0
    return mcolors.Normalize(min(0.0, float(fin.min()) if fin.size else 0.0),
                             hi if hi > 0 else 1.0), False


def heatmap(ax: Any, data: np.ndarray, *, cmap: str, norm: mcolors.Normalize,
            xlabels: Sequence[str], ylabels: Sequence[str], bad: str = "0.9",
            rotation: float = 45) -> Any:
    """``data`` (rows, columns) drawn cell by cell (NaN in the colour ``bad``), labelled.

    Column labels are rotated by ``rotation`` degrees; ticks are hidden. Returns the image.
    """
    cm = matplotlib.colormaps[cmap].with_extremes(bad=bad)
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cm, norm=norm, aspect="auto",
                   interpolation="nearest")
    ax.set_xticks(range(len(xlabels)))
    ax.set_xticklabels(list(xlabels), rotation=rotation, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(ylabels)))
    ax.set_yticklabels(list(ylabels))
    ax.tick_params(top=False, right=False, length=0)
    return im


def annotate_cells(ax: Any, im: Any, data: np.ndarray, text: Callable[[int, int, float], str],
                   **text_kw: Any) -> None:
    """Write ``text(i, j, value)`` on every finite cell of a :func:`heatmap`.

    The text is black or white to read on the cell's colour; ``text_kw`` go to
    ``ax.text`` (e.g. ``fontsize``).
    """
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = data[i, j]
            if not np.isfinite(v):
                continue
            col = readable_text_color(im.cmap(im.norm(v)))
            ax.text(j, i, text(i, j, float(v)), ha="center", va="center", color=col, **text_kw)


# -- metrics.csv -------------------------------------------------------------------------------
def metric_epochs(metrics: pd.DataFrame) -> np.ndarray:
    """The ``epoch`` column as floats (the row number from 1 when absent)."""
    if "epoch" in metrics:
        return pd.to_numeric(metrics["epoch"], errors="coerce").to_numpy(float)
    return np.arange(1, len(metrics) + 1, dtype=float)


def metric_series(metrics: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(epoch, value)`` of the rows where column ``name`` and the epoch are finite.

    ``None`` when the column is absent or has no finite value.
    """
    if name not in metrics.columns:
        return None
    x = metric_epochs(metrics)
    y = pd.to_numeric(metrics[name], errors="coerce").to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    return (x[ok], y[ok]) if ok.any() else None
