"""Every figure of the environment study, from the workflow's files (paper Figs 1, 3-6 and more).

Each figure is written as PDF + PNG and stamped with the run, the data source,
the configuration hash and the code version (:func:`galforge.figures.save_figure`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.cosmology import Cosmology
from galforge.provenance import Provenance

log = logging.getLogger("galforge.environment")

#: Stems of the figures :func:`make_figures` writes (``<stem>.pdf`` and ``<stem>.png``).
FIGURES: tuple[str, ...] = (
    "fig1_target_example",
    "fig3_latents_vs_environment",
    "fig4_latents_vs_properties",
    "fig5_latent_traversals",
    "fig6_correlation_heatmaps",
    "loss_curves",
    "kl_spectrum",
    "latents_vs_moments",
)
#: The mock-only figure of the planted truth.
TRUTH_FIGURE = "truth_recovery"
#: Ranked latents shown in Figs 3-5.
N_SHOWN = 4
#: Latent values of the decoder traversals (prior standard deviations).
TRAVERSAL_VALUES = np.linspace(-2.5, 2.5, 7)


def example_target(envparams: pd.DataFrame, quantile: float = 0.9) -> int:
    """The id of the target whose map total sits at the ``quantile`` of all (a rich environment)."""
    counts = envparams["n_map"].to_numpy()
    goal = np.quantile(counts, quantile)
    return int(envparams["id"].to_numpy()[np.argmin(np.abs(counts - goal))])


def make_figures(
    *, catalog: str, maps: str, model: str, latents: str, kl: str, envparams: str,
    env_table: str, prop_table: str, moments_table: str, metrics: str, outdir: str,
    cfg: dict[str, Any], truth: str | None = None,
) -> list[Path]:
    """Write every figure into ``outdir``; returns the paths written."""
    import torch

    from galforge.environment import figures as F
    from galforge.environment.analysis import anisotropy_recovery, read_latent_kl, read_latents
    from galforge.environment.anisotropy import MOMENT_NAMES, moment_summary, read_moment_table
    from galforge.environment.catalog import read_catalog
    from galforge.environment.envparams import read_envparams
    from galforge.environment.maps import read_maps
    from galforge.environment.model import traverse
    from galforge.figures import save_figure
    from galforge.figures.training import fig_loss_curves
    from galforge.train import load_for_inference

    prov = Provenance.from_config(cfg, study="environment")
    out = Path(outdir)
    written: list[Path] = []

    def save(fig: Any, stem: str) -> None:
        written.extend(save_figure(fig, out / stem, prov))

    maps_cfg = cfg["environment"]["maps"]
    size, dv = float(maps_cfg.get("size_mpc", 10.0)), float(maps_cfg.get("dv_kms", 1000.0))
    cat = read_catalog(catalog)
    env = read_envparams(envparams)
    lat = read_latents(latents)
    kl_ranked, order = read_latent_kl(kl)
    tables = pd.concat([pd.read_csv(env_table), pd.read_csv(prop_table)], ignore_index=True)
    net, _ = load_for_inference(model)

    # Fig 1: one target's sky, its map and the reconstruction
    tid = example_target(env)
    the_map = read_maps(maps, ids=[tid])["maps"][0].astype(np.float32)
    with torch.no_grad():
        recon = net(torch.from_numpy(the_map)[None, None])[0][0, 0].numpy()
    t = cat.loc[cat["id"] == tid].iloc[0]
    dist = float(Cosmology(cfg["cosmology"]["Om0"]).comoving_distance(t["z"]))
    radius = np.degrees(1.5 * size / np.sqrt(2) / dist)
    cosd = np.cos(np.radians(t["dec"]))
    near = (np.abs(cat["dec"] - t["dec"]) < radius) & (
        np.abs(((cat["ra"] - t["ra"] + 180) % 360) - 180) * cosd < radius
    )
    sky = cat.loc[near]
    save(F.fig_target_example(
        sky["ra"].to_numpy(), sky["dec"].to_numpy(), sky["z"].to_numpy(),
        float(t["ra"]), float(t["dec"]), float(t["z"]), the_map, recon, size_mpc=size, dv_kms=dv,
        square_corners_radec=F.square_outline_radec(float(t["ra"]), float(t["dec"]), dist, size),
        target_label=f"target {tid}",
    ), "fig1_target_example")

    # Figs 3 and 4: the top latents against environment parameters and galaxy properties
    k = min(N_SHOWN, sum(1 for c in lat.columns if c.startswith("z")))
    zcols = [f"z{r + 1}" for r in range(k)]
    joined = lat[["id", *zcols]].merge(env, on="id").merge(cat, on="id", how="left")
    env_cols = [c for c in ("log_sigma_5", "d_nn", "n_r2", "n_map") if c in joined]
    prop_cols = [c for c in ("log_mstar", "log_ssfr", "g_r", "Mr") if c in joined and joined[c].notna().any()]
    save(F.fig_latents_vs_parameters(joined[zcols].to_numpy(), joined, env_cols, tables),
         "fig3_latents_vs_environment")
    save(F.fig_latents_vs_parameters(joined[zcols].to_numpy(), joined, prop_cols or env_cols[:1], tables),
         "fig4_latents_vs_properties")

    # Fig 5: what each top latent encodes
    trav = np.stack([traverse(net, order[r], TRAVERSAL_VALUES) for r in range(k)])
    save(F.fig_latent_traversals(trav, TRAVERSAL_VALUES, kl_ranked[:k], size_mpc=size),
         "fig5_latent_traversals")

    # Fig 6: heat maps of rho and normalised MI
    save(F.fig_correlation_heatmaps(tables), "fig6_correlation_heatmaps")
    save(fig_loss_curves(pd.read_csv(metrics)), "loss_curves")
    save(F.fig_kl_spectrum(kl_ranked), "kl_spectrum")

    # the latents that follow the maps' own dipole and quadrupole moments
    moments = read_moment_table(moments_table)
    all_z = [c for c in lat.columns if c.startswith("z") and c[1:].isdigit()]
    with_moments = lat[["id", *all_z]].merge(env[["id", "n_map", *MOMENT_NAMES]], on="id")
    panels = [F.MomentPanel(m, with_moments[m].to_numpy(), with_moments[b["latent"]].to_numpy(),
                            b["latent"], b["rho"], b["rho_n_map"])
              for m, b in moment_summary(moments).items()]
    save(F.fig_latents_vs_moments(moments, panels), "latents_vs_moments")

    if truth is not None:
        from galforge.stats import spearman

        tr = pd.read_parquet(truth).rename(columns={"objID": "id"})
        fields = [f"field_{m}" for m in MOMENT_NAMES]
        m = with_moments.merge(tr[["id", "log1p_delta_map", *fields]], on="id")
        rho = spearman(m["z1"], m["log1p_delta_map"])[0]
        aniso = anisotropy_recovery(m)
        comps = aniso["components"]
        truth_panels = [F.MomentPanel(k, m[f"field_{k}"].to_numpy(),
                                      m[c["best_latent"]].to_numpy(), c["best_latent"],
                                      c["rho_best_latent"], c["rho_n_map"])
                        for k, c in comps.items() if c["best_latent"]]
        save(F.fig_truth_recovery(m["z1"].to_numpy(), m["log1p_delta_map"].to_numpy(), rho,
                                  truth_label="log1p_delta_map", moments=truth_panels,
                                  moments_note=(
                                      f"acceptance: dipole |ρ| ≥ {aniso['min_abs_rho_latent']},"
                                      f" N_map |ρ| < {aniso['max_abs_rho_count']} for all: "
                                      + ("pass" if aniso["pass"] else "fail"))),
             TRUTH_FIGURE)
    log.info("wrote %d figure files to %s", len(written), out)
    return written
