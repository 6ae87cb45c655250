"""Figures of the environment study (Gim, Moon, Yoon et al.): pure plotting functions.

Every ``fig_*`` function takes arrays / data frames and returns a
:class:`matplotlib.figure.Figure` made with :func:`galforge.figures.new_figure` inside the
house :func:`galforge.figures.style` (so nothing is registered with pyplot and nothing
leaks). None of them reads or writes files; the caller saves with
:func:`galforge.figures.save_figure`::

    fig = fig_correlation_heatmaps(table)
    save_figure(fig, out / "fig6_correlations", provenance)

==========================  ============================================  =====================
function                    paper figure                                  axes (incl. colourbars)
==========================  ============================================  =====================
fig_target_example          Fig 1: sky, input map, reconstruction         4 (3 panels + 1 cbar)
fig_latent_traversals       Fig 5: decoded rate maps along each latent    K·V + K (1 cbar / row)
fig_latents_vs_parameters   Figs 3, 4: latents vs parameters (hexbin)     K·C + 1
fig_correlation_heatmaps    Fig 6: Spearman ρ and normalised MI           4 (2 maps + 2 cbars)
fig_kl_spectrum             mean KL per ranked latent                     1
fig_latents_vs_moments      latents vs the maps' dipole and quadrupole    2 + 4 + 1
fig_truth_recovery          mock: top latent vs planted true density      2 (panel + cbar),
                            (+ the planted field moments)                 2 + 4 + 1 with them
==========================  ============================================  =====================

The training-loss figure is the shared :func:`galforge.figures.training.fig_loss_curves`.

Conventions
-----------
* **Maps** follow :mod:`galforge.environment.maps`: ``map[iy, ix]`` with the row ``iy``
  growing to the north (y) and the column ``ix`` to the east (x, RA increasing), shown
  with ``imshow(origin="lower")`` over ``[−L/2, L/2]`` h⁻¹Mpc: north up, east **right**.
  The sky panel of :func:`fig_target_example` uses the same orientation (RA increasing
  to the right) so the square on the sky and the maps beside it are not mirror images.
* **Latents** are named by 1-based rank, ``z1`` the latent with the largest mean KL: the
  ``latent`` column of :func:`galforge.stats.correlation_table` (0-based column of the
  ranked latent matrix) ``k`` is shown as ``z{k+1}``.
* **NaN / ±inf** values are dropped pairwise from every scatter-type panel; statistics
  printed on the panels are the caller's (from the table), never recomputed here.
* **Colours** are colour-blind safe: the Okabe–Ito :data:`~galforge.figures.PALETTE`
  for lines, ``viridis`` / ``Blues`` for sequential scales and ``RdBu_r`` (symmetric
  about 0) for ρ.

One module on purpose (over 800 lines): one function per figure of the study, all
sharing this module's panel helpers; :mod:`figure_set` maps the workflow's stems onto them.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib import patches as mpatches
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from galforge.figures import PALETTE, new_figure, style
from galforge.figures.helpers import (
    GALAXY_PROPERTY_LABELS,
    MINUS,
    annotate_cells,
    color_norm,
    fmt_nmi,
    fmt_signed,
    heatmap,
    pivot_matrix,
    plain_log_ticks,
    text_box,
)

__all__ = [
    "C_KMS",
    "PARAMETER_LABELS",
    "parameter_label",
    "parameter_symbol",
    "square_outline_radec",
    "running_median",
    "fig_target_example",
    "fig_latent_traversals",
    "fig_latents_vs_parameters",
    "fig_correlation_heatmaps",
    "fig_kl_spectrum",
    "fig_truth_recovery",
    "fig_latents_vs_moments",
    "MomentPanel",
]

#: Speed of light [km/s] (same value as :data:`galforge.cosmology.C_KMS`).
C_KMS = 299792.458

_HMPC = r"$h^{-1}\,$Mpc"

#: ``name -> (symbol, unit)`` of the environment parameters and galaxy properties.
PARAMETER_LABELS: dict[str, tuple[str, str]] = {
    "d_nn": (r"$d_\mathrm{nn}$", _HMPC),
    "n_map": (r"$N_\mathrm{map}$", "counts"),
    **GALAXY_PROPERTY_LABELS,
    "g_r": (r"$g-r$", "mag"),
    "Mr": (r"$M_r - 5\log_{10}h$", "mag"),
    "log1p_delta_true": (r"$\log_{10}(1+\delta_s)$, true", ""),
    "log1p_delta_map": (r"$\log_{10}(1+\delta)$, true, map scale", ""),
}

_ROW_CMAP = "viridis"
_HEX_CMAP = "Blues"
_MEDIAN_COLOR = PALETTE[3]  # vermillion: contrasts with Blues / viridis


# --------------------------------------------------------------------------- labels
def _fmt_num(v: float) -> str:
    return f"{v:g}"


def parameter_symbol(name: str) -> str:
    """Short mathtext symbol of a parameter (no unit), e.g. ``log_sigma_5 -> log10 Σ5``."""
    if name in PARAMETER_LABELS:
        return PARAMETER_LABELS[name][0]
    if m := re.fullmatch(r"log_sigma_(\d+)", name):
        return rf"$\log_{{10}}\Sigma_{{{m[1]}}}$"
    if m := re.fullmatch(r"sigma_(\d+)", name):
        return rf"$\Sigma_{{{m[1]}}}$"
    if m := re.fullmatch(r"d_(\d+)", name):
        return rf"$d_{{{m[1]}}}$"
    if m := re.fullmatch(r"n_r(\d+(?:\.\d+)?)", name):
        return rf"$N(<{m[1]})$"
    return name


def parameter_label(name: str, multiline: bool = False) -> str:
    """Axis label of a parameter with its unit, e.g. ``d_nn -> d_nn [h⁻¹Mpc]``.

    ``multiline=True`` puts the unit on a second line (narrow panels).
    """
    if name in PARAMETER_LABELS:
        sym, unit = PARAMETER_LABELS[name]
    elif re.fullmatch(r"log_sigma_\d+", name):
        sym, unit = parameter_symbol(name), r"$h^{2}\,\mathrm{Mpc}^{-2}$"
    elif re.fullmatch(r"sigma_\d+", name):
        sym, unit = parameter_symbol(name), r"$h^{2}\,\mathrm{Mpc}^{-2}$"
    elif re.fullmatch(r"d_\d+", name):
        sym, unit = parameter_symbol(name), _HMPC
    elif m := re.fullmatch(r"n_r(\d+(?:\.\d+)?)", name):
        sym, unit = rf"$N(<{m[1]}\,h^{{-1}}\,\mathrm{{Mpc}})$", "counts"
    else:
        return name
    if not unit:
        return sym
    return f"{sym}\n[{unit}]" if multiline else f"{sym} [{unit}]"


def _latent_name(k: int) -> str:
    return f"z{int(k) + 1}"


#: The environment study's boxed notes: inset 0.04 from the panel's edges, 80 % opaque.
_text_box = functools.partial(text_box, margin=(0.04, 0.04), alpha=0.8)


# --------------------------------------------------------------------------- helpers
def square_outline_radec(
    target_ra: float,
    target_dec: float,
    distance_mpc: float,
    size_mpc: float,
    n_per_side: int = 16,
) -> np.ndarray:
    """RA/Dec [deg] of the outline of the map square around a target, a closed polygon.

    Inverse gnomonic projection about the target (the map convention of
    :mod:`galforge.environment.maps`): tangent-plane offsets ``(ξ, η) = (x, y) / D_t``
    with ``x`` east and ``y`` north, for points along the edges of the square
    ``[−L/2, L/2]²`` h⁻¹Mpc at comoving distance ``D_t = distance_mpc`` (h⁻¹Mpc). The edges
    are great circles, so each is sampled with ``n_per_side`` segments. Returns an array
    ``(4·n_per_side + 1, 2)`` of (RA, Dec); RA is unwrapped to within ±180° of
    ``target_ra`` (it may fall outside [0, 360)). Pure maths, no cosmology: the caller
    computes ``D_t``.
    """
    if not (distance_mpc > 0 and size_mpc > 0):
        raise ValueError("distance_mpc and size_mpc must be positive")
    n = max(int(n_per_side), 1)
    h = size_mpc / 2.0
    t = np.linspace(-h, h, n + 1)[:-1]
    x = np.concatenate([t, np.full(n, h), -t, np.full(n, -h), [-h]])
    y = np.concatenate([np.full(n, -h), t, np.full(n, h), -t, [-h]])
    xi, eta = x / distance_mpc, y / distance_mpc
    a0, d0 = math.radians(target_ra), math.radians(target_dec)
    t_hat = np.array([math.cos(d0) * math.cos(a0), math.cos(d0) * math.sin(a0), math.sin(d0)])
    e_hat = np.array([-math.sin(a0), math.cos(a0), 0.0])
    n_hat = np.array([-math.sin(d0) * math.cos(a0), -math.sin(d0) * math.sin(a0), math.cos(d0)])
    u = t_hat[None, :] + xi[:, None] * e_hat[None, :] + eta[:, None] * n_hat[None, :]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    dec = np.degrees(np.arcsin(np.clip(u[:, 2], -1.0, 1.0)))
    ra = np.degrees(np.arctan2(u[:, 1], u[:, 0]))
    ra = target_ra + (ra - target_ra + 180.0) % 360.0 - 180.0
    return np.column_stack([ra, dec])


def _finite_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(pd.to_numeric(pd.Series(np.asarray(x).ravel()), errors="coerce"), float)
    y = np.asarray(pd.to_numeric(pd.Series(np.asarray(y).ravel()), errors="coerce"), float)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def running_median(
    x: Any, y: Any, n_bins: int = 15, min_count: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median and 16th/84th percentiles of ``y`` in equal-count bins of ``x``.

    Non-finite pairs are dropped; bins with fewer than ``min_count`` points are skipped;
    tied ``x`` values (integer counts) never straddle a bin edge. Returns
    ``(x_med, y_med, y_16, y_84)`` (the x of a bin is its median ``x``).
    """
    x, y = _finite_pairs(x, y)
    empty = (np.array([]),) * 4
    if x.size < max(min_count, 2):
        return empty
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    cuts = np.unique(np.searchsorted(xs, np.quantile(xs, np.linspace(0, 1, n_bins + 1)[1:-1])))
    out: list[tuple[float, float, float, float]] = []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, xs.size], strict=True):
        if hi - lo < min_count:
            continue
        q16, q50, q84 = np.percentile(ys[lo:hi], [16, 50, 84])
        out.append((float(np.median(xs[lo:hi])), q50, q16, q84))
    if not out:
        return empty
    a = np.array(out)
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


def _robust_limits(v: np.ndarray, q: float = 0.002) -> tuple[float, float]:
    lo, hi = np.quantile(v, [q, 1 - q]) if v.size else (0.0, 1.0)
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        pad = max(abs(lo) * 0.05, 0.5)
        return lo - pad, hi + pad
    pad = 0.02 * (hi - lo)
    return lo - pad, hi + pad


def _hexbin(ax: Any, x: np.ndarray, y: np.ndarray, gridsize: int, norm: Any) -> Any:
    """Log-scaled hexbin of finite (x, y) inside robust limits; returns the collection."""
    xl, yl = _robust_limits(x), _robust_limits(y)
    inside = (x >= xl[0]) & (x <= xl[1]) & (y >= yl[0]) & (y <= yl[1])
    hb = ax.hexbin(
        x[inside],
        y[inside],
        gridsize=gridsize,
        extent=(*xl, *yl),
        mincnt=1,
        cmap=_HEX_CMAP,
        norm=norm,
        linewidths=0.0,
        rasterized=True,
    )
    ax.set_xlim(*xl)
    ax.set_ylim(*yl)
    return hb


def _median_curve(ax: Any, x: np.ndarray, y: np.ndarray, n_bins: int, label: bool) -> None:
    xm, ym, y16, y84 = running_median(x, y, n_bins=n_bins)
    if xm.size:
        ax.plot(xm, ym, color=_MEDIAN_COLOR, lw=1.3, label="running median" if label else None)
        ax.plot(
            xm,
            y16,
            color=_MEDIAN_COLOR,
            lw=0.8,
            ls="--",
            label="16th–84th percentiles" if label else None,
        )
        ax.plot(xm, y84, color=_MEDIAN_COLOR, lw=0.8, ls="--")


def _share_hex_clim(collections: Sequence[Any]) -> float:
    vmax = 1.0
    for hb in collections:
        arr = np.asarray(hb.get_array())
        if arr.size:
            vmax = max(vmax, float(np.nanmax(arr)))
    for hb in collections:
        hb.set_clim(1.0, vmax)
    return vmax


# --------------------------------------------------------------------------- Fig 1
def fig_target_example(
    sky_ra: Any,
    sky_dec: Any,
    sky_z: Any,
    target_ra: float,
    target_dec: float,
    target_z: float,
    input_map: Any,
    recon_map: Any,
    *,
    size_mpc: float,
    dv_kms: float,
    square_corners_radec: Any = None,
    gamma: float = 0.5,
    target_label: str | None = None,
) -> Figure:
    """Paper Fig 1: one target's sky neighbourhood, its count map and its reconstruction.

    Left: RA/Dec of the galaxies of the region (``sky_*``, the target may be among them):
    those within the velocity window ``c|z − z_t|/(1 + z_t) ≤ dv_kms`` in colour, the
    others in light grey, the target as a star, and — when ``square_corners_radec`` is
    given (an (M, 2) array of RA/Dec vertices, e.g. :func:`square_outline_radec`) — the
    map square outlined. RA increases to the right (as the maps' east) and the axes are
    drawn with equal angular scale (aspect ``1/cos δ_t``). Middle: the input count map;
    right: the reconstruction (Poisson rate), both ``map[iy, ix]`` north up / east right
    over ``[−size_mpc/2, size_mpc/2]`` h⁻¹Mpc, sharing one colour scale (power law with
    exponent ``gamma``, 1 = linear) and one colourbar. Four axes in all.
    """
    ra = np.asarray(sky_ra, dtype=float).ravel()
    dec = np.asarray(sky_dec, dtype=float).ravel()
    z = np.asarray(sky_z, dtype=float).ravel()
    if not (ra.shape == dec.shape == z.shape):
        raise ValueError("sky_ra, sky_dec and sky_z must have the same length")
    m_in = np.asarray(input_map, dtype=float)
    m_rec = np.asarray(recon_map, dtype=float)
    if m_in.ndim != 2 or m_in.shape != m_rec.shape:
        raise ValueError(f"input_map {m_in.shape} and recon_map {m_rec.shape}: need equal 2-D")
    ra_u = target_ra + (ra - target_ra + 180.0) % 360.0 - 180.0
    dv = C_KMS * np.abs(z - target_z) / (1.0 + target_z)
    ok = np.isfinite(ra_u) & np.isfinite(dec) & np.isfinite(z)
    is_target = (
        np.isclose(ra_u, target_ra, rtol=0, atol=1e-9)
        & np.isclose(dec, target_dec, rtol=0, atol=1e-9)
        & np.isclose(z, target_z, rtol=0, atol=1e-12)
    )
    near = ok & (dv <= dv_kms) & ~is_target
    far = ok & ~(dv <= dv_kms) & ~is_target

    half = size_mpc / 2.0
    extent = (-half, half, -half, half)
    vmax = max(
        float(np.nanmax(m_in)) if m_in.size else 0.0,
        float(np.nanmax(m_rec)) if m_rec.size else 0.0,
        1e-12,
    )
    norm = (
        mcolors.Normalize(0.0, vmax)
        if gamma == 1
        else mcolors.PowerNorm(gamma, vmin=0.0, vmax=vmax)
    )

    with style():
        fig = new_figure(figsize=(7.1, 2.55), layout="constrained")
        ax_sky, ax_in, ax_rec = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.15, 1, 1]})
        ax_sky.scatter(
            ra_u[far],
            dec[far],
            s=2,
            c="0.75",
            lw=0,
            rasterized=True,
            label=rf"$|\Delta v| > {_fmt_num(dv_kms)}$ km/s",
        )
        ax_sky.scatter(
            ra_u[near],
            dec[near],
            s=5,
            c=PALETTE[0],
            lw=0,
            rasterized=True,
            label=rf"$|\Delta v| \leq {_fmt_num(dv_kms)}$ km/s",
        )
        ax_sky.plot(
            [target_ra],
            [target_dec],
            marker="*",
            ms=9,
            color=PALETTE[3],
            mec="black",
            mew=0.5,
            ls="none",
            label=target_label or "target",
        )
        if square_corners_radec is not None:
            sq = np.asarray(square_corners_radec, dtype=float).reshape(-1, 2)
            sq_ra = target_ra + (sq[:, 0] - target_ra + 180.0) % 360.0 - 180.0
            if not (sq_ra[0] == sq_ra[-1] and sq[0, 1] == sq[-1, 1]):
                sq_ra, sq = np.r_[sq_ra, sq_ra[:1]], np.vstack([sq, sq[:1]])
            ax_sky.plot(
                sq_ra,
                sq[:, 1],
                color="black",
                lw=1.0,
                label=rf"{_fmt_num(size_mpc)} {_HMPC} square",
            )
        ax_sky.set_aspect(1.0 / max(math.cos(math.radians(target_dec)), 1e-3), adjustable="datalim")
        ax_sky.set_xlabel(r"RA [deg] (east $\rightarrow$)")
        ax_sky.set_ylabel("Dec [deg]")
        ax_sky.set_title(f"target at z = {target_z:.4f}")
        ax_sky.legend(
            loc="upper left",
            fontsize=6,
            handletextpad=0.2,
            borderaxespad=0.2,
            markerscale=1.5,
            framealpha=0.8,
            frameon=True,
        )

        im = None
        for ax, data, title in (
            (ax_in, m_in, "input counts"),
            (ax_rec, m_rec, "reconstruction (Poisson rate)"),
        ):
            im = ax.imshow(
                data,
                origin="lower",
                extent=extent,
                cmap=_ROW_CMAP,
                norm=norm,
                interpolation="nearest",
            )
            ax.plot([0], [0], marker="+", ms=7, color="white", mew=1.0)
            ax.set_title(title)
            ax.set_xlabel(rf"$x$ (east) [{_HMPC}]")
        ax_in.set_ylabel(rf"$y$ (north) [{_HMPC}]")
        ax_rec.tick_params(labelleft=False)
        cb = fig.colorbar(im, ax=[ax_in, ax_rec], shrink=0.9, pad=0.02)
        cb.set_label("galaxies per pixel")
    return fig


# --------------------------------------------------------------------------- Fig 5
def fig_latent_traversals(
    traversals: Any,
    values: Any,
    kl: Any,
    *,
    size_mpc: float,
    difference: bool = False,
    latent_labels: Sequence[str] | None = None,
) -> Figure:
    """Paper Fig 5: decoded rate maps as each top-ranked latent sweeps ``values``.

    ``traversals`` (K, V, npix, npix): row r holds the maps of the r-th ranked latent
    (:func:`galforge.environment.model.traverse` with ``order[r]``) at the latent values
    ``values`` (V,), in prior-σ units; ``kl`` (K,) their mean KL [nats]. Rows are labelled
    ``z1 (KL = …)``, columns by the latent value. Each row has its own linear colour scale
    from 0 and its own colourbar (rate, galaxies per pixel). ``difference=True`` shows the
    rate minus the row's mean map instead (diverging, symmetric scale), which brings out
    what the latent changes. Panels span ``[−size_mpc/2, size_mpc/2]`` h⁻¹Mpc, north up,
    east right; tick labels only on the bottom row. ``K·V + K`` axes.
    """
    tr = np.asarray(traversals, dtype=float)
    vals = np.asarray(values, dtype=float).ravel()
    kl = np.asarray(kl, dtype=float).ravel()
    if tr.ndim != 4:
        raise ValueError(f"traversals: expected (K, V, npix, npix), got shape {tr.shape}")
    n_k, n_v = tr.shape[:2]
    if vals.size != n_v or kl.size != n_k:
        raise ValueError(f"values ({vals.size}) / kl ({kl.size}) do not match {tr.shape[:2]}")
    labels = (
        list(latent_labels) if latent_labels is not None else [_latent_name(r) for r in range(n_k)]
    )
    half = size_mpc / 2.0
    extent = (-half, half, -half, half)
    panel = min(0.95, 6.3 / max(n_v, 1))
    with style():
        fig = new_figure(figsize=(panel * n_v + 1.0, panel * n_k + 0.75), layout="constrained")
        axes = np.atleast_2d(fig.subplots(n_k, n_v, squeeze=False))
        for r in range(n_k):
            rows = tr[r]
            if difference:
                rows = rows - rows.mean(axis=0, keepdims=True)
                lim = max(float(np.nanmax(np.abs(rows))), 1e-12)
                norm, cmap = mcolors.Normalize(-lim, lim), "RdBu_r"
            else:
                norm = mcolors.Normalize(0.0, max(float(np.nanmax(rows)), 1e-12))
                cmap = _ROW_CMAP
            im = None
            for c in range(n_v):
                ax = axes[r, c]
                im = ax.imshow(
                    rows[c],
                    origin="lower",
                    extent=extent,
                    cmap=cmap,
                    norm=norm,
                    interpolation="nearest",
                )
                ax.set_xticks([-half / 2, 0, half / 2])
                ax.set_yticks([-half / 2, 0, half / 2])
                ax.xaxis.set_major_formatter(
                    FuncFormatter(lambda v, _: f"{v:g}".replace("-", MINUS))
                )
                ax.tick_params(labelbottom=(r == n_k - 1), labelleft=False, length=2, labelsize=6)
                if r == 0:
                    ax.set_title(
                        f"{vals[c]:+.1f}".replace("-", MINUS) + ("σ" if c == 0 else ""), fontsize=8
                    )
            axes[r, 0].set_ylabel(f"{labels[r]}\nKL = {kl[r]:.2f}", fontsize=8)
            cb = fig.colorbar(im, ax=list(axes[r, :]), shrink=0.9, pad=0.01, aspect=10)
            cb.ax.tick_params(labelsize=6)
            cb.set_label(r"$\Delta$rate" if difference else "rate", fontsize=7)
        fig.supxlabel(rf"$x$ (east) [{_HMPC}]; north up", fontsize=8)
        fig.suptitle("latent value (units of the prior σ; other latents at 0)", fontsize=8)
    return fig


# --------------------------------------------------------------------------- Figs 3, 4
def _table_lookup(table: pd.DataFrame | None) -> dict[tuple[int, str], Mapping[str, Any]]:
    if table is None or len(table) == 0:
        return {}
    need = {"latent", "parameter"}
    if not need <= set(table.columns):
        raise ValueError(f"table lacks columns {sorted(need - set(table.columns))}")
    return {(int(r["latent"]), str(r["parameter"])): r for r in table.to_dict("records")}


def fig_latents_vs_parameters(
    latents: Any,
    params: pd.DataFrame,
    columns: Sequence[str],
    table: pd.DataFrame | None = None,
    *,
    latent_ids: Sequence[int] | None = None,
    gridsize: int = 35,
    n_median_bins: int = 15,
) -> Figure:
    """Paper Figs 3 (environment parameters) and 4 (galaxy properties).

    A grid of ``K`` rows (latent columns of ``latents`` (N, K), ranked) × ``len(columns)``
    columns (``params[col]``, x axis): log-scaled hexbin densities with one shared colour
    scale and colourbar (galaxies per hexagon), the running median and 16/84th percentiles
    of the latent in equal-count bins of the parameter (vermillion). Non-finite pairs are
    dropped per panel; axes span the 0.2–99.8 percentiles (the few points outside are not
    drawn). With ``table`` (:func:`galforge.stats.correlation_table`), each panel is
    annotated with ``ρ`` and the normalised MI of its (latent, parameter) row;
    ``latent_ids[r]`` is the ``latent`` value of row r in the table (default ``r``). Row
    r is labelled ``z{latent_ids[r]+1}``. ``K·C + 1`` axes.
    """
    lat = np.asarray(latents, dtype=float)
    if lat.ndim == 1:
        lat = lat[:, None]
    if lat.ndim != 2:
        raise ValueError(f"latents: expected (N, K), got shape {lat.shape}")
    if len(params) != lat.shape[0]:
        raise ValueError(f"latents has {lat.shape[0]} rows but params has {len(params)}")
    columns = list(columns)
    missing = [c for c in columns if c not in params.columns]
    if missing:
        raise KeyError(f"params lacks columns {missing}")
    n_k, n_c = lat.shape[1], len(columns)
    ids = list(latent_ids) if latent_ids is not None else list(range(n_k))
    if len(ids) != n_k:
        raise ValueError(f"latent_ids has {len(ids)} entries for {n_k} latents")
    lookup = _table_lookup(table)
    norm = mcolors.LogNorm(vmin=1.0, vmax=10.0)
    with style():
        w = min(7.2, 1.45 * n_c + 0.9)
        fig = new_figure(figsize=(w, 1.3 * n_k + 0.6), layout="constrained")
        axes = fig.subplots(n_k, n_c, squeeze=False)
        hbs = []
        for r in range(n_k):
            for c, col in enumerate(columns):
                ax = axes[r, c]
                x, y = _finite_pairs(params[col].to_numpy(), lat[:, r])
                hbs.append(_hexbin(ax, x, y, gridsize, norm))
                _median_curve(ax, x, y, n_median_bins, label=(r == 0 and c == 0))
                row = lookup.get((int(ids[r]), str(col)))
                if row is not None:
                    lines = []
                    if row.get("rho") is not None and np.isfinite(row["rho"]):
                        lines.append(rf"$\rho$={fmt_signed(float(row['rho']))}")
                    if row.get("nmi") is not None and np.isfinite(row["nmi"]):
                        lines.append(f"NMI={fmt_nmi(float(row['nmi']))}")
                    if lines:
                        ax.set_title("  ".join(lines), fontsize=6.5, pad=2)
                ax.tick_params(labelsize=6.5)
                if r == n_k - 1:
                    ax.set_xlabel(parameter_label(col, multiline=True), fontsize=7.5)
                if c == 0:
                    ax.set_ylabel(_latent_name(ids[r]))
        _share_hex_clim(hbs)
        if n_k and n_c:
            if axes[0, 0].get_legend_handles_labels()[0]:
                fig.legend(loc="outside upper center", ncols=2, fontsize=7)
            cb = fig.colorbar(hbs[0], ax=axes, shrink=0.6, pad=0.01, aspect=30)
            cb.set_label("galaxies per hexagon")
    return fig


# --------------------------------------------------------------------------- Fig 6
def fig_correlation_heatmaps(table: pd.DataFrame, latent_order: Sequence[int] | None = None,
                             *, parameters: Sequence[str] | None = None, nmi_log: bool = True,
                             annotate: bool = True) -> Figure:
    """Paper Fig 6: heat maps of Spearman ρ (left) and normalised MI (right).

    Rows are latents (``latent_order``: the table's ``latent`` values top to bottom;
    default all of them, ascending, i.e. by rank), columns the parameters (``parameters``,
    default in order of first appearance in the table). ρ uses ``RdBu_r`` with limits
    exactly ±1; NMI uses ``viridis`` on a log scale (``nmi_log``, when the finite values
    are positive; linear from 0 otherwise). Missing pairs / NaN are blank. With
    ``annotate`` each cell shows its value (ρ to 2 decimals, NMI to 3 significant
    figures at most). Four axes: two images and two colourbars; the images'
    arrays have shape (n_latents, n_parameters).
    """
    need = {"latent", "parameter", "rho", "nmi"}
    if not need <= set(table.columns):
        raise ValueError(f"table lacks columns {sorted(need - set(table.columns))}")
    lats = (
        list(latent_order)
        if latent_order is not None
        else sorted({int(v) for v in table["latent"]})
    )
    pars = (
        list(parameters)
        if parameters is not None
        else list(dict.fromkeys(str(p) for p in table["parameter"]))
    )
    t = table.assign(latent=table["latent"].astype(int), parameter=table["parameter"].astype(str))
    rho = pivot_matrix(t, "latent", "parameter", "rho", lats, pars)
    nmi = pivot_matrix(t, "latent", "parameter", "nmi", lats, pars)
    nmi_norm, use_log = color_norm(nmi, log=nmi_log)

    with style():
        cell = 0.42
        w = min(7.2, 2 * (cell * len(pars) + 1.2))
        fig = new_figure(figsize=(w, cell * len(lats) + 1.5), layout="constrained")
        ax_r, ax_n = fig.subplots(1, 2)
        specs = (
            (ax_r, rho, mcolors.Normalize(-1.0, 1.0), "RdBu_r", r"Spearman $\rho$", fmt_signed),
            (
                ax_n,
                nmi,
                nmi_norm,
                "viridis",
                "normalised MI" + (" (log scale)" if use_log else ""),
                fmt_nmi,
            ),
        )
        for ax, data, norm, cmap, label, fmt in specs:
            im = heatmap(ax, data, cmap=cmap, norm=norm, xlabels=[parameter_symbol(p) for p in pars],
                         ylabels=[_latent_name(k) for k in lats], bad="0.9", rotation=45)
            ax.set_title(label)
            if annotate:
                annotate_cells(ax, im, data, lambda i, j, v, fmt=fmt: fmt(v), fontsize=6)
            cb = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
            if isinstance(norm, mcolors.LogNorm):
                plain_log_ticks(cb.ax.yaxis)
        ax_r.set_ylabel("latent (ranked by KL)")
    return fig


# --------------------------------------------------------------------------- training
def fig_kl_spectrum(kl_sorted: Any, *, threshold: float = 0.01) -> Figure:
    """Mean KL per latent dimension [nats], ranked by decreasing KL (bars, log y).

    Values are sorted descending if they are not already. A dashed line marks
    ``threshold``; the number of latents above it ("informative") is written on the panel.
    Non-positive values are drawn at the bottom of the axis. One axis.
    """
    kl = np.asarray(kl_sorted, dtype=float).ravel()
    kl = kl[np.isfinite(kl)]
    kl = -np.sort(-kl)
    pos = kl[kl > 0]
    floor = min(float(pos.min()) if pos.size else threshold, threshold) / 3.0
    shown = np.where(kl > 0, kl, floor)
    n_inf = int(np.sum(kl > threshold))
    ranks = np.arange(1, kl.size + 1)
    with style():
        fig = new_figure(figsize=(3.5, 2.6), layout="constrained")
        ax = fig.add_subplot()
        colours = [PALETTE[0] if v > threshold else "0.7" for v in kl]
        ax.bar(ranks, shown, width=0.8, color=colours, bottom=0, log=True)
        ax.axhline(
            threshold, color=PALETTE[3], ls="--", lw=1.0, label=f"threshold {threshold:g} nats"
        )
        ax.set_ylim(floor, max(float(shown.max()) if shown.size else 1.0, threshold) * 2.0)
        ax.set_xlim(0.3, max(kl.size, 1) + 0.7)
        ax.set_xlabel("latent rank")
        ax.set_ylabel(r"mean KL per latent [nats]")
        ax.legend(loc="upper right")
        _text_box(ax, f"{n_inf} of {kl.size} latents informative", "lower right", 7.5)
        if kl.size > 16:
            step = int(math.ceil(kl.size / 12))
            ax.set_xticks(np.r_[1, np.arange(step, kl.size + 1, step)])
        else:
            ax.set_xticks(ranks)
    return fig


class MomentPanel(NamedTuple):
    """One moment panel: a latent (y) against a dipole or quadrupole component (x)."""

    moment: str  #: the component's name (``dipole_cos``, ...; the x label)
    x: Any  #: the component per target
    latent: Any  #: the latent per target
    latent_name: str  #: e.g. ``z2``
    rho: float  #: Spearman ρ of the two (the caller's)
    rho_count: float  #: Spearman ρ of the map count with the component (the caller's)


#: Axis labels of the moments (θ from east towards north, about the target).
MOMENT_SYMBOLS: dict[str, str] = {
    "dipole_cos": r"$\langle\cos\theta\rangle$",
    "dipole_sin": r"$\langle\sin\theta\rangle$",
    "quad_cos": r"$\langle\cos 2\theta\rangle$",
    "quad_sin": r"$\langle\sin 2\theta\rangle$",
}


def _moment_grid(fig: Any, panels: Sequence[MomentPanel], gridsize: int, prefix: str) -> None:
    """A 2×2 grid of log hexbins, latent against moment, one shared colourbar."""
    axes = fig.subplots(2, 2, squeeze=False).ravel()
    norm = mcolors.LogNorm(1.0, 10.0)
    hbs = []
    for ax, p in zip(axes, panels, strict=False):
        x, y = _finite_pairs(p.x, p.latent)
        hbs.append(_hexbin(ax, x, y, gridsize, norm))
        ax.set_xlabel(f"{prefix}{MOMENT_SYMBOLS.get(p.moment, p.moment)}", fontsize=7.5)
        ax.set_ylabel(p.latent_name, fontsize=7.5)
        ax.tick_params(labelsize=6.5)
        rho = fmt_signed(float(p.rho)) if np.isfinite(p.rho) else "n/a"
        cnt = fmt_signed(float(p.rho_count)) if np.isfinite(p.rho_count) else "n/a"
        ax.set_title(rf"$\rho$={rho}   $N_\mathrm{{map}}$: $\rho$={cnt}", fontsize=6.5, pad=2)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if hbs:
        _share_hex_clim(hbs)
        cb = fig.colorbar(hbs[0], ax=axes.tolist(), shrink=0.8, pad=0.02, aspect=30)
        cb.set_label("galaxies per hexagon", fontsize=7)


def fig_truth_recovery(
    latent: Any,
    truth: Any,
    rho: float,
    *,
    truth_label: str = r"$\log_{10}(1+\delta_s)$, true",
    latent_label: str = "z1",
    gridsize: int = 45,
    moments: Sequence[MomentPanel] = (),
    moments_note: str = "",
) -> Figure:
    """Mock universe: the top latent against the planted true local density.

    Log hexbin of (``truth``, ``latent``) (non-finite pairs dropped), running median with
    16/84th percentiles, and ``ρ = rho`` (the caller's Spearman ρ) printed on the panel.
    Two axes (panel + colourbar). With ``moments`` (up to four :class:`MomentPanel`: the
    planted dipole and quadrupole of the true field, each against the latent after z1
    that tracks it best), a 2×2 grid of them is added on the right, each titled with its
    ρ and the map count's ρ, ``moments_note`` (e.g. the acceptance) under its title:
    2 + 4 + 1 axes.
    """
    x, y = _finite_pairs(truth, latent)
    with style():
        fig = new_figure(figsize=(7.2 if moments else 3.5, 2.9 if not moments else 3.6),
                         layout="constrained")
        left, right = (fig.subfigures(1, 2, width_ratios=[1.0, 1.25]) if moments
                       else (fig, None))
        ax = left.add_subplot()
        hb = _hexbin(ax, x, y, gridsize, mcolors.LogNorm(1.0, 10.0))
        _share_hex_clim([hb])
        _median_curve(ax, x, y, 15, label=True)
        ax.set_xlabel(truth_label)
        ax.set_ylabel(latent_label)
        rho_s = fmt_signed(float(rho)) if np.isfinite(rho) else "n/a"
        _text_box(ax, rf"Spearman $\rho$ = {rho_s}" + f"\nN = {x.size}", "upper left", 7.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=7)
        cb = left.colorbar(hb, ax=ax, pad=0.02)
        cb.set_label("galaxies per hexagon")
        if right is not None:
            _moment_grid(right, moments, 30, "true field ")
            right.suptitle("planted anisotropy: field moments vs latents after z1"
                           + (f"\n{moments_note}" if moments_note else ""), fontsize=8)
    return fig


def fig_latents_vs_moments(table: pd.DataFrame, panels: Sequence[MomentPanel], *,
                           n_latents: int = 12, gridsize: int = 30) -> Figure:
    """The latents that follow the maps' own dipole and quadrupole moments (any source).

    Left: heat map of Spearman ρ (``table``: :func:`galforge.environment.anisotropy.
    latents_vs_moments`) of the top ``n_latents`` ranked latents and, in the last row, the
    map count against each moment (columns); the latent after z1 with the largest |ρ| of
    each column is outlined. Right: ``panels`` (:class:`MomentPanel`, up to four), that
    latent against the moment, log hexbins with one colourbar. 2 + 4 + 1 axes.
    """
    need = {"moment", "variable", "latent", "rho"}
    if not need <= set(table.columns):
        raise ValueError(f"table lacks columns {sorted(need - set(table.columns))}")
    moments = list(dict.fromkeys(str(m) for m in table["moment"]))
    k = min(int(n_latents), int(table["latent"].max()))
    rows = [*(f"z{r + 1}" for r in range(k)), "n_map"]
    rho = pivot_matrix(table.assign(variable=table["variable"].astype(str)), "variable",
                       "moment", "rho", rows, moments)
    with style():
        fig = new_figure(figsize=(7.2, max(3.6, 0.24 * len(rows) + 1.2)), layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.35])
        ax = left.add_subplot()
        im = heatmap(ax, rho, cmap="RdBu_r", norm=mcolors.Normalize(-1.0, 1.0),
                     xlabels=[MOMENT_SYMBOLS.get(m, m) for m in moments], ylabels=rows,
                     bad="0.9", rotation=45)
        annotate_cells(ax, im, rho, lambda i, j, v: fmt_signed(v), fontsize=6)
        later = np.abs(rho[1:k])
        for j in range(len(moments)):
            col = later[:, j]
            if col.size and np.isfinite(col).any():
                i = 1 + int(np.nanargmax(col))
                ax.add_patch(mpatches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                                lw=1.6, ec="k"))
        ax.axhline(k - 0.5, color="k", lw=0.8)
        ax.set_ylabel("latent (ranked by KL); map count")
        ax.set_title(r"Spearman $\rho$ with the maps' moments", fontsize=8)
        left.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
        _moment_grid(right, panels, gridsize, "map ")
        right.suptitle("best latent after z1 per moment", fontsize=8)
    return fig
