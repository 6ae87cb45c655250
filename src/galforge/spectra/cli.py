"""``galforge spectra-*`` subcommands (one per workflow rule).

Each handler builds the settings of the sections its step uses from the resolved
configuration and calls the step of :mod:`galforge.spectra.steps`.
"""

from __future__ import annotations

import argparse
from typing import Any

from galforge.spectra import steps
from galforge.spectra.settings import SpectraSettings


def _settings(cfg: dict[str, Any]) -> SpectraSettings:
    """The study's typed settings (the resolved configuration's ``spectra`` section)."""
    return SpectraSettings.from_dict(cfg["spectra"])


def _mock(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.cosmology import Cosmology

    s = _settings(cfg)
    steps.mock(args.root, args.manifests, settings=s.mock, n_shards=s.mock_shards,
               seed=cfg["seed"],
               cosmology=Cosmology(Om0=cfg["cosmology"]["Om0"]), progress=not args.no_progress)


def _fetch_gswlc(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.fetch_gswlc(args.out, progress=not args.no_progress)


def _targets(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.targets(args.gswlc, args.out, selection=s.selection,
                  max_spectra=s.archive.max_spectra)


def _fetch(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    archive = _settings(cfg).archive
    steps.fetch(args.targets, args.manifest, shard=args.shard, n_shards=archive.n_shards,
                dest=args.dest, spectra_format=archive.spectra_format,
                base_url=archive.base_url, max_missing=archive.max_missing,
                progress=not args.no_progress)


def _preprocess_shard(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.preprocess_shard(args.manifest, args.gswlc, args.mpajhu_info, args.mpajhu_oh, args.out,
                           args.rejects, selection=s.selection, preprocess=s.preprocess,
                           progress=not args.no_progress)


def _preprocess(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    settings = _settings(cfg).preprocess
    steps.preprocess(args.shards, args.shard_rejects, args.out, args.rejects, args.report,
                     settings=settings, progress=not args.no_progress)


def _train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.train(args.spectra, args.model, args.metrics, args.summary, args.evaluation,
                args.workdir, settings=s.model.for_model(args.model_id),
                train_settings=s.train, seed=cfg["seed"], val_fraction=s.split.val_fraction, run_config=cfg, progress=not args.no_progress)


def _bic(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.bic(args.evaluations, args.out, args.out_md)


def _analysis(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    settings = _settings(cfg).analysis
    steps.analysis(
        args.spectra, args.bic, args.models, catalog_out=args.catalog, pca_out=args.pca,
        mi_out=args.mi, shap_out=args.shap, arrays_out=args.arrays, truth_out=args.truth_report,
        settings=settings, seed=cfg["seed"], source=cfg["source"], truth=args.truth,
        progress=not args.no_progress,
    )


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.figures(spectra=args.spectra, catalog=args.catalog, bic=args.bic, pca=args.pca,
                  mi=args.mi, arrays=args.arrays, metrics=args.metrics, outdir=args.outdir,
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
