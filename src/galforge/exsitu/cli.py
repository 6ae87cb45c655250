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


def _route(args: argparse.Namespace, cfg: dict[str, Any]) -> tuple[str | None, Any]:
    """(base path, None) for a local TNG copy (--base-path or tng.base_path), else
    (None, the web-API route) when the configuration has a tng section."""
    base = getattr(args, "base_path", None) or cfg.get("tng", {}).get("base_path")
    if base:
        return base, None
    if not cfg.get("tng"):
        from galforge.io import InputError
        raise InputError("no TNG copy: pass --base-path, set tng.base_path, or pass the tng "
                         "section (its web API) in --config")
    return None, steps.api_route(cfg["tng"], cfg["cache_dir"])


def _sample(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    base, api = _route(args, cfg)
    steps.sample(base, args.out, args.report, settings=s.sample, split=s.split,
                 seed=cfg["seed"], truth=args.truth, api=api)


def _fetch(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.io import InputError

    _, api = _route(args, cfg)
    if api is None:
        raise InputError("exsitu-fetch is the web-API route: tng.base_path must be null")
    try:
        shard = int(args.shard)
    except ValueError:
        raise InputError(f"--shard {args.shard!r} is not an integer") from None
    steps.fetch(args.sample, args.out, api=api, n_shards=cfg["tng"]["n_shards"], shard=shard)


def _maps(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    base, api = _route(args, cfg)
    steps.make_maps(base, args.sample, args.out, args.report, settings=_settings(cfg).maps,
                    progress=not args.no_progress, api=api)


def _train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.train(args.maps, args.model, args.metrics, args.summary, args.workdir, model=s.model,
                train_settings=s.train, seed=cfg["seed"], run_config=cfg,
                progress=not args.no_progress)


def _select(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.select_model(args.points, args.models, args.metrics, args.summaries, args.model,
                       args.out_metrics, args.summary, args.selection)


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


def _parity(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from galforge.exsitu.parity import TITLE, parity_from_files
    from galforge.parity import write_parity

    s = _settings(cfg).model
    table = parity_from_files(args.evaluation, args.truth_report, args.sample_report,
                              latent_dim=s.latent_dim, beta=s.beta, source=cfg["source"])
    write_parity(table, args.out, args.out_md, args.out_html, title=TITLE)


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
    common = {"base-path?": "a TNG copy's output/ folder (default: tng.base_path; neither: "
                            "the web API of the tng section)"}
    add_command(sub, "exsitu-sample", _sample,
                "select the galaxies, their lines of sight and the galaxy-wise split",
                {**common, "out": "sample table (Parquet)", "report": "summary JSON",
                 "truth?": "the mock's truth.hdf5 (links one galaxy across snapshots)"})
    add_command(sub, "exsitu-fetch", _fetch,
                "download the sample's cutouts of one shard through the TNG web API",
                {"sample": "sample table (Parquet)", "shard": "the shard (id mod tng.n_shards)",
                 "out": "manifest JSON"})
    add_command(sub, "exsitu-maps", _maps,
                "the six preprocessed maps of every projection (chunked HDF5)",
                {**common, "sample": "sample table (Parquet)", "out": "maps HDF5",
                 "report": "timing JSON"})
    add_command(sub, "exsitu-train", _train, "train the conditional VAE",
                {"maps": "maps HDF5", "model": "output checkpoint", "metrics": "metrics CSV",
                 "summary": "summary JSON", "workdir": "work folder (resumable checkpoint)"})
    add_command(sub, "exsitu-select", _select,
                "keep the grid point (latent size x beta) with the lowest validation error",
                {"points+": "grid point names, in the order of the files",
                 "models+": "their CVAE checkpoints", "metrics+": "their metrics CSVs",
                 "summaries+": "their summary JSONs", "model": "the kept checkpoint",
                 "out-metrics": "its metrics CSV", "summary": "its summary JSON",
                 "selection": "the table of every point (JSON)"})
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
    from galforge.parity import PARITY_OUTPUTS

    add_command(sub, "exsitu-parity", _parity,
                "the paper's headline numbers beside ours (CSV, Markdown, HTML for the report)",
                {"evaluation": "evaluation JSON", "truth-report": "truth_recovery.json",
                 "sample-report": "the sample step's summary JSON", **PARITY_OUTPUTS})
    add_command(sub, "exsitu-figures", _figures,
                "every figure of the study (PDF + PNG, provenance-stamped)",
                {"maps": "maps HDF5", "predictions": "predictions HDF5",
                 "evaluation": "evaluation JSON", "cvae-metrics": "CVAE metrics CSV",
                 "flow-metrics": "flow metrics CSV", "outdir": "figures folder",
                 "truth?": "truth_recovery.json (mock: adds the planted-truth figure)"})
