"""The shared paper-vs-ours table helper (galforge.parity)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galforge.io import InputError
from galforge.parity import (
    PARITY_COLUMNS,
    PaperValue,
    format_value,
    parity_frame,
    parity_row,
    read_parity,
    read_report,
    write_parity,
)

CLAIM = PaperValue("Variance along D1-D4", (34, 32, 16, 18), "A & B 2024, Sect. 4", unit="%")


@pytest.mark.parametrize(("value", "unit", "text"), [
    ((34, 32, 16, 18), "%", "34 / 32 / 16 / 18 %"),
    (np.array([0.5, 0.25]), "", "0.500 / 0.250"),
    (np.float64(0.95234), "", "0.952"),
    (np.int64(4), "", "4"),
    (("[O II]", "Hα"), "", "[O II], Hα"),
    (float("nan"), "Å", "n/a"),
    (None, "", "n/a"),
    (np.bool_(True), "", "yes"),
    ("below 5000 Å", "", "below 5000 Å"),
])
def test_format_value(value, unit, text):
    assert format_value(value, unit) == text


def test_a_row_puts_the_paper_beside_ours():
    row = parity_row(CLAIM, [41, 30, 18, 11], source="mock", note="best VAE")
    assert row == {"quantity": "Variance along D1-D4", "paper": "34 / 32 / 16 / 18 %",
                   "ours": "41 / 30 / 18 / 11 %", "source": "mock",
                   "reference": "A & B 2024, Sect. 4", "note": "best VAE"}
    assert parity_row(CLAIM, "two", source="archive", unit="", quantity="Q")["quantity"] == "Q"
    with pytest.raises(ValueError, match="mock, archive"):
        parity_row(CLAIM, 1, source="sky")


def test_a_table_has_the_columns_and_a_row():
    table = parity_frame([parity_row(CLAIM, [50, 50], source="mock")])
    assert tuple(table.columns) == PARITY_COLUMNS and table["note"].item() == ""
    with pytest.raises(ValueError, match="at least one row"):
        parity_frame([])


def test_write_and_read_back(tmp_path):
    table = parity_frame([parity_row(CLAIM, [50, 50], source="mock", note="a | b <i>"),
                          parity_row(CLAIM, "n/a", source="archive")])
    paths = write_parity(table, tmp_path / "p.csv", tmp_path / "p.md", tmp_path / "p.html",
                         title="Study: paper vs ours")
    assert [p.name for p in paths] == ["p.csv", "p.md", "p.html"]
    pd.testing.assert_frame_equal(read_parity(tmp_path / "p.csv"), table)
    md = (tmp_path / "p.md").read_text()
    assert md.startswith("| quantity") and r"a \| b" in md and len(md.splitlines()) == 4
    page = (tmp_path / "p.html").read_text()
    assert "<table" in page and "Study: paper vs ours" in page and "a | b &lt;i&gt;" in page
    # without an HTML path only the two tables
    assert len(write_parity(table, tmp_path / "q.csv", tmp_path / "q.md")) == 2


def test_readers_name_the_bad_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="bad.csv"):
        read_parity(bad)
    with pytest.raises(InputError, match="missing.json"):
        read_report(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(InputError, match="list"):
        read_report(tmp_path / "list.json")
    (tmp_path / "ok.json").write_text(json.dumps({"source": "mock"}))
    assert read_report(tmp_path / "ok.json") == {"source": "mock"}
