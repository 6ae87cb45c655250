"""``galforge environment-*`` subcommands (one per workflow rule).

Each handler builds the settings of the sections its step uses from the resolved
configuration and calls the step of :mod:`galforge.environment.steps`.
"""

from __future__ import annotations

import argparse
from typing import Any

from galforge.config import config_hash
from galforge.cosmology import Cosmology
from galforge.environment import steps
from galforge.environment.settings import EnvironmentSettings


def _cosmology(cfg: dict[str, Any]) -> Cosmology:
    return Cosmology(Om0=cfg["cosmology"]["Om0"])


def _settings(cfg: dict[str, Any]) -> EnvironmentSettings:
    """The study's typed settings (the resolved configuration's ``environment`` section)."""
    return EnvironmentSettings.from_dict(cfg["environment"])


def _mock(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.mock(args.catalog, args.truth, settings=_settings(cfg).mock, cosmology=_cosmology(cfg),
               seed=cfg["seed"], config_hash=config_hash(cfg))


def _fetch(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    catalog, timeout = s.catalog, s.archive.timeout
    steps.fetch(args.out, mpajhu_info=args.mpajhu_info, mpajhu_lgm=args.mpajhu_lgm,
                mpajhu_sfr=args.mpajhu_sfr, mpajhu_specsfr=args.mpajhu_specsfr,
                catalog=catalog, timeout=timeout)


def _catalog(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.catalog(args.raw, args.out, args.report, settings=_settings(cfg).catalog, cosmology=_cosmology(cfg))


def _maps(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.maps(args.catalog, args.maps, args.params, args.report, catalog=s.catalog,
               maps=s.maps, footprint=s.footprint, envparams=s.envparams,
               cosmology=_cosmology(cfg),
               progress=not args.no_progress)


def _train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.train(args.maps, args.model, args.metrics, args.summary, args.workdir,
                model_settings=s.model, train_settings=s.train, seed=cfg["seed"],
                val_fraction=s.split.val_fraction, run_config=cfg, progress=not args.no_progress)


def _latents(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.latents(args.model, args.maps, args.out, args.kl)


def _stats(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    settings = _settings(cfg).stats
    steps.stats(args.latents, args.envparams, args.catalog, env_table=args.env_table,
                env_table_md=args.env_table_md, prop_table=args.prop_table,
                prop_table_md=args.prop_table_md, moments_table=args.moments_table,
                moments_table_md=args.moments_table_md, truth_report=args.truth_report,
                settings=settings, seed=cfg["seed"], source=cfg["source"], truth=args.truth)


def _parity(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.parity(args.env_table, args.truth_report, moments_table=args.moments_table,
                 out_csv=args.out, out_md=args.out_md, out_html=args.out_html,
                 source=cfg["source"])


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.figures(
        catalog=args.catalog, maps=args.maps, model=args.model, latents=args.latents,
        kl=args.kl, envparams=args.envparams, env_table=args.env_table,
        prop_table=args.prop_table, moments_table=args.moments_table, metrics=args.metrics,
        truth=args.truth,
        outdir=args.outdir, cfg=cfg,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the environment study's subcommands to the ``galforge`` parser."""
    from galforge.commands import add_command
    from galforge.parity import PARITY_OUTPUTS

    add_command(sub, "environment-mock", _mock,
                "write the mock universe's SDSS-format galaxy table and its truth file", {
                    "catalog": "output FITS table (SDSS DR7 galaxy layout)",
                    "truth": "output truth table (Parquet)"})
    add_command(sub, "environment-fetch", _fetch,
                "fetch the SDSS DR7 galaxy table from the SDSS CAS and join MPA-JHU (network)", {
                    "out": "output FITS table",
                    **{f"mpajhu-{k}": f"input MPA-JHU {k} file"
                       for k in ("info", "lgm", "sfr", "specsfr")}})
    add_command(sub, "environment-catalog", _catalog,
                "read a galaxy table, check it and apply the volume limit", {
                    "raw": "input table (SDSS layout, or yours with a column map)",
                    "out": "output canonical catalog (Parquet)",
                    "report": "output JSON: how many galaxies each cut removed"})
    add_command(sub, "environment-maps", _maps,
                "neighbour-count maps and environment parameters of every target inside the "
                "survey", {
                    "catalog": "input canonical catalog (Parquet)",
                    "maps": "output maps (HDF5: maps, ids, ra, dec, z)",
                    "params": "output environment parameters (Parquet)",
                    "report": "output JSON: how many targets each edge cut removed"})
    add_command(sub, "environment-train", _train,
                "train the Poisson VAE on the maps (resumes from its checkpoint after a kill)", {
                    "maps": "input maps (HDF5)",
                    "model": "output final checkpoint (loadable for inference)",
                    "metrics": "output per-epoch metrics (CSV)",
                    "summary": "output JSON summary of the training",
                    "workdir": "folder for the rolling checkpoint (kept across reruns)"})
    add_command(sub, "environment-latents", _latents,
                "encode every target and rank the latents by mean KL", {
                    "model": "input checkpoint",
                    "maps": "input maps (HDF5)",
                    "out": "output latents (Parquet: id, z1..zK, logvar1..K)",
                    "kl": "output JSON: mean KL per ranked latent and the ranking"})
    add_command(sub, "environment-stats", _stats,
                "Spearman, shuffle-normalised MI and KS between latents and parameters", {
                    "latents": "input ranked latents (Parquet)",
                    "envparams": "input environment parameters (Parquet)",
                    "catalog": "input canonical catalog (Parquet)",
                    "truth?": "the mock's truth file (mock only)",
                    "env-table": "output CSV: latents x environment parameters",
                    "env-table-md": "the same as a Markdown table",
                    "prop-table": "output CSV: latents x galaxy properties",
                    "prop-table-md": "the same as a Markdown table",
                    "moments-table": "output CSV: every latent ranked by its rho with the maps' "
                                     "dipole and quadrupole moments",
                    "moments-table-md": "the same as a Markdown table",
                    "truth-report": "output JSON: planted-truth recovery (mock)"})
    add_command(sub, "environment-parity", _parity,
                "the paper's headline numbers beside ours (CSV, Markdown, HTML for the report)", {
                    "env-table": "input CSV: latents x environment parameters",
                    "truth-report": "input JSON: the stats step's truth-recovery report",
                    "moments-table": "input CSV: latents x the maps' moments",
                    **PARITY_OUTPUTS})
    add_command(sub, "environment-figures", _figures,
                "every figure of the study (PDF + PNG, provenance-stamped)", {
                    **{k: f"input {k}" for k in ("catalog", "maps", "model", "latents", "kl",
                                                 "envparams", "env-table", "prop-table",
                                                 "moments-table", "metrics")},
                    "truth?": "the mock's truth file: adds the truth figure",
                    "outdir": "folder of the figures"})
