"""``galforge spectra-*`` subcommands (one per workflow rule)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from galforge.io import write_json

log = logging.getLogger("galforge.spectra")


def _mock(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.cosmology import Cosmology
    from galforge.mock.spectra import MockSpectraSettings, write_spectra_mock
    from galforge.spectra.study import mock_manifests

    spec = cfg["spectra"]
    settings = MockSpectraSettings.from_dict(spec["mock"])
    summary = write_spectra_mock(settings, args.root, seed=cfg["seed"],
                                 progress=not args.no_progress,
                                 cosmology=Cosmology(Om0=cfg["cosmology"]["Om0"]))
    mock_manifests(args.root, spec["mock_shards"], args.manifests)
    log.info("spectra mock: %d spectra, %d selectable galaxies, planted %s",
             summary["n_spectra"], summary["n_selectable"], summary["planted_parameters"])


def _fetch_gswlc(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.archives import gswlc
    from galforge.archives.download import DownloadOptions

    gswlc.fetch_gswlc(args.out, url=gswlc.GSWLC_X2_URL,
                      options=DownloadOptions(progress=not args.no_progress))


def _fetch_mpajhu_oh(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.archives.download import DownloadOptions, download
    from galforge.archives.sdss import MPAJHU_DR7_OH_URLS

    download(MPAJHU_DR7_OH_URLS["fiboh"], Path(args.out),
             options=DownloadOptions(progress=not args.no_progress))


def _targets(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.io import atomic_path
    from galforge.spectra.study import build_targets

    spec = cfg["spectra"]
    t = build_targets(args.gswlc, spec["selection"], spec["archive"]["max_spectra"])
    with atomic_path(args.out) as tmp:
        t.to_parquet(tmp, index=False)


def _fetch(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    import pandas as pd

    from galforge.archives.download import DownloadOptions
    from galforge.archives.sdss_spectra import fetch_spectra_shard

    arch = cfg["spectra"]["archive"]
    fetch_spectra_shard(
        pd.read_parquet(args.targets), int(args.shard), arch["n_shards"], args.dest,
        fmt=arch["spectra_format"], base_url=arch["base_url"], manifest_path=args.manifest,
        max_missing=arch["max_missing"], options=DownloadOptions(progress=False),
        progress=not args.no_progress,
    )


def _preprocess_shard(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.spectra.study import preprocess_shard_files

    spec = cfg["spectra"]
    summary = preprocess_shard_files(
        args.manifest, args.gswlc, args.mpajhu_info, args.mpajhu_oh, spec["selection"],
        spec["preprocess"], args.out, args.rejects, progress=not args.no_progress,
    )
    log.info("shard: %s", summary)


def _preprocess(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.io import InputError
    from galforge.spectra.study import merge_shards

    if len(args.shards) != len(args.shard_rejects):
        raise InputError("--shards and --shard-rejects must list the same number of files")
    report = merge_shards(args.shards, args.shard_rejects, cfg["spectra"]["preprocess"],
                          args.out, args.rejects, args.report, progress=not args.no_progress)
    log.info("preprocessing: %s", report)


def _train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.spectra.bic import evaluate_model, write_evaluation
    from galforge.spectra.settings import SpectraModelSettings
    from galforge.spectra.training import train_spectra_model

    spec = cfg["spectra"]
    settings = SpectraModelSettings.from_model_id(args.model_id, spec["model"])
    summary = train_spectra_model(
        args.spectra, settings, spec["train"], seed=cfg["seed"],
        val_fraction=spec["split"]["val_fraction"], out_model=args.model,
        out_metrics=args.metrics, workroot=args.workdir, progress=not args.no_progress,
        run_config=cfg,
    )
    write_json(summary, args.summary)
    # the held-out evaluation of the BIC, from the model file alone (as any later reader would)
    ev = evaluate_model(args.model, args.spectra)
    write_evaluation(ev, args.evaluation)
    log.info("%s: n=%d, ln L=%.2f, BIC=%.2f, chi2_nu=%.4f", ev["model_id"], ev["n"], ev["log_l"],
             ev["bic"], ev["chi2_nu"])


def _bic(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.spectra.bic import bic_table, load_evaluations
    from galforge.stats import write_tables

    table = bic_table(load_evaluations(args.evaluations))
    write_tables(table, args.out, args.out_md)
    best = table[table["best_in_kind"]]
    log.info("lowest BIC: %s", dict(zip(best["kind"], best["model_id"], strict=True)))


def _analysis(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.spectra.study import run_analysis

    run_analysis(
        spectra=args.spectra, bic=args.bic, models=args.models,
        analysis=cfg["spectra"]["analysis"], seed=cfg["seed"], catalog_out=args.catalog,
        pca_out=args.pca, mi_out=args.mi, shap_out=args.shap, arrays_out=args.arrays,
        truth_out=args.truth_report, source=cfg["source"], truth=args.truth,
        progress=not args.no_progress,
    )


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.spectra.figure_set import make_figures

    metrics = {Path(p).parent.name: p for p in args.metrics}
    make_figures(spectra=args.spectra, catalog=args.catalog, bic=args.bic, pca=args.pca,
                 mi=args.mi, analysis=args.arrays, metrics=metrics, outdir=args.outdir,
                 cfg=cfg, truth=args.truth)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the spectra study's subcommands to the ``galforge`` parser."""
    from galforge.commands import add_command

    p = add_command(sub, "spectra-mock", _mock,
                    "write the mock SDSS spectra, GSWLC and MPA-JHU tables, truth and shard manifests")
    p.add_argument("--root", required=True, help="output folder of the mock (spectra/, tables)")
    p.add_argument("--manifests", nargs="+", required=True,
                   help="output shard manifests (CSV), one per shard, in shard order")

    p = add_command(sub, "spectra-fetch-gswlc", _fetch_gswlc,
                    "download the GSWLC-X2 catalogue (network)")
    p.add_argument("--out", required=True, help="output file (GSWLC-X2.dat)")

    p = add_command(sub, "spectra-fetch-mpajhu-oh", _fetch_mpajhu_oh,
                    "download the MPA-JHU DR7 fibre metallicities (network)")
    p.add_argument("--out", required=True, help="output gal_fiboh_dr7_v5_2.fits.gz")

    p = add_command(sub, "spectra-targets", _targets,
                    "the spectra to download: GSWLC galaxies in the redshift range")
    p.add_argument("--gswlc", required=True, help="input GSWLC table")
    p.add_argument("--out", required=True, help="output targets (Parquet: key, plate, mjd, fiber, z)")

    p = add_command(sub, "spectra-fetch", _fetch,
                    "download one plate shard of SDSS spectra and write its manifest (network)")
    p.add_argument("--shard", required=True, type=int, help="shard index")
    p.add_argument("--targets", required=True, help="input targets (Parquet)")
    p.add_argument("--dest", required=True, help="download folder (PLATE4/<file>)")
    p.add_argument("--manifest", required=True, help="output shard manifest (CSV)")

    def catalogs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--gswlc", required=True, help="input GSWLC table")
        p.add_argument("--mpajhu-info", required=True, help="input MPA-JHU gal_info file")
        p.add_argument("--mpajhu-oh", required=True, help="input MPA-JHU gal_fiboh file")

    p = add_command(sub, "spectra-preprocess-shard", _preprocess_shard,
                    "select and preprocess one shard of spectra (rest frame, 4000 px, masks)")
    p.add_argument("--manifest", required=True, help="input shard manifest (CSV)")
    catalogs(p)
    p.add_argument("--out", required=True, help="output shard HDF5")
    p.add_argument("--rejects", required=True, help="output CSV of the rejected spectra and why")

    p = add_command(sub, "spectra-preprocess", _preprocess,
                    "merge the shards and infill masked pixels by iterative PCA")
    p.add_argument("--shards", nargs="+", required=True, help="input shard HDF5 files")
    p.add_argument("--shard-rejects", nargs="+", required=True, help="input shard rejects CSVs")
    p.add_argument("--out", required=True, help="output spectra HDF5")
    p.add_argument("--rejects", required=True, help="output CSV of every rejected spectrum")
    p.add_argument("--report", required=True, help="output JSON: counts per reject reason, infill")

    p = add_command(sub, "spectra-train", _train,
                    "train one VAE / CVAE of the grid (resumes from its checkpoint after a kill)")
    p.add_argument("--model-id", required=True, help="grid identifier, e.g. vae-d3, cvae-ssfr+z-d2")
    p.add_argument("--spectra", required=True, help="input spectra HDF5")
    p.add_argument("--model", required=True, help="output final checkpoint")
    p.add_argument("--metrics", required=True, help="output per-epoch metrics (CSV)")
    p.add_argument("--summary", required=True, help="output JSON summary of the training")
    p.add_argument("--evaluation", required=True,
                   help="output JSON: held-out likelihood and BIC of the trained model")
    p.add_argument("--workdir", required=True, help="folder of the rolling checkpoint")

    p = add_command(sub, "spectra-bic", _bic, "the BIC table of the model grid (Fig 2)")
    p.add_argument("--evaluations", nargs="+", required=True, help="input evaluation JSONs")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--out-md", required=True, help="output Markdown table")

    p = add_command(sub, "spectra-analysis", _analysis,
                    "PCA of the best VAE's latents, D catalog, MI, sweeps and SHAP")
    p.add_argument("--spectra", required=True)
    p.add_argument("--bic", required=True, help="input BIC table (CSV)")
    p.add_argument("--models", required=True, help="folder of the trained models (<id>/model.pt)")
    p.add_argument("--truth", default=None, help="the mock's truth file (mock only)")
    p.add_argument("--catalog", required=True, help="output D catalog (Parquet)")
    p.add_argument("--pca", required=True, help="output PCA variance table (CSV)")
    p.add_argument("--mi", required=True, help="output MI table (CSV)")
    p.add_argument("--shap", required=True, help="output SHAP additivity report (JSON)")
    p.add_argument("--truth-report", required=True, help="output planted-truth recovery (JSON)")
    p.add_argument("--arrays", required=True, help="output arrays for the figures (HDF5)")

    p = add_command(sub, "spectra-figures", _figures,
                    "every figure of the study (PDF + PNG, provenance-stamped)")
    for name in ("spectra", "catalog", "bic", "pca", "mi", "arrays"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--metrics", nargs="+", required=True,
                   help="metrics.csv of every model (models/<id>/metrics.csv)")
    p.add_argument("--truth", default=None, help="the mock's truth file: adds the truth figure")
    p.add_argument("--outdir", required=True, help="folder of the figures")
