"""``galforge environment-*`` subcommands (one per workflow rule)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from galforge.config import config_hash
from galforge.cosmology import Cosmology
from galforge.io import atomic_path, write_json

log = logging.getLogger("galforge.environment")


def _cosmology(cfg: dict[str, Any]) -> Cosmology:
    return Cosmology(Om0=cfg["cosmology"]["Om0"])


def _mock(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.mock.environment import MockEnvironmentSettings, write_environment_mock

    settings = MockEnvironmentSettings.from_dict(cfg["environment"]["mock"])
    summary = write_environment_mock(
        settings, _cosmology(cfg), seed=cfg["seed"], catalog_path=args.catalog,
        truth_path=args.truth, config_hash=config_hash(cfg),
    )
    log.info("mock universe written: %s", summary)


def _fetch(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    """The DR7 galaxy table from the CAS, joined with the MPA-JHU stellar masses and SFRs."""
    from astropy.table import Table

    from galforge.archives.sdss import (
        fetch_dr7_galaxies,
        fetched_range_matches,
        join_properties,
        read_mpajhu,
        write_galaxy_table,
    )

    cat = cfg["environment"]["catalog"]
    out = Path(args.out)
    raw = out.with_name(out.stem + ".cas.fits")
    # the CAS query is the slow part: keep its answer across reruns of the same range
    if not fetched_range_matches(raw, zmin=cat["zmin"], zmax=cat["zmax"]):
        fetch_dr7_galaxies(
            raw, zmin=cat["zmin"], zmax=cat["zmax"],
            timeout=cfg["environment"]["archive"]["timeout"],
        )
    mpajhu = read_mpajhu(args.mpajhu_info, lgm_tot=args.mpajhu_lgm,
                         sfr_tot=args.mpajhu_sfr, specsfr_tot=args.mpajhu_specsfr)
    fetched = Table.read(raw, hdu=1)
    keep = ("SDSSDR", "ZLO", "ZHI", "RLIM", "NSLICES", "SQLURL")
    header = {k: (fetched.meta[k], "") for k in keep if k in fetched.meta}
    write_galaxy_table(join_properties(fetched, mpajhu), out, header=header)


def _fetch_mpajhu(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    """Download the MPA-JHU DR7 value-added catalogue files through the download layer."""
    from galforge.archives.download import DownloadRequest, download_many
    from galforge.archives.sdss import MPAJHU_DR7_URLS

    dests = {"info": args.info, "lgm_tot": args.lgm, "sfr_tot": args.sfr,
             "specsfr_tot": args.specsfr}
    download_many([DownloadRequest(url=MPAJHU_DR7_URLS[k], dest=Path(d)) for k, d in dests.items()],
                  max_workers=2, progress=not args.no_progress)


def _catalog(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.environment.catalog import CatalogSettings, build_catalog, write_catalog

    settings = CatalogSettings.from_dict(cfg["environment"]["catalog"])
    df, report = build_catalog(args.raw, settings, _cosmology(cfg))
    write_catalog(df, args.out)
    write_json(report, args.report)


def _maps(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    import pandas as pd

    from galforge.environment.envparams import EnvParamsSettings, compute_envparams
    from galforge.environment.footprint import FootprintSettings, build_footprint, select_targets
    from galforge.environment.maps import MapSettings, write_maps

    env = cfg["environment"]
    cosmo = _cosmology(cfg)
    map_settings = MapSettings.from_dict(env["maps"])
    cat = pd.read_parquet(args.catalog)
    ra, dec, z, ids = (cat[c].to_numpy() for c in ("ra", "dec", "z", "id"))
    footprint = build_footprint(FootprintSettings.from_dict(env["footprint"]), ra, dec)
    targets, report = select_targets(
        ra, dec, z, footprint, map_settings, cosmo,
        zmin=env["catalog"]["zmin"], zmax=env["catalog"]["zmax"],
    )
    progress = not args.no_progress
    summary = write_maps(args.maps, ra, dec, z, ids, targets, map_settings, cosmo, progress=progress)
    params = compute_envparams(
        ra, dec, z, ids, targets, EnvParamsSettings.from_dict(env["envparams"]), map_settings, cosmo,
        progress=progress,
    )
    with atomic_path(args.params) as tmp:
        params.to_parquet(tmp, index=False)
    # the report holds no timings or paths, so reruns give identical files
    write_json({**report, "n_neighbours": summary["n_neighbours"]}, args.report)
    log.info("maps: %s", report)


def _train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.environment.training import train_environment_model

    env = cfg["environment"]
    summary = train_environment_model(
        args.maps, env["model"], env["train"], seed=cfg["seed"],
        val_fraction=env["split"]["val_fraction"], out_model=args.model,
        out_metrics=args.metrics, workroot=args.workdir, progress=not args.no_progress,
        run_config=cfg,
    )
    write_json(summary, args.summary)


def _latents(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.environment.training import ranked_latents

    table, kl, order = ranked_latents(args.model, args.maps)
    with atomic_path(args.out) as tmp:
        table.to_parquet(tmp, index=False)
    write_json({"kl_ranked": kl.tolist(), "order": order.tolist()}, args.kl)
    log.info("latents: %d targets, top mean KL %s", len(table), [round(float(k), 3) for k in kl[:5]])


def _stats(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    import pandas as pd

    from galforge.environment.analysis import (
        StatsSettings,
        join_tables,
        statistics_tables,
        truth_recovery,
    )
    from galforge.stats import write_tables

    settings = StatsSettings.from_dict(cfg["environment"]["stats"])
    joined = join_tables(pd.read_parquet(args.latents), pd.read_parquet(args.envparams),
                         pd.read_parquet(args.catalog))
    env, gal = statistics_tables(joined, settings, seed=cfg["seed"])
    write_tables(env, args.env_table, args.env_table_md)
    write_tables(gal, args.prop_table, args.prop_table_md)
    recovery: dict[str, Any] = {"source": cfg["source"]}
    if args.truth:
        recovery.update(truth_recovery(joined, pd.read_parquet(args.truth), settings.n_latents))
        log.info("planted truth: |rho(z1, density)| = %.3f; signs recovered: %s",
                 recovery["top_latent_abs_rho_density_map"], recovery["all_signs_recovered"])
    write_json(recovery, args.truth_report)


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.environment.figure_set import make_figures

    make_figures(
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

    p = add_command(sub, "environment-fetch-mpajhu", _fetch_mpajhu,
                    "download the MPA-JHU DR7 stellar-mass and SFR files (network)")
    for name in ("info", "lgm", "sfr", "specsfr"):
        p.add_argument(f"--{name}", required=True, help=f"output MPA-JHU {name} file")

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
