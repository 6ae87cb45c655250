"""``galforge alignment-*`` subcommands (one per workflow rule)."""

from __future__ import annotations

import argparse
from typing import Any

from galforge.alignment import steps
from galforge.alignment.settings import AlignmentSettings
from galforge.commands import add_command
from galforge.io import InputError


def _settings(cfg: dict[str, Any]) -> AlignmentSettings:
    return AlignmentSettings.from_dict(cfg["alignment"])


def _catalog(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    base = args.base_path or cfg["tng"]["base_path"]
    if not base:
        raise InputError("alignment-catalog needs a local TNG copy: set tng.base_path (the "
                         "web-API route of the catalog is not written yet)")
    steps.catalog(base, args.out, args.report, catalog=s.catalog, shapes=s.shapes,
                  tidal=s.tidal, progress=not args.no_progress)


def _stats(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.stats(args.catalog, args.wgp, args.ed_ee, args.misalignments, args.summary,
                settings=_settings(cfg).stats, truth=args.truth, truth_out=args.truth_report)


def _train_gan(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.train_gan(args.catalog, args.model, args.metrics, args.generated, args.summary,
                    args.workdir, settings=_settings(cfg), seed=cfg["seed"],
                    progress=not args.no_progress, run_config=cfg)


def _train_diffusion(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.train_diffusion(args.catalog, args.model, args.metrics, args.generated, args.summary,
                          args.workdir, settings=_settings(cfg), seed=cfg["seed"],
                          progress=not args.no_progress, run_config=cfg)


def _so3_benchmark(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.so3_benchmark(args.out, args.samples, settings=_settings(cfg).so3_benchmark,
                        seed=cfg["seed"])


def _evaluate(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    generated = {"gan": args.gan} | ({"diffusion": args.diffusion} if args.diffusion else {})
    steps.evaluate(args.catalog, generated, args.stats, args.so3, args.out,
                   args.truth_report, settings=_settings(cfg).stats)


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.figures(wgp=args.wgp, checks=args.checks, metrics=args.metrics,
                  diffusion_metrics=args.diffusion_metrics, so3_report=args.so3,
                  so3_samples=args.so3_samples, ed_ee=args.ed_ee,
                  misalignments=args.misalignments, catalog=args.catalog,
                  generated={"gan": args.gan, "diffusion": args.diffusion},
                  outdir=args.outdir, cfg=cfg, samuroff=args.samuroff,
                  truth=args.truth_report)


def _parity(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.alignment.parity import TITLE, parity_from_files
    from galforge.parity import write_parity

    table = parity_from_files(checks=args.checks, so3=args.so3, wgp=args.wgp,
                              source=cfg["source"], truth=args.truth_report,
                              samuroff=args.samuroff)
    write_parity(table, args.out, args.out_md, args.out_html, title=TITLE)


#: The arguments of both training commands.
_TRAIN_ARGS = {
    "catalog": "input catalog (HDF5, alignment-catalog)",
    "model": "output model checkpoint",
    "metrics": "output training metrics (CSV)",
    "generated": "output generated catalog (HDF5)",
    "summary": "output training summary (JSON)",
    "workdir": "work folder of the resumable checkpoint",
}


def register(sub: Any) -> None:
    """Add the alignment study's subcommands."""
    add_command(sub, "alignment-catalog", _catalog,
                "galaxies, FoF groups, stellar and DM shapes and the tidal field of a TNG "
                "snapshot (a local copy or the mock)", {
                    "base-path?": "the simulation's output/ folder (default: tng.base_path)",
                    "out": "output catalog (HDF5)",
                    "report": "output report (JSON: counts, conventions, halo-route check)",
                })
    add_command(sub, "alignment-stats", _stats,
                "w_gg and w_g+ (MeasureIA, jackknife), ED/EE and misalignment angles of the "
                "catalog; on the mock, the planted w_g+ check", {
                    "catalog": "input catalog (HDF5, alignment-catalog)",
                    "wgp": "output w_gg and w_g+ table (CSV)",
                    "ed-ee": "output ED and EE table (CSV)",
                    "misalignments": "output misalignment angles per galaxy (CSV)",
                    "summary": "output summary (JSON)",
                    "truth?": "the mock's truth.hdf5 (mock runs)",
                    "truth-report?": "output planted-truth check (JSON; with --truth)",
                })
    add_command(sub, "alignment-train-gan", _train_gan,
                "train the graph WGAN-GP on the catalog's FoF-group graphs and write a "
                "generated catalog", {**_TRAIN_ARGS})
    add_command(sub, "alignment-train-diffusion", _train_diffusion,
                "train the GNN-conditioned SO(3) diffusion model of galaxy orientations on "
                "the catalog's FoF-group graphs and write a generated catalog", {**_TRAIN_ARGS})
    add_command(sub, "alignment-so3-benchmark", _so3_benchmark,
                "the SO(3) diffusion model on synthetic densities: MMD against the noise "
                "floor, mean log density", {
                    "out": "output report (JSON, pass_<density>)",
                    "samples": "output samples (HDF5: model and truth rotations)",
                })
    add_command(sub, "alignment-evaluate", _evaluate,
                "the generated catalogs against the simulation (w_g+, satellites' cos^2, "
                "axis ratios) and, on the mock, truth_recovery.json", {
                    "catalog": "input catalog (HDF5)",
                    "gan": "input GAN-generated catalog (HDF5)",
                    "diffusion?": "input diffusion-generated catalog (HDF5)",
                    "stats": "input stats summary (JSON, alignment-stats)",
                    "so3": "input SO(3) benchmark report (JSON)",
                    "out": "output model checks (JSON)",
                    "truth-report?": "output planted-truth report (JSON; mock runs)",
                })
    from galforge.parity import PARITY_OUTPUTS

    add_command(sub, "alignment-parity", _parity,
                "the papers' headline results beside ours (CSV, Markdown, HTML for the report)",
                {"checks": "input model checks (JSON, alignment-evaluate)",
                 "wgp": "input w_gg and w_g+ table (CSV, alignment-stats)",
                 "so3": "input SO(3) benchmark report (JSON)",
                 "truth-report?": "input truth_recovery.json (mock)",
                 "samuroff?": "Samuroff et al. (2021) 2-point FITS file (optional)",
                 **PARITY_OUTPUTS})
    add_command(sub, "alignment-figures", _figures,
                "the study's figures (PDF + PNG, provenance-stamped): w_g+ and w_gg, the "
                "models' losses, the SO(3) benchmark's canonical axes, ED/EE, misalignments, "
                "orientations on the sphere, axis ratios, truth recovery (mock)", {
                    "wgp": "input w_gg and w_g+ table (CSV, alignment-stats)",
                    "checks": "input model checks (JSON, alignment-evaluate)",
                    "metrics": "input GAN training metrics (CSV)",
                    "diffusion-metrics": "input diffusion training metrics (CSV)",
                    "so3": "input SO(3) benchmark report (JSON)",
                    "so3-samples": "input SO(3) benchmark samples (HDF5)",
                    "ed-ee": "input ED/EE table (CSV, alignment-stats)",
                    "misalignments": "input misalignment angles (CSV, alignment-stats)",
                    "catalog": "input catalog (HDF5, alignment-catalog)",
                    "gan": "input GAN-generated catalog (HDF5)",
                    "diffusion": "input diffusion-generated catalog (HDF5)",
                    "samuroff?": "Samuroff et al. (2021) 2-point FITS file to draw beside "
                                 "ours (optional)",
                    "truth-report?": "input truth_recovery.json (mock; draws truth_recovery)",
                    "outdir": "folder of the figures",
                })
