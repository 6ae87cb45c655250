"""``galforge edf-*`` subcommands (one per workflow rule, plus ``edf-sample``).

Each handler builds the settings of the sections its step uses from the resolved
configuration and calls the step of :mod:`galforge.edf.steps`.
"""

from __future__ import annotations

import argparse
from typing import Any

from galforge.config import config_hash
from galforge.edf import steps
from galforge.edf.settings import EdfSettings
from galforge.io import InputError


def _settings(cfg: dict[str, Any]) -> EdfSettings:
    """The study's typed settings (the resolved configuration's ``edf`` section)."""
    return EdfSettings.from_dict(cfg["edf"])


def _mock(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.mock(args.folder, args.truth, settings=_settings(cfg).mock, seed=cfg["seed"],
               config_hash=config_hash(cfg))


def _fetch(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.fetch(args.galaxies, args.manifest, settings=_settings(cfg).archive,
                progress=not args.no_progress)


def _table(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.table(args.galaxies, args.out, args.index, args.report, clean=s.clean,
                source=s.source, progress=not args.no_progress)


def _train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.train(args.table, args.model_id, args.model, args.metrics, args.summary, args.workdir,
                model_settings=s.model, train_settings=s.train, cv=s.cv, seed=cfg["seed"],
                val_fraction=s.split.val_fraction, run_config=cfg,
                progress=not args.no_progress)


def _evaluate(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.evaluate(args.table, args.models, heldout_csv=args.heldout, heldout_md=args.heldout_md,
                   mmd_csv=args.mmd, truth_report=args.truth_report, samples_out=args.samples,
                   settings=s.eval, clean=s.clean, seed=cfg["seed"], source=cfg["source"],
                   truth=args.truth, progress=not args.no_progress)


def _figures(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.figures(table=args.table, heldout=args.heldout, mmd=args.mmd, samples=args.samples,
                  truth_report=args.truth_report, metrics=args.metrics, outdir=args.outdir,
                  cfg=cfg, truth=args.truth)


def _number(text: str, what: str, kind: type = float) -> Any:
    try:
        v = kind(float(text)) if kind is int else kind(text)
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a number") from None
    return v


def _sample(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    devices = [d for d in (args.devices or "").split(",") if d] or None
    steps.sample(args.model, args.out,
                 conditions=[_number(c, "--conditions") for c in args.conditions],
                 n=_number(args.n, "--n", int),
                 seed=_number(args.seed, "--seed", int) if args.seed else 0,
                 chunk=_number(args.chunk, "--chunk", int) if args.chunk else 300_000,
                 devices=devices)


def _parity(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.parity(model=args.model, training=args.training, truth_report=args.truth_report,
                 mmd=args.mmd, table=args.table, out_csv=args.out, out_md=args.out_md,
                 out_html=args.out_html, settings=_settings(cfg), scale=cfg["scale"],
                 source=cfg["source"], seed=cfg["seed"])


def register(sub: argparse._SubParsersAction) -> None:
    """Add the edf study's subcommands to the ``galforge`` parser."""
    from galforge.commands import add_command

    add_command(sub, "edf-mock", _mock,
                "write the NIHAO-like mock galaxies (.npy files in the archive's layout) and "
                "their truth file", {
                    "folder": "output folder of <prefix>_<id>_<M_dm>.npy files",
                    "truth": "output truth file (JSON)"})
    add_command(sub, "edf-fetch", _fetch,
                "download the authors' Zenodo record (network): files checked against their "
                "md5, archives unpacked safely, galaxies gathered in one folder", {
                    "galaxies": "output folder of the galaxies' .npy files",
                    "manifest": "output JSON: record asked for, version resolved, files"})
    add_command(sub, "edf-table", _table,
                "read the galaxies, clean and rotate them, compute their conditions: the eDF "
                "table", {
                    "galaxies": "input folder of .npy files (or one Parquet/CSV table)",
                    "out": "output eDF table (HDF5)",
                    "index": "output index <-> id table (CSV)",
                    "report": "output JSON: what each cut removed"})
    add_command(sub, "edf-train", _train,
                "train one flow: a cross-validation model (cv00, ...) or the all-galaxies "
                "model (all); resumes from its checkpoint after a kill", {
                    "table": "input eDF table (HDF5)",
                    "model-id": "which model: cv00, cv01, ... or all",
                    "model": "output final checkpoint (everything edf-sample needs)",
                    "metrics": "output per-epoch metrics (CSV)",
                    "summary": "output JSON summary of the training",
                    "workdir": "folder for the rolling checkpoint (kept across reruns)"})
    add_command(sub, "edf-evaluate", _evaluate,
                "MMDs of the cross-validation models on their held-out galaxies, the checks "
                "and the figures' samples", {
                    "table": "input eDF table (HDF5)",
                    "models+": "input checkpoints of the cross-validation models",
                    "truth?": "the mock's truth file (mock only: fresh draws, inclinations)",
                    "heldout": "output CSV: one row per held-out galaxy of each model",
                    "heldout-md": "the same as a Markdown table",
                    "mmd": "output CSV: MMD of model samples and data galaxies against every "
                           "data galaxy, with d log M*",
                    "truth-report": "output JSON: the checks (pass_<check>) and their numbers",
                    "samples": "output HDF5: model samples of each held-out galaxy"})
    add_command(sub, "edf-figures", _figures,
                "every figure of the study (PDF + PNG, provenance-stamped)", {
                    "table": "input eDF table (HDF5)",
                    "heldout": "input CSV of edf-evaluate: held-out galaxies",
                    "mmd": "input CSV of edf-evaluate: MMD against every data galaxy",
                    "samples": "input HDF5 of edf-evaluate: model samples",
                    "truth-report": "input JSON of edf-evaluate: the checks",
                    "metrics+": "input metrics.csv of every model (models/<id>/metrics.csv)",
                    "truth?": "the mock's truth file: adds the truth figure",
                    "outdir": "folder of the figures"})
    from galforge.parity import PARITY_OUTPUTS

    add_command(sub, "edf-parity", _parity,
                "the paper's headline numbers beside ours (CSV, Markdown, HTML), timing the "
                "all-galaxies flow's sampling", {
                    "model": "input checkpoint of the all-galaxies flow (models/all/model.pt)",
                    "training": "input training.json of that flow",
                    "truth-report": "input JSON of edf-evaluate: the checks",
                    "mmd": "input CSV of edf-evaluate: MMD against every data galaxy",
                    "table": "input eDF table (HDF5): the galaxies' conditions",
                    **PARITY_OUTPUTS})
    p = add_command(sub, "edf-sample", _sample,
                    "sample a galaxy of n stars at given conditions from a trained flow", {
                        "model": "input checkpoint (model.pt of edf-train)",
                        "conditions+": "M* [M_sun], tau50 [Gyr], tau10 [Gyr], mean Z",
                        "n": "number of stars",
                        "out": "output .npy file: an (11, n) array in the archive's layout",
                        "seed?": "seed of the noise (default 0)",
                        "chunk?": "stars per chunk (default 300000)",
                        "devices?": "comma-separated devices, e.g. cuda:0,cuda:1 (default: "
                                    "every visible GPU, else the CPU)"})
    p.set_defaults(config="{}")  # the model file carries everything: no configuration needed
