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


def _settings(cfg: dict[str, Any]) -> EdfSettings:
    """The study's typed settings (the resolved configuration's ``edf`` section)."""
    return EdfSettings.from_dict(cfg["edf"])


def _mock(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    steps.mock(args.folder, args.truth, settings=_settings(cfg).mock, seed=cfg["seed"],
               config_hash=config_hash(cfg))


def _table(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    s = _settings(cfg)
    steps.table(args.galaxies, args.out, args.index, args.report, clean=s.clean,
                source=s.source, progress=not args.no_progress)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the edf study's subcommands to the ``galforge`` parser."""
    from galforge.commands import add_command

    add_command(sub, "edf-mock", _mock,
                "write the NIHAO-like mock galaxies (.npy files in the archive's layout) and "
                "their truth file", {
                    "folder": "output folder of <prefix>_<id>_<M_dm>.npy files",
                    "truth": "output truth file (JSON)"})
    add_command(sub, "edf-table", _table,
                "read the galaxies, clean and rotate them, compute their conditions: the eDF "
                "table", {
                    "galaxies": "input folder of .npy files (or one Parquet/CSV table)",
                    "out": "output eDF table (HDF5)",
                    "index": "output index <-> id table (CSV)",
                    "report": "output JSON: what each cut removed"})
