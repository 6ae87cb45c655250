"""The environment study's paper-vs-ours table (``tables/parity.csv`` / ``.md`` / ``.html``).

Gim, Moon & Yoon find that the first latent of their VAE (latents ranked by mean KL)
tracks the number density around the galaxy. Ours, from this run's tables: the
|Spearman ρ| of the top-ranked latent z1 with each neighbour-count and density parameter
of the maps step (``tables/latents_vs_environment.csv``), which latent tracks number
density most closely, and, on the mock, z1's |ρ| with the planted true density
(``tables/truth_recovery.json``). The paper's second finding, that the latents after the
first represent anisotropic and asymmetric structures oriented along different
directions, beside which latent after z1 follows each of the maps' own dipole and
quadrupole moments, and how closely (``tables/latents_vs_moments.csv``), with the map
count's |ρ| for contrast; on the mock, the latents' |ρ| with the planted moments of the
true field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from galforge.environment.analysis import (
    ANISOTROPY_MIN_ABS_RHO,
    COUNT_MAX_ABS_RHO,
    TOP_LATENT_MIN_ABS_RHO,
)
from galforge.environment.anisotropy import MOMENT_LABELS, moment_summary, read_moment_table
from galforge.io import InputError
from galforge.parity import PaperValue, parity_frame, parity_row, read_report

__all__ = ["DENSITY_PARAMETERS", "PAPER", "TITLE", "parity_from_files", "parity_table"]

_REF = "Gim, Moon & Yoon"
#: The paper's headline result, with where it is stated (the one place it lives).
PAPER: dict[str, PaperValue] = {
    "top_latent": PaperValue(
        "Latent that tracks number density most closely", "z1, the first latent",
        f"{_REF}, Figs 3 and 6 (latents vs environment parameters)"),
    "rho_top_density": PaperValue(
        "|Spearman ρ| of z1 with number density",
        "strong: z1 tracks number density (qualitative)",
        f"{_REF}, Figs 3 and 6 (latents vs environment parameters)"),
    "rho_top_truth": PaperValue(
        "|Spearman ρ| of z1 with the true density (map scale)",
        "n/a: no true density on the sky", "(planted truth: the mock only)"),
    "anisotropy": PaperValue(
        "Latents after z1 that follow the maps' dipole and quadrupole moments (|Spearman ρ|)",
        "other latents represent various anisotropic and asymmetric structures oriented "
        "along different directions (qualitative)",
        f"{_REF}, their discussion of the latents after the first"),
    "anisotropy_truth": PaperValue(
        "Planted dipole/quadrupole of the true field: best latent after z1 (|ρ|)",
        "n/a: no true field on the sky", "(planted truth: the mock only)"),
}

#: Neighbour-count and density parameters of the maps step (``galforge.environment.envparams``):
#: neighbours in the map and within 5, 2, 1 h⁻¹ Mpc, log Σ5, nearest-neighbour distance.
DENSITY_PARAMETERS: tuple[str, ...] = ("n_map", "n_r5", "n_r2", "n_r1", "log_sigma_5", "d_nn")

TITLE = "Environment study: paper (Gim, Moon & Yoon) vs ours"


def _abs_rho(env: pd.DataFrame, latent: str, parameter: str) -> float:
    rows = env[(env["latent_name"] == latent) & (env["parameter"] == parameter)]
    return float(rows["rho"].abs().iloc[0]) if len(rows) else float("nan")


def _moment_rows(moments: pd.DataFrame, truth: Mapping[str, Any] | None, source: str
                 ) -> list[dict[str, str]]:
    best = moment_summary(moments)
    if not best:
        raise InputError("latents-vs-moments table has no latent after z1")
    ours = "; ".join(f"{MOMENT_LABELS[m]}: {b['latent']} ({abs(b['rho']):.3f})"
                     for m, b in best.items())
    count = max(abs(b["rho_n_map"]) for b in best.values())
    rows = [parity_row(
        PAPER["anisotropy"], ours, source=source,
        note="the maps' own moments about the target (counts in the inscribed disc, "
             "normalised by their total); for each, the latent after z1 with the largest "
             f"|ρ|; the map count n_map reaches |ρ| ≤ {count:.3f} with any of them")]
    aniso = (truth or {}).get("anisotropy")
    if aniso:
        comps = aniso["components"]
        flag = truth.get("pass_anisotropy")  # type: ignore[union-attr]
        rows.append(parity_row(
            PAPER["anisotropy_truth"],
            "; ".join(f"{MOMENT_LABELS[m]}: {c['best_latent']} ({abs(c['rho_best_latent']):.3f})"
                      for m, c in comps.items()),
            source=source,
            note="the mock's field moments about each target (true density over the map's "
                 "disc and velocity window); n_map |ρ| "
                 + ", ".join(f"{abs(c['rho_n_map']):.3f}" for c in comps.values())
                 + f"; acceptance: latents after z1 |ρ| ≥ {ANISOTROPY_MIN_ABS_RHO} with both "
                 f"dipole components, n_map |ρ| < {COUNT_MAX_ABS_RHO} with all: "
                 + ("pass" if flag else "fail")))
    return rows


def parity_table(env: pd.DataFrame, truth: Mapping[str, Any] | None,
                 moments: pd.DataFrame | None = None, *, source: str) -> pd.DataFrame:
    """The paper's headline beside ours.

    ``env``: the latents-vs-environment table of the stats step (``latent_name``,
    ``parameter``, ``rho``); ``truth``: its truth-recovery report (the mock's
    ``top_latent_abs_rho_density_map`` and ``anisotropy`` rows are added when present);
    ``moments``: its latents-vs-moments table (adds the row of the paper's second finding);
    ``source``: ``mock`` or ``archive``.
    """
    missing = {"latent_name", "parameter", "rho"} - set(env.columns)
    if missing:
        raise InputError(f"latents-vs-environment table lacks {sorted(missing)}")
    dens = env[env["parameter"].isin(list(DENSITY_PARAMETERS))].dropna(subset=["rho"])
    if not (dens["latent_name"] == "z1").any():
        raise InputError("latents-vs-environment table has no density parameter of z1")
    best = dens.loc[dens["rho"].abs().idxmax()]
    per_param = [(p, r) for p in DENSITY_PARAMETERS
                 if p in set(dens["parameter"]) and (r := _abs_rho(dens, "z1", p)) == r]
    per_param.sort(key=lambda t: -t[1])
    top_param, top_rho = per_param[0]
    rows = [
        parity_row(PAPER["top_latent"], f"{best['latent_name']} (|ρ| = {abs(best['rho']):.3f}"
                   f" with {best['parameter']})", source=source,
                   note="latents ranked by mean KL (z1 first); the largest |ρ| of "
                        f"z1..z{dens['latent_name'].str[1:].astype(int).max()} with "
                        f"{', '.join(p for p, _ in per_param)}"),
        parity_row(PAPER["rho_top_density"], f"{top_rho:.3f} ({top_param})", source=source,
                   note="z1 with " + "; ".join(f"{p} {r:.3f}" for p, r in per_param)),
    ]
    if truth is not None and "top_latent_abs_rho_density_map" in truth:
        flag = truth.get("pass_top_latent")
        rows.append(parity_row(
            PAPER["rho_top_truth"], float(truth["top_latent_abs_rho_density_map"]),
            source=source,
            note="the mock's planted density smoothed to the map's scale"
                 + ("" if flag is None else f"; acceptance |ρ| ≥ {TOP_LATENT_MIN_ABS_RHO}: {'pass' if flag else 'fail'}"),
        ))
    if moments is not None:
        rows += _moment_rows(moments, truth, source)
    return parity_frame(rows)


def parity_from_files(env_table: str | os.PathLike, truth_report: str | os.PathLike,
                      moments_table: str | os.PathLike, *, source: str) -> pd.DataFrame:
    """:func:`parity_table` of the stats step's files (``tables/latents_vs_environment.csv``,
    ``tables/truth_recovery.json``, ``tables/latents_vs_moments.csv``)."""
    try:
        env = pd.read_csv(env_table)
    except (OSError, ValueError) as exc:
        raise InputError(f"{env_table}: not a latents-vs-environment table ({exc})") from None
    return parity_table(env, read_report(truth_report), read_moment_table(moments_table),
                        source=source)
