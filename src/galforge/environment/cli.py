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
                prop_table_md=args.prop_table_md, truth_report=args.truth_report,
                settings=settings, seed=cfg["seed"], source=cfg["source"], truth=args.truth)


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.figures(
        catalog=args.catalog, maps=args.maps, model=args.model, latents=args.latents,
        kl=args.kl, envparams=args.envparams, env_table=args.env_table,
        prop_table=args.prop_table, metrics=args.metrics, truth=args.truth,
        outdir=args.outdir, cfg=cfg,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the environment study's subcommands to the ``galforge`` parser."""
    from galforge.commands import add_command

    p = add_command(sub, "environment-mock", _mock,
                    "write the mock universe's SDSS-format galaxy table and its truth file")
    p.add_argument("--catalog", required=True, help="output FITS table (SDSS DR7 galaxy layout)")
    p.add_argument("--truth", required=True, help="output truth table (Parquet)")

    p = add_command(sub, "environment-fetch", _fetch,
                    "fetch the SDSS DR7 galaxy table from the SDSS CAS and join MPA-JHU (network)")
    p.add_argument("--out", required=True, help="output FITS table")
    for name in ("info", "lgm", "sfr", "specsfr"):
        p.add_argument(f"--mpajhu-{name}", required=True, help=f"input MPA-JHU {name} file")

    p = add_command(sub, "environment-catalog", _catalog,
                    "read a galaxy table, check it and apply the volume limit")
    p.add_argument("--raw", required=True, help="input table (SDSS layout, or yours with a column map)")
    p.add_argument("--out", required=True, help="output canonical catalog (Parquet)")
    p.add_argument("--report", required=True, help="output JSON: how many galaxies each cut removed")

    p = add_command(sub, "environment-maps", _maps,
                    "neighbour-count maps and environment parameters of every target inside the survey")
    p.add_argument("--catalog", required=True, help="input canonical catalog (Parquet)")
    p.add_argument("--maps", required=True, help="output maps (HDF5: maps, ids, ra, dec, z)")
    p.add_argument("--params", required=True, help="output environment parameters (Parquet)")
    p.add_argument("--report", required=True, help="output JSON: how many targets each edge cut removed")

    p = add_command(sub, "environment-train", _train,
                    "train the Poisson VAE on the maps (resumes from its checkpoint after a kill)")
    p.add_argument("--maps", required=True, help="input maps (HDF5)")
    p.add_argument("--model", required=True, help="output final checkpoint (loadable for inference)")
    p.add_argument("--metrics", required=True, help="output per-epoch metrics (CSV)")
    p.add_argument("--summary", required=True, help="output JSON summary of the training")
    p.add_argument("--workdir", required=True, help="folder for the rolling checkpoint (kept across reruns)")

    p = add_command(sub, "environment-latents", _latents,
                    "encode every target and rank the latents by mean KL")
    p.add_argument("--model", required=True, help="input checkpoint")
    p.add_argument("--maps", required=True, help="input maps (HDF5)")
    p.add_argument("--out", required=True, help="output latents (Parquet: id, z1..zK, logvar1..K)")
    p.add_argument("--kl", required=True, help="output JSON: mean KL per ranked latent and the ranking")

    p = add_command(sub, "environment-stats", _stats,
                    "Spearman, shuffle-normalised MI and KS between latents and parameters")
    p.add_argument("--latents", required=True)
    p.add_argument("--envparams", required=True)
    p.add_argument("--catalog", required=True)
    p.add_argument("--truth", default=None, help="the mock's truth file (mock only)")
    p.add_argument("--env-table", required=True, help="output CSV: latents x environment parameters")
    p.add_argument("--env-table-md", required=True, help="the same as a Markdown table")
    p.add_argument("--prop-table", required=True, help="output CSV: latents x galaxy properties")
    p.add_argument("--prop-table-md", required=True, help="the same as a Markdown table")
    p.add_argument("--truth-report", required=True, help="output JSON: planted-truth recovery (mock)")

    p = add_command(sub, "environment-figures", _figures,
                    "every figure of the study (PDF + PNG, provenance-stamped)")
    for name in ("catalog", "maps", "model", "latents", "kl", "envparams", "env-table",
                 "prop-table", "metrics"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--truth", default=None, help="the mock's truth file: adds the truth figure")
    p.add_argument("--outdir", required=True, help="folder of the figures")
