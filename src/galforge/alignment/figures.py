"""Figures of the alignment study (PDF + PNG, stamped with the run's provenance).

* ``wgp``: w_g+(r_p) and w_gg(r_p) of the simulation (jackknife errors) beside the
  generated catalogs' w_g+ (the mean of their draws, the draws' scatter as the band);
* ``gan_losses``: the WGAN-GP's training curves (the shared loss-curve figure);
* ``diffusion_losses``: the SO(3) diffusion model's training curves (the shared figure);
* ``ed_ee``: the 3-D ED(r) and EE(r) correlations of the simulation (jackknife errors);
* ``misalignments``: the distributions of the misalignment angles (stellar major axis vs
  the DM halo's, the central's, the direction to the central, the tidal stretching axis
  at each smoothing scale), centrals and satellites apart, and split at the median log M*;
* ``orientation_sphere``: the satellites' major axes in the frame whose pole is the
  direction to their central (axial: the lower hemisphere folded up), simulation vs GAN vs
  diffusion, in the equal-area projection below (healpy is not installed here);
* ``axis_ratios``: the distributions of q = b/a and s = c/a, simulation vs GAN vs
  diffusion, with the two-sample KS p-values of the checks;
* ``truth_recovery`` (mock): the measured w_g+ against the planted expectation and every
  ``pass_<check>`` of ``tables/truth_recovery.json``;
* ``so3_axes``: the SO(3) benchmark's canonical axes (each rotation's first column, its
  tilt about that axis discarded) of true and model samples on the sphere, one row per
  density (the seed's Fig 3), in an equal-area (Lambert azimuthal) projection with the
  lower hemisphere folded onto the upper (the disc of radius √2 is the equator).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FIGURES", "TRUTH_FIGURE", "make_figures", "radial_frame_axes"]

#: Stems of the figures :func:`make_figures` writes (``truth_recovery`` on the mock only:
#: :data:`TRUTH_FIGURE`).
FIGURES: tuple[str, ...] = ("wgp", "gan_losses", "diffusion_losses", "so3_axes", "ed_ee",
                            "misalignments", "orientation_sphere", "axis_ratios")
TRUTH_FIGURE = "truth_recovery"
#: Colours of the catalogs in every comparison figure.
_COLOURS = {"simulation": "k", "gan": "C0", "diffusion": "C1"}


def _fig_wgp(wgp: Any, checks: dict[str, Any],
             samuroff: dict[str, np.ndarray] | None = None) -> Any:
    from galforge.figures import new_figure
    from galforge.figures.helpers import plain_log_ticks

    fig = new_figure(figsize=(8.0, 4.6), layout="constrained")
    ax_gp, ax_gg = fig.subplots(1, 2)
    rp = wgp["rp"].to_numpy()
    ax_gg.errorbar(rp, wgp["wgg"], wgp["wgg_err"], fmt="o", color="k", ms=3,
                   label="simulation (jackknife)")
    ax_gp.errorbar(rp, rp * wgp["wgp"], rp * wgp["wgp_err"], fmt="o", color="k", ms=3,
                   label="simulation (jackknife)")
    for k, (name, c) in enumerate(checks.items()):
        m, sd = rp * np.array(c["wgp_model"]), rp * np.array(c["wgp_model_draw_scatter"])
        x = rp * (1.0 + 0.04 * (k + 1))
        ax_gp.plot(x, m, "s-", ms=3, label=f"{name.upper()} (mean of {c['wgp_model_draws']} "
                   f"draws; {100 * c['wgp_fraction_within_2sigma']:.0f} % within 2σ)")
        ax_gp.fill_between(x, m - sd, m + sd, alpha=0.2)
    if samuroff is not None:
        from galforge.alignment.correlations import SAMUROFF_LABEL

        r = samuroff["rp"]
        ax_gp.errorbar(r, r * samuroff["wgp"], r * samuroff["wgp_err"], fmt="D", mfc="none",
                       color="crimson", ms=3, label=textwrap.fill(SAMUROFF_LABEL, 60))
        ax_gg.errorbar(r, samuroff["wgg"], samuroff["wgg_err"], fmt="D", mfc="none",
                       color="crimson", ms=3, label="Samuroff et al. (2021), TNG300-1, z = 0")
    ax_gp.axhline(0.0, color="0.6", lw=0.6)
    ax_gp.set(xscale="log", xlabel=r"$r_p$ [$h^{-1}$Mpc]",
              ylabel=r"$r_p\,w_{g+}$ [$h^{-2}$Mpc$^2$]")
    ax_gp.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax_gg.set(xscale="log", yscale="log", xlabel=r"$r_p$ [$h^{-1}$Mpc]",
              ylabel=r"$w_{gg}$ [$h^{-1}$Mpc]")
    ax_gg.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2))
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


def _fig_ed_ee(ed: Any) -> Any:
    from galforge.figures import new_figure
    from galforge.figures.helpers import plain_log_ticks

    fig = new_figure(figsize=(8.0, 3.2), layout="constrained")
    for ax, name, label in zip(fig.subplots(1, 2), ("ed", "ee"), ("ED", "EE"), strict=True):
        r = ed["r"].to_numpy()
        ax.errorbar(r, ed[name], ed[f"{name}_err"], fmt="o", color="k", ms=3,
                    label="simulation (jackknife)")
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set(xscale="log", xlabel=r"$r$ [$h^{-1}$Mpc]", ylabel=f"{label}$(r)$")
        plain_log_ticks(ax.xaxis)
        ax.legend(fontsize=6)
    return fig


#: The misalignment angles drawn (column, panel title); the tidal ones are added per scale.
_ANGLES = (("angle_dm", "stars vs own DM halo"), ("angle_central", "satellite vs its central"),
           ("angle_radial", "satellite vs direction to central"))


def _fig_misalignments(mis: Any, smoothing: list[float]) -> Any:
    from galforge.figures import new_figure

    panels = list(_ANGLES) + [(f"angle_tidal_{k}", f"vs tidal stretching axis "
                               f"({r:g} $h^{{-1}}$Mpc)") for k, r in enumerate(smoothing)]
    panels = [p for p in panels if p[0] in mis]
    ncol = 3
    nrow = -(-len(panels) // ncol)
    fig = new_figure(figsize=(9.0, 2.6 * nrow), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    cen = mis["central"].to_numpy().astype(bool)
    mass = mis["log_mstar"].to_numpy()
    split = float(np.nanmedian(mass))
    bins = np.linspace(0.0, 90.0, 10)
    for ax, (col, title) in zip(axes, panels, strict=False):
        ang = mis[col].to_numpy()
        for who, sel, ls in (("centrals", cen, "-"), ("satellites", ~cen, "--")):
            for lo, c in ((True, "C0"), (False, "C3")):
                m = sel & ((mass < split) if lo else (mass >= split)) & np.isfinite(ang)
                if m.sum() < 2:
                    continue
                ax.hist(ang[m], bins=bins, density=True, histtype="step", ls=ls, color=c,
                        label=f"{who}, log M* {'<' if lo else '≥'} {split:.2f} ({int(m.sum())})")
        t = np.linspace(0.0, 90.0, 91)  # two independent isotropic axes: density sin(angle)
        ax.plot(t, np.sin(np.radians(t)) * np.pi / 180.0, color="0.6", lw=0.8, ls=":",
                label="isotropic")
        ax.set(xlim=(0, 90), xlabel="angle [deg]", ylabel="density", title=title)
        ax.title.set_fontsize(8)
        ax.legend(fontsize=5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def radial_frame_axes(major: np.ndarray, radial: np.ndarray) -> np.ndarray:
    """``major`` axes in the frame whose third axis is ``radial`` (unit, per row) and whose
    first axis is the box's x (or y, if x is nearly radial) made perpendicular to it."""
    d = radial / np.linalg.norm(radial, axis=1, keepdims=True)
    ref = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0, 0]], [[0.0, 1, 0]])
    u = ref - np.einsum("ni,ni->n", ref, d)[:, None] * d
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = np.cross(d, u)
    return np.stack([np.einsum("ni,ni->n", major, b) for b in (u, w, d)], axis=1)


def _satellite_radial(cols: dict[str, np.ndarray], box: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the satellites whose central is in the catalog, and their direction to it."""
    cen_row = {int(g): r for r, g in enumerate(cols["group"]) if cols["central"][r]}
    row = np.array([cen_row.get(int(g), -1) for g in cols["group"]])
    sat = np.flatnonzero(~cols["central"].astype(bool) & (row >= 0))
    d = cols["pos"][row[sat]] - cols["pos"][sat]
    d -= box * np.rint(d / box)
    return sat, d


def _fig_sphere(cols: dict[str, np.ndarray], attrs: dict[str, Any],
                gen: dict[str, dict[str, Any]]) -> Any:
    from matplotlib.patches import Circle

    from galforge.figures import new_figure

    sat, d = _satellite_radial(cols, float(attrs["box"]))
    majors = {"simulation": cols[f"star_axes_{attrs['shape_method']}"][:, :, 0]}
    row = {int(s): i for i, s in enumerate(cols["subhalo_id"])}
    for name, g in gen.items():
        m = np.full((len(cols["subhalo_id"]), 3), np.nan)
        m[[row[int(s)] for s in g["subhalo_id"]]] = g["frame"][:, :, 0]
        majors[name] = m
    fig = new_figure(figsize=(3.0 * len(majors), 3.2), layout="constrained")
    for ax, (name, major) in zip(np.atleast_1d(fig.subplots(1, len(majors))), majors.items(),
                                 strict=True):
        v = major[sat]
        ok = np.isfinite(v).all(axis=1)
        xy = _lambert(radial_frame_axes(v[ok], d[ok]))
        h, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=24, range=[[-1.45, 1.45]] * 2)
        ax.imshow(h.T, origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]), cmap="Greys")
        ax.add_patch(Circle((0, 0), np.sqrt(2), fill=False, lw=0.6))
        ax.set(aspect="equal", xticks=[], yticks=[])
        ax.set_title(f"{name} ({int(ok.sum())} satellites)", fontsize=8)
    return fig


def _fig_axis_ratios(cols: dict[str, np.ndarray], attrs: dict[str, Any],
                     gen: dict[str, dict[str, Any]], checks: dict[str, Any]) -> Any:
    from galforge.figures import new_figure

    m = attrs["shape_method"]
    fig = new_figure(figsize=(8.0, 3.2), layout="constrained")
    bins = np.linspace(0.0, 1.0, 21)
    for ax, key, label in zip(fig.subplots(1, 2), ("q", "s"), ("q = b/a", "s = c/a"),
                              strict=True):
        sim = cols[f"star_{key}_{m}"]
        ax.hist(sim[np.isfinite(sim)], bins=bins, density=True, histtype="step",
                color=_COLOURS["simulation"], label="simulation")
        for name, g in gen.items():
            p = checks.get(name, {}).get(f"ks_p_{key}")
            v = np.asarray(g[key], float)
            ax.hist(v[np.isfinite(v)], bins=bins, density=True, histtype="step",
                    color=_COLOURS.get(name, None),
                    label=name.upper() + (f" (KS p = {p:.2g})" if p is not None else ""))
        ax.set(xlabel=label, ylabel="density")
        ax.legend(fontsize=6)
    return fig


def _fig_truth(truth: dict[str, Any]) -> Any:
    from galforge.figures import new_figure
    from galforge.figures.helpers import plain_log_ticks

    fig = new_figure(figsize=(8.0, 3.4), layout="constrained")
    ax, ax_p = fig.subplots(1, 2)
    w = truth["wgp_mock"]
    rp = np.array(w["wgp_rp"])
    exp, sem = np.array(w["wgp_expected"]), np.array(w["wgp_expected_sem"])
    ax.fill_between(rp, rp * (exp - sem), rp * (exp + sem), color="C2", alpha=0.3,
                    label="planted expectation (± its s.e.m.)")
    ax.plot(rp, rp * exp, color="C2")
    ax.errorbar(rp, rp * np.array(w["wgp_measured"]), rp * np.array(w["wgp_jackknife_err"]),
                fmt="o", color="k", ms=3, label=f"measured (jackknife); "
                f"{100 * w['wgp_fraction_within_1sigma']:.0f} % of bins within 1σ")
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set(xscale="log", xlabel=r"$r_p$ [$h^{-1}$Mpc]", ylabel=r"$r_p\,w_{g+}$ [$h^{-2}$Mpc$^2$]")
    plain_log_ticks(ax.xaxis)
    ax.legend(fontsize=6)
    checks = {k[5:]: bool(v) for k, v in truth.items() if k.startswith("pass_")}
    y = np.arange(len(checks))
    ax_p.barh(y, np.ones(len(checks)), color=["C2" if v else "C3" for v in checks.values()])
    for k, (name, v) in enumerate(checks.items()):
        ax_p.text(0.02, k, f"{name}: {'pass' if v else 'FAIL'}", va="center", fontsize=6,
                  color="w")
    ax_p.set(yticks=[], xticks=[], xlim=(0, 1), ylim=(-0.6, len(checks) - 0.4),
             title="planted-truth and model checks")
    ax_p.title.set_fontsize(9)
    ax_p.invert_yaxis()
    return fig


def make_figures(*, wgp: str | Path, checks: str | Path, metrics: str | Path,
                 diffusion_metrics: str | Path, so3_report: str | Path,
                 so3_samples: str | Path, ed_ee: str | Path,
                 misalignments: str | Path, catalog: str | Path,
                 generated: dict[str, str | Path], outdir: str | Path, cfg: dict[str, Any],
                 samuroff: str | Path | None = None,
                 truth: str | Path | None = None) -> list[Path]:
    """Write every figure into ``outdir`` (``truth_recovery`` when ``truth`` is given; the
    Samuroff et al. measurement in the w_g+ figure when ``samuroff`` is); returns the paths
    written."""
    import h5py
    import pandas as pd

    from galforge.alignment.catalog import read_catalog
    from galforge.alignment.correlations import read_samuroff
    from galforge.alignment.training import read_generated
    from galforge.figures import save_figure, style
    from galforge.figures.training import fig_loss_curves
    from galforge.provenance import Provenance

    prov = Provenance.from_config(cfg, study="alignment")
    with h5py.File(so3_samples, "r") as f:
        samples = {k: {"model": f[k]["model"][()], "truth": f[k]["truth"][()]} for k in f}
    cols, attrs = read_catalog(catalog)
    gen = {name: read_generated(path) for name, path in generated.items()}
    model_checks = json.loads(Path(checks).read_text())
    ref = read_samuroff(samuroff) if samuroff else None
    figs = {
        "wgp": _fig_wgp(pd.read_csv(wgp), model_checks, ref),
        "gan_losses": fig_loss_curves(pd.read_csv(metrics), title="graph WGAN-GP",
                                      per="batch"),
        "diffusion_losses": fig_loss_curves(pd.read_csv(diffusion_metrics),
                                            title="GNN-conditioned SO(3) diffusion", per="batch"),
        "so3_axes": _fig_so3(samples, json.loads(Path(so3_report).read_text())),
        "ed_ee": _fig_ed_ee(pd.read_csv(ed_ee)),
        "misalignments": _fig_misalignments(pd.read_csv(misalignments),
                                            list(attrs.get("smoothing", []))),
        "orientation_sphere": _fig_sphere(cols, attrs, gen),
        "axis_ratios": _fig_axis_ratios(cols, attrs, gen, model_checks),
    }
    if truth is not None:
        figs[TRUTH_FIGURE] = _fig_truth(json.loads(Path(truth).read_text()))
    # a Wasserstein estimate plus penalties, not a likelihood: no nats
    figs["gan_losses"].axes[0].set_ylabel("critic + generator loss per batch")
    figs["diffusion_losses"].axes[0].set_ylabel("|ε|-weighted score-matching loss per batch")
    written: list[Path] = []
    Path(outdir).mkdir(parents=True, exist_ok=True)
    with style():
        for stem, fig in figs.items():
            written.extend(save_figure(fig, Path(outdir) / stem, prov))
    return written
