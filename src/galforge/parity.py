"""Paper-vs-ours ("parity") tables: a paper's headline numbers beside ours on this run.

Each study keeps the paper's numbers in one place, as :class:`PaperValue` data with the
citation (paper, section or figure), in its own ``parity`` module, and builds the rows
from its run's tables with :func:`parity_row`. This module only formats and writes:
``tables/parity.csv`` (full text), ``tables/parity.md`` (Markdown) and
``tables/parity.html``, the copy the Snakemake report shows inline (a CSV in the report
is only a download link).

Columns (:data:`PARITY_COLUMNS`): ``quantity``; ``paper`` (the value as the paper states
it); ``ours`` (the value on this run); ``source``, ``mock`` or ``archive`` (on the mock,
agreement checks the pipeline against what the mock planted, not the sky); ``reference``
(where the paper states it); ``note`` (how ours was measured).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.io import InputError, atomic_path

__all__ = ["PARITY_COLUMNS", "PARITY_OUTPUTS", "SOURCES", "PaperValue", "format_value", "parity_frame",
           "parity_row", "read_parity", "read_report", "write_parity"]

#: The outputs of every ``<study>-parity`` subcommand (``galforge.commands.add_command`` options).
PARITY_OUTPUTS: dict[str, str] = {
    "out": "output CSV: quantity, paper, ours, source, reference, note",
    "out-md": "the same as a Markdown table",
    "out-html": "the same as an HTML page (the report's copy)",
}
PARITY_COLUMNS: tuple[str, ...] = ("quantity", "paper", "ours", "source", "reference", "note")
#: What "ours" was measured on: the offline mock (planted truth) or the archive's data.
SOURCES: tuple[str, ...] = ("mock", "archive")


def format_value(value: Any, unit: str = "", digits: int = 3) -> str:
    """A value as the table shows it: text as is, integers as integers, other numbers with
    ``digits`` decimals, sequences joined (numbers with `` / ``, text with ``, ``), then
    the unit. NaN and None are ``n/a``."""
    if value is None or (isinstance(value, Real) and math.isnan(value)):
        return "n/a"
    if isinstance(value, str):
        text = value
    elif isinstance(value, Sequence | np.ndarray):
        sep = ", " if all(isinstance(v, str) for v in value) else " / "
        text = sep.join(format_value(v, digits=digits) for v in value)
    elif isinstance(value, bool | np.bool_):
        text = "yes" if value else "no"
    elif isinstance(value, Integral):
        text = str(int(value))
    else:
        text = f"{float(value):.{digits}f}"
    return f"{text} {unit}".rstrip() if unit else text


@dataclass(frozen=True)
class PaperValue:
    """One headline result of a paper, as data: what, the value, its unit and where."""

    quantity: str
    value: Any
    reference: str
    unit: str = ""

    @property
    def text(self) -> str:
        """The value as the table shows it (:func:`format_value`)."""
        return format_value(self.value, self.unit)


def parity_row(claim: PaperValue, ours: Any, *, source: str, note: str = "",
               unit: str | None = None, quantity: str | None = None) -> dict[str, str]:
    """One row: the paper's ``claim`` beside ``ours`` (formatted with the claim's unit
    unless ``unit`` is given); ``quantity`` overrides the claim's wording."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r} must be one of {', '.join(SOURCES)}")
    return {
        "quantity": claim.quantity if quantity is None else quantity,
        "paper": claim.text,
        "ours": format_value(ours, claim.unit if unit is None else unit),
        "source": source,
        "reference": claim.reference,
        "note": note,
    }


def parity_frame(rows: Iterable[Mapping[str, str]]) -> pd.DataFrame:
    """The rows as a table with exactly :data:`PARITY_COLUMNS` (text cells, none missing)."""
    table = pd.DataFrame(list(rows), columns=list(PARITY_COLUMNS))
    if table.empty:
        raise ValueError("a parity table needs at least one row")
    return table.fillna("").astype(str)


def _html(table: pd.DataFrame, title: str) -> str:
    body = table.to_html(index=False, escape=True, border=0, classes="parity")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1em}"
        "table.parity{border-collapse:collapse}"
        "table.parity th,table.parity td{border:1px solid #bbb;padding:4px 8px;"
        "text-align:left;vertical-align:top}"
        "table.parity th{background:#eee}"
        "</style></head><body>\n"
        f"<h3>{html.escape(title)}</h3>\n{body}\n</body></html>\n"
    )


def write_parity(table: pd.DataFrame, csv_path: str | os.PathLike, md_path: str | os.PathLike,
                 html_path: str | os.PathLike | None = None, *, title: str = "Paper vs ours"
                 ) -> list[Path]:
    """Write the table as CSV and Markdown (and as an HTML page titled ``title`` for the
    report), each atomically. Returns the paths written."""
    from galforge.stats import write_tables

    table = parity_frame(table.to_dict("records"))
    out = list(write_tables(table, csv_path, md_path))
    if html_path is not None:
        with atomic_path(html_path) as tmp:
            tmp.write_text(_html(table, title), encoding="utf-8")
        out.append(Path(html_path))
    return out


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON report of a step (e.g. ``tables/truth_recovery.json``) as a dict."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(report, dict):
        raise InputError(f"{path}: not a JSON report (a {type(report).__name__})")
    return report


def read_parity(path: str | os.PathLike) -> pd.DataFrame:
    """A parity table written by :func:`write_parity` (CSV)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a parity table ({exc})") from None
    if tuple(table.columns) != PARITY_COLUMNS:
        raise InputError(f"{path}: columns {list(table.columns)}, expected {list(PARITY_COLUMNS)}")
    return table
