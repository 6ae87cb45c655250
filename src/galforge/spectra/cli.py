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
                train_settings=s.train, seed=cfg["seed"], val_fraction=s.split.val_fraction,
                repeat=args.repeat, run_config=cfg, progress=not args.no_progress)


def _bic(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.bic(args.evaluations, args.out, args.out_md, args.summary, args.summary_md)


def _analysis(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    settings = _settings(cfg).analysis
    steps.analysis(
        args.spectra, args.bic, args.bic_summary, args.models, catalog_out=args.catalog,
        pca_out=args.pca,
        mi_out=args.mi, shap_out=args.shap, arrays_out=args.arrays, truth_out=args.truth_report,
        settings=settings, seed=cfg["seed"], source=cfg["source"], truth=args.truth,
        progress=not args.no_progress,
    )


def _parity(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.parity(args.bic, args.pca, args.arrays, args.truth_report, out_csv=args.out,
                 out_md=args.out_md, out_html=args.out_html, source=cfg["source"])


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.figures(spectra=args.spectra, catalog=args.catalog, bic=args.bic,
                  bic_summary=args.bic_summary, pca=args.pca, mi=args.mi, arrays=args.arrays,
                  metrics=args.metrics, outdir=args.outdir, cfg=cfg, truth=args.truth)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the spectra study's subcommands to the ``galforge`` parser."""
    from galforge.commands import add_command
    from galforge.parity import PARITY_OUTPUTS

    catalogs = {"gswlc": "input GSWLC table", "mpajhu-info": "input MPA-JHU gal_info file",
                "mpajhu-oh": "input MPA-JHU gal_fiboh file"}
    add_command(sub, "spectra-mock", _mock,
                "write the mock SDSS spectra, GSWLC and MPA-JHU tables, truth and shard "
                "manifests", {
                    "root": "output folder of the mock (spectra/, tables)",
                    "manifests+": "output shard manifests (CSV), one per shard, in shard order"})
    add_command(sub, "spectra-fetch-gswlc", _fetch_gswlc,
                "download the GSWLC-X2 catalogue (network)",
                {"out": "output file (GSWLC-X2.dat)"})
    add_command(sub, "spectra-targets", _targets,
                "the spectra to download: GSWLC galaxies in the redshift range", {
                    "gswlc": "input GSWLC table",
                    "out": "output targets (Parquet: key, plate, mjd, fiber, z)"})
    p = add_command(sub, "spectra-fetch", _fetch,
                    "download one plate shard of SDSS spectra and write its manifest (network)", {
                        "targets": "input targets (Parquet)",
                        "dest": "download folder (PLATE4/<file>)",
                        "manifest": "output shard manifest (CSV)"})
    p.add_argument("--shard", required=True, type=int, help="shard index")
    add_command(sub, "spectra-preprocess-shard", _preprocess_shard,
                "select and preprocess one shard of spectra (rest frame, 4000 px, masks)", {
                    "manifest": "input shard manifest (CSV)", **catalogs,
                    "out": "output shard HDF5",
                    "rejects": "output CSV of the rejected spectra and why"})
    add_command(sub, "spectra-preprocess", _preprocess,
                "merge the shards and infill masked pixels by iterative PCA", {
                    "shards+": "input shard HDF5 files",
                    "shard-rejects+": "input shard rejects CSVs",
                    "out": "output spectra HDF5",
                    "rejects": "output CSV of every rejected spectrum",
                    "report": "output JSON: counts per reject reason, infill"})
    p = add_command(sub, "spectra-train", _train,
                    "train one repeat of one VAE / CVAE of the grid (resumes from its "
                    "checkpoint after a kill)", {
                        "model-id": "grid identifier, e.g. vae-d3, cvae-ssfr+z-d2",
                        "spectra": "input spectra HDF5",
                        "model": "output final checkpoint",
                        "metrics": "output per-epoch metrics (CSV)",
                        "summary": "output JSON summary of the training",
                        "evaluation": "output JSON: held-out likelihood and BIC of the trained "
                                      "model",
                        "workdir": "folder of the rolling checkpoint"})
    p.add_argument("--repeat", type=int, default=0,
                   help="repeat of the grid point (0 = the run's seed; r: the r-th derived seed)")
    add_command(sub, "spectra-bic", _bic,
                "the BIC of every model and seed, and its summary over the seeds (Fig 2)", {
                    "evaluations+": "input evaluation JSONs (every model and repeat)",
                    "out": "output CSV, one row per model and repeat",
                    "out-md": "output Markdown table of it",
                    "summary": "output CSV, one row per grid point: BIC over the seeds, choice",
                    "summary-md": "output Markdown table of it"})
    add_command(sub, "spectra-analysis", _analysis,
                "PCA of the best VAE's latents, D catalog, MI, sweeps and SHAP", {
                    "spectra": "input spectra HDF5",
                    "bic": "input BIC table, one row per model and repeat (CSV)",
                    "bic-summary": "input BIC summary over the seeds (CSV)",
                    "models": "folder of the trained models (<id>/r<repeat>/model.pt)",
                    "truth?": "the mock's truth file (mock only)",
                    "catalog": "output D catalog (Parquet)",
                    "pca": "output PCA variance table (CSV)",
                    "mi": "output MI table (CSV)",
                    "shap": "output SHAP additivity report (JSON)",
                    "truth-report": "output planted-truth recovery (JSON)",
                    "arrays": "output arrays for the figures (HDF5)"})
    add_command(sub, "spectra-parity", _parity,
                "the paper's headline numbers beside ours (CSV, Markdown, HTML for the report)", {
                    "bic": "input BIC summary over the seeds (CSV)",
                    "pca": "input PCA variance table (CSV)",
                    "arrays": "input analysis arrays (HDF5: the mean |SHAP| of each D)",
                    "truth-report": "input JSON: the analysis step's truth-recovery report",
                    **PARITY_OUTPUTS})
    add_command(sub, "spectra-figures", _figures,
                "every figure of the study (PDF + PNG, provenance-stamped)", {
                    **{k: f"input {k}" for k in ("spectra", "catalog", "bic", "bic-summary",
                                                 "pca", "mi", "arrays")},
                    "metrics+": "metrics.csv of every model and repeat "
                                "(models/<id>/r<repeat>/metrics.csv)",
                    "truth?": "the mock's truth file: adds the truth figure",
                    "outdir": "folder of the figures"})
