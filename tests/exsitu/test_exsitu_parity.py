"""The exsitu paper-vs-ours table: the paper's numbers with their source, ours from the run."""

from __future__ import annotations

import json

import pytest

from galforge.exsitu.parity import PAPER, parity_from_files, parity_table
from galforge.io import InputError
from galforge.parity import PARITY_COLUMNS


def _evaluation(flow: float = 0.062) -> dict:
    err = {k: {"mean": v, "median": v / 2} for k, v in
           (("encoder", 0.057), ("flow", flow), ("prior", 0.064), ("baseline", 0.152))}
    src = {"coverage68": 0.66, "coverage95": 0.87, "fex_int_spearman": 0.95,
           "fex_int_scatter": 0.03}
    return {"errors": err, "flow": src, "prior": src, "encoder": src,
            "aleatoric_sigma": {"flow": 0.076}}


def test_rows_carry_the_papers_numbers_beside_ours() -> None:
    truth = {"source": "flow", "pass_error": True, "pass_coverage68": True,
             "pass_flow_beats_prior": True, "pass_integrated_fex": True,
             "thresholds": {"max_error": 0.1, "coverage68_tolerance": 0.1}}
    t = parity_table(_evaluation(), truth, {"projections": 2110, "galaxies": 700},
                     latent_dim=10, beta=7e-5, source="mock")
    assert tuple(t.columns) == PARITY_COLUMNS and len(t) == len(PAPER)
    rows = dict(zip(t["quantity"], t["ours"], strict=True))
    assert rows[PAPER["error"].quantity] == "6.2 %"
    assert rows[PAPER["flow_vs_prior"].quantity] == "flow 6.2 % vs prior 6.4 %"
    assert rows[PAPER["coverage68"].quantity] == "66.0 % (95 %: 87.0 %)"
    assert rows[PAPER["projections"].quantity] == "2110"
    assert rows[PAPER["latent_beta"].quantity] == "10, 7e-05"
    paper = dict(zip(t["quantity"], t["paper"], strict=True))
    assert paper[PAPER["projections"].quantity] == "24248"
    assert paper[PAPER["error"].quantity] == "~10 %"
    assert set(t["source"]) == {"mock"} and all(t["reference"])
    assert "acceptance: pass" in t.loc[t["quantity"] == PAPER["error"].quantity, "note"].item()
    with pytest.raises(ValueError, match="source"):
        parity_table(_evaluation(), truth, {"projections": 1, "galaxies": 1}, latent_dim=10,
                     beta=7e-5, source="sky")


def test_from_files_and_a_bad_report(tmp_path) -> None:
    for name, obj in (("e.json", _evaluation(0.2)), ("t.json", {"source": "flow"}),
                      ("s.json", {"projections": 5, "galaxies": 2})):
        (tmp_path / name).write_text(json.dumps(obj))
    t = parity_from_files(tmp_path / "e.json", tmp_path / "t.json", tmp_path / "s.json",
                          latent_dim=4, beta=1e-3, source="archive")
    assert t.loc[0, "ours"] == "20.0 %" and set(t["source"]) == {"archive"}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON report"):
        parity_from_files(tmp_path / "bad.json", tmp_path / "t.json", tmp_path / "s.json",
                          latent_dim=4, beta=1e-3, source="mock")
