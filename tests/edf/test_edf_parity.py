"""The edf study's paper-vs-ours table on fabricated tables, and its two measured numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galforge.edf.parity import PAPER, paper_preset_parameters, parity_table
from galforge.io import InputError
from galforge.parity import PARITY_COLUMNS

TRAINING = {"model_id": "all", "n_train": 1000, "epochs": 5, "n_parameters": 288_348,
            "seconds": 120.0, "device": "cpu"}
TRUTH = {"n_heldout": 20, "floor": "pairs of fresh mock draws", "floor_factor": 3.0,
         "required_fraction_passing": 0.8, "fraction_heldout_passing": 0.95,
         "median_ratio_to_floor": 1.6, "spearman_mmd_vs_abs_dlogm": 0.85,
         "min_spearman": 0.3, "pass_heldout": True, "pass_mmd_rises_with_dlogm": False}
CV = {"mode": "leave_out", "n_models": 2, "n_leave_out": 10, "k": 5}


def mmd_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    d = rng.uniform(-1.5, 1.5, 40)
    return pd.DataFrame({"kind": ["model"] * 20 + ["data"] * 20, "dlogm": d,
                         "mmd_kernel": 0.01 + 0.1 * np.abs(d)})


def table(**kw):
    args = {"training": TRAINING, "truth": TRUTH, "mmd": mmd_table(), "cv": CV,
            "paper_parameters": 2_937_788, "scale": "demo", "source": "mock",
            "sampling": {"n": 20_000, "seconds": 4.0, "seconds_per_million": 200.0,
                         "device": "cpu", "threads": 1}}
    args.update(kw)
    return parity_table(**args)


def test_the_rows_put_the_paper_beside_this_run():
    t = table()
    assert tuple(t.columns) == PARITY_COLUMNS
    assert list(t["paper"]) == [PAPER[k].text for k in
                                ("parameters", "training", "cv", "heldout", "rise", "sampling")]
    assert set(t["source"]) == {"mock"}
    ours = dict(zip(t["quantity"], t["ours"], strict=True))
    assert ours[PAPER["parameters"].quantity] == "2,937,788"
    assert ours[PAPER["training"].quantity] == "5 epochs, 2.0 min on cpu"
    assert ours[PAPER["cv"].quantity] == "2 × 10, drawn independently"
    assert ours[PAPER["heldout"].quantity].startswith("95% of 20 within 3.0×")
    assert ours[PAPER["rise"].quantity] == "Spearman 0.85"
    assert ours[PAPER["sampling"].quantity] == "200.0 s (cpu)"
    notes = dict(zip(t["quantity"], t["note"], strict=True))
    assert notes[PAPER["heldout"].quantity].endswith("pass")
    assert notes[PAPER["rise"].quantity].endswith("fail")  # the report's flag, not recomputed
    assert "288,348" in notes[PAPER["parameters"].quantity]


def test_kfold_and_no_timing():
    t = table(cv={**CV, "mode": "kfold"}, sampling=None, source="archive")
    assert "5-fold partition" in set(t["ours"])
    assert PAPER["sampling"].quantity not in set(t["quantity"])
    assert set(t["source"]) == {"archive"}


@pytest.mark.parametrize(("part", "key"), [("training", "seconds"),
                                           ("truth", "spearman_mmd_vs_abs_dlogm")])
def test_a_missing_number_is_named(part, key):
    broken = {k: v for k, v in {"training": TRAINING, "truth": TRUTH}[part].items() if k != key}
    with pytest.raises(InputError, match=key):
        table(**{part: broken})


def test_a_table_without_the_mmd_columns_is_refused():
    with pytest.raises(InputError, match="mmd_kernel"):
        table(mmd=mmd_table().drop(columns="mmd_kernel"))


def test_the_paper_preset_counts_the_documented_parameters():
    # the flow module's docstring and the README state 2,937,788 (the seed's code: 2,939,188)
    assert paper_preset_parameters() == 2_937_788

