"""Figures of the alignment study (PDF + PNG, stamped with the run's provenance).

* ``wgp``: w_g+(r_p) and w_gg(r_p) of the simulation (jackknife errors) beside the
  generated catalogs' w_g+ (the mean of their draws, the draws' scatter as the band);
* ``gan_losses``: the WGAN-GP's training curves (the shared loss-curve figure);
* ``so3_axes``: the SO(3) benchmark's canonical axes (each rotation's first column, its
  tilt about that axis discarded) of true and model samples on the sphere, one row per
  density (the seed's Fig 3), in an equal-area (Lambert azimuthal) projection with the
  lower hemisphere folded onto the upper (the disc of radius √2 is the equator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_figures", "FIGURES"]

#: Stems of the figures :func:`make_figures` writes.
FIGURES: tuple[str, ...] = ("wgp", "gan_losses", "so3_axes")


def _fig_wgp(wgp: Any, checks: dict[str, Any]) -> Any:
    from galforge.figures import new_figure
    from galforge.figures.helpers import plain_log_ticks

    fig = new_figure(figsize=(8.0, 3.4), layout="constrained")
    ax_gp, ax_gg = fig.subplots(1, 2)
    rp = wgp["rp"].to_numpy()
    ax_gp.errorbar(rp, rp * wgp["wgp"], rp * wgp["wgp_err"], fmt="o", color="k", ms=3,
                   label="simulation (jackknife)")
    for k, (name, c) in enumerate(checks.items()):
        m, sd = rp * np.array(c["wgp_model"]), rp * np.array(c["wgp_model_draw_scatter"])
        x = rp * (1.0 + 0.04 * (k + 1))
        ax_gp.plot(x, m, "s-", ms=3, label=f"{name.upper()} (mean of {c['wgp_model_draws']} "
                   f"draws; {100 * c['wgp_fraction_within_2sigma']:.0f} % within 2σ)")
        ax_gp.fill_between(x, m - sd, m + sd, alpha=0.2)
    ax_gp.axhline(0.0, color="0.6", lw=0.6)
    ax_gp.set(xscale="log", xlabel=r"$r_p$ [$h^{-1}$Mpc]",
              ylabel=r"$r_p\,w_{g+}$ [$h^{-2}$Mpc$^2$]")
    ax_gp.legend(fontsize=6)
    ax_gg.errorbar(rp, wgp["wgg"], wgp["wgg_err"], fmt="o", color="k", ms=3,
                   label="simulation (jackknife)")
    ax_gg.set(xscale="log", yscale="log", xlabel=r"$r_p$ [$h^{-1}$Mpc]",
              ylabel=r"$w_{gg}$ [$h^{-1}$Mpc]")
    ax_gg.legend(fontsize=6)
    for ax in (ax_gp, ax_gg):
        plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax_gg.yaxis)
    return fig


def _lambert(v: np.ndarray) -> np.ndarray:
    """Equal-area projection of unit vectors, the lower hemisphere folded up (axial)."""
    v = v * np.where(v[:, 2:3] < 0, -1.0, 1.0)
    r = np.sqrt(2.0 * (1.0 - np.clip(v[:, 2], -1, 1)))
    phi = np.arctan2(v[:, 1], v[:, 0])
    return np.column_stack([r * np.cos(phi), r * np.sin(phi)])


def _fig_so3(samples: dict[str, dict[str, np.ndarray]], report: dict[str, Any]) -> Any:
    from matplotlib.patches import Circle

    from galforge.figures import new_figure

    names = list(samples)
    fig = new_figure(figsize=(5.6, 2.7 * len(names)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), 2))
    for row, name in zip(axes, names, strict=True):
        r = report.get(name, {})
        for ax, key in zip(row, ("truth", "model"), strict=True):
            xy = _lambert(samples[name][key][:, :, 0])
            ax.scatter(xy[:, 0], xy[:, 1], s=2, color="k" if key == "truth" else "C0")
            ax.add_patch(Circle((0, 0), np.sqrt(2), fill=False, lw=0.6))
            ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xticks=[], yticks=[])
            title = f"{name}: {key}"
            if key == "model" and r:
                title += f" (MMD {r['mmd_ratio']:.2f}× floor)"
            ax.set_title(title, fontsize=8)
    return fig


def make_figures(*, wgp: str | Path, checks: str | Path, metrics: str | Path,
                 so3_report: str | Path, so3_samples: str | Path, outdir: str | Path,
                 cfg: dict[str, Any]) -> list[Path]:
    """Write every figure into ``outdir``; returns the paths written."""
    import h5py
    import pandas as pd

    from galforge.figures import save_figure, style
    from galforge.figures.training import fig_loss_curves
    from galforge.provenance import Provenance

    prov = Provenance.from_config(cfg, study="alignment")
    with h5py.File(so3_samples, "r") as f:
        samples = {k: {"model": f[k]["model"][()], "truth": f[k]["truth"][()]} for k in f}
    figs = {
        "wgp": _fig_wgp(pd.read_csv(wgp), json.loads(Path(checks).read_text())),
        "gan_losses": fig_loss_curves(pd.read_csv(metrics), title="graph WGAN-GP",
                                      per="batch"),
        "so3_axes": _fig_so3(samples, json.loads(Path(so3_report).read_text())),
    }
    written: list[Path] = []
    Path(outdir).mkdir(parents=True, exist_ok=True)
    with style():
        for stem, fig in figs.items():
            written.extend(save_figure(fig, Path(outdir) / stem, prov))
    return written
