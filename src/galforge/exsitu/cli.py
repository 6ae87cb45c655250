"""``galforge exsitu-*`` subcommands (one per workflow rule)."""

from __future__ import annotations

import argparse
from typing import Any

from galforge.commands import add_command
from galforge.exsitu import steps
from galforge.exsitu.settings import ExsituSettings


def _settings(cfg: dict[str, Any]) -> ExsituSettings:
    return ExsituSettings.from_dict(cfg["exsitu"])


def _snapshots(cfg: dict[str, Any]) -> tuple[int, ...]:
    return tuple(_settings(cfg).sample.snapshots)


def _mock(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.mock(args.out, _settings(cfg).mock, seed=cfg["seed"], snapshots=_snapshots(cfg))


def _base_path(args: argparse.Namespace, cfg: dict[str, Any]) -> str:
    base = args.base_path or cfg.get("tng", {}).get("base_path")
    if not base:
        from galforge.io import InputError
        raise InputError("no TNG copy: pass --base-path or set tng.base_path")
    return base


def _sample(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.sample(_base_path(args, cfg), args.out, args.report, settings=s.sample,
                 split=s.split, seed=cfg["seed"], truth=args.truth)


def _maps(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.make_maps(_base_path(args, cfg), args.sample, args.out, args.report,
                    settings=_settings(cfg).maps, progress=not args.no_progress)


def _train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.train(args.maps, args.model, args.metrics, args.summary, args.workdir, model=s.model,
                train_settings=s.train, seed=cfg["seed"], run_config=cfg,
                progress=not args.no_progress)


def _train_flow(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.train_flow(args.cvae, args.maps, args.model, args.metrics, args.summary, args.workdir,
                     flow=s.flow, train_settings=s.flow_train, seed=cfg["seed"],
                     progress=not args.no_progress)


def _predict(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.predict(args.model, args.maps, args.out, settings=_settings(cfg).predict,
                  seed=cfg["seed"], flow_in=args.flow)


def _evaluate(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.evaluate(args.maps, args.predictions, args.table, args.table_md, args.report,
                   truth_out=args.truth_recovery)


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.exsitu.figures import make_figures
    from galforge.provenance import Provenance

    make_figures(args.maps, args.predictions, args.evaluation, args.cvae_metrics,
                 args.flow_metrics, args.outdir, Provenance.from_config(cfg, study="exsitu"),
                 truth_in=args.truth)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the exsitu subcommands to the ``galforge`` parser."""
    add_command(sub, "exsitu-mock", _mock,
                "write the mock TNG universe of the exsitu study (exsitu.mock, the run's seed, "
                "exsitu.sample.snapshots)", {"out": "the simulation folder to create"})
    common = {"base-path?": "a TNG copy's output/ folder (default: tng.base_path)"}
    add_command(sub, "exsitu-sample", _sample,
                "select the galaxies, their lines of sight and the galaxy-wise split",
                {**common, "out": "sample table (Parquet)", "report": "summary JSON",
                 "truth?": "the mock's truth.hdf5 (links one galaxy across snapshots)"})
    add_command(sub, "exsitu-maps", _maps,
                "the six preprocessed maps of every projection (chunked HDF5)",
                {**common, "sample": "sample table (Parquet)", "out": "maps HDF5",
                 "report": "timing JSON"})
    add_command(sub, "exsitu-train", _train, "train the conditional VAE",
                {"maps": "maps HDF5", "model": "output checkpoint", "metrics": "metrics CSV",
                 "summary": "summary JSON", "workdir": "work folder (resumable checkpoint)"})
    add_command(sub, "exsitu-train-flow", _train_flow,
                "train the conditional MAF on the CVAE's training latents",
                {"cvae": "CVAE checkpoint", "maps": "maps HDF5", "model": "output checkpoint",
                 "metrics": "metrics CSV", "summary": "summary JSON",
                 "workdir": "work folder (resumable checkpoint)"})
    add_command(sub, "exsitu-predict", _predict,
                "sample maps for the test projections from each latent source",
                {"model": "CVAE checkpoint", "maps": "maps HDF5", "out": "predictions HDF5",
                 "flow?": "flow checkpoint (adds the flow's latents)"})
    add_command(sub, "exsitu-evaluate", _evaluate,
                "per-pixel errors, the radial baseline, calibration",
                {"maps": "maps HDF5", "predictions": "predictions HDF5",
                 "table": "errors CSV", "table-md": "errors Markdown",
                 "report": "evaluation JSON",
                 "truth-recovery?": "the planted-truth checks (JSON, pass_<check> flags)"})
    add_command(sub, "exsitu-figures", _figures,
                "every figure of the study (PDF + PNG, provenance-stamped)",
                {"maps": "maps HDF5", "predictions": "predictions HDF5",
                 "evaluation": "evaluation JSON", "cvae-metrics": "CVAE metrics CSV",
                 "flow-metrics": "flow metrics CSV", "outdir": "figures folder",
                 "truth?": "truth_recovery.json (mock: adds the planted-truth figure)"})
