"""BIC of the model grid: likelihood, table, and recovery of a planted number of factors.

Measured on synthetic spectra (galforge.spectra._testing, non-linear factors, masks), one
CPU thread, VAEs d = 1…7, BIC = k ln n − 2 ln L with n the validation spectra:

* P = 4, N = 4000 (600 validation), S/N 15–40, demo preset, demo training (20 epochs,
  30–40 s per model): mean reduced χ² d1…d7 = 1.766, 1.184, 1.105, 1.018, 1.006, 1.006,
  1.006; tempered BIC − min = 312, 78, 43, 0.27, 0, 6.4, 12.7 → minimum at d = 5 = P + 1,
  d = 4 a hair above. The per-pixel Gaussian BIC falls all the way to d = 7 (its ln L
  still gains ~200 from d = 6 to 7, against a penalty of 6.4); the ELBO BIC picks d = 5.
* P = 3, N = 800 (200 validation), S/N 8–16, tiny preset, 12 epochs (the fast test
  below): χ² 1.217, 1.119, 1.030, 1.018, 1.018 → tempered minimum at d = 3 (also for a
  second data seed); the Gaussian BIC and the ELBO BIC pick d = 4. With P = 2 the
  tempered minimum was at d = 2, the Gaussian one at d = 4, the ELBO one at d = 3.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galforge.io import InputError
from galforge.spectra._testing import make_lowrank_spectra, write_preprocessed
from galforge.spectra.bic import (
    best_model,
    bic_summary,
    bic_table,
    chosen_run,
    evaluate_model,
    load_evaluations,
    read_bic_summary,
    read_bic_table,
    tempered_log_likelihood,
    write_bic_table,
    write_evaluation,
)
from galforge.spectra.presets import PRESETS as _STUDY_PRESETS

MODEL_PRESETS = {scale: p["model"] for scale, p in _STUDY_PRESETS.items()}


def test_tempered_log_likelihood() -> None:
    chi2 = np.array([4000.0, 8200.0, 3900.0])
    npix = np.array([4000.0, 4100.0, 3900.0])
    log_l, s2 = tempered_log_likelihood(chi2, npix)
    assert s2 == pytest.approx((1.0 + 2.0 + 1.0) / 3)
    assert log_l == pytest.approx(-1.5 * (math.log(2 * math.pi * s2) + 1))
    # scaling every χ² by c moves ln L by −(n/2) ln c: only relative changes matter
    log_l2, _ = tempered_log_likelihood(1.1 * chi2, npix)
    assert log_l2 - log_l == pytest.approx(-1.5 * math.log(1.1))
    with pytest.raises(ValueError, match="weighted pixel"):
        tempered_log_likelihood(chi2, np.array([1.0, 0.0, 1.0]))


def _row(mid: str, kind: str, conds: list[str], d: int, log_l: float, n: int = 500) -> dict:
    return {"model_id": mid, "kind": kind, "conditions": conds, "latent_dim": d,
            "n_conditions": len(conds), "k": d + len(conds), "n": n, "log_l": log_l,
            "bic": 0.0, "chi2_nu": 1.0}


def test_bic_table_marks_the_best_models(tmp_path: Path) -> None:
    rows = [
        _row("vae-d1", "vae", [], 1, -900.0),
        _row("vae-d2", "vae", [], 2, -800.0),
        _row("vae-d3", "vae", [], 3, -798.0),  # +2 in ln L < ln(500)/1 … not worth it
        _row("cvae-mstar-d1", "cvae", ["log_mstar"], 1, -850.0),
        _row("cvae-mstar-d2", "cvae", ["log_mstar"], 2, -790.0),
        _row("cvae-mstar+sfr-d1", "cvae", ["log_mstar", "log_sfr"], 1, -795.0),
    ]
    t = bic_table(rows)
    assert list(t["model_id"]) == ["cvae-mstar-d1", "cvae-mstar-d2", "cvae-mstar+sfr-d1",
                                   "vae-d1", "vae-d2", "vae-d3"]
    bic = dict(zip(t["model_id"], t["bic"], strict=True))
    assert bic["vae-d2"] == pytest.approx(2 * math.log(500) + 1600.0)  # recomputed, not copied
    assert t.loc[t["best_in_kind"], "model_id"].tolist() == ["cvae-mstar-d2", "vae-d2"]
    assert set(t.loc[t["best_in_group"], "model_id"]) == {"cvae-mstar-d2", "cvae-mstar+sfr-d1",
                                                          "vae-d2"}
    assert t.loc[t["model_id"] == "vae-d2", "delta_bic"].item() == 0.0
    assert (t["delta_bic"] >= 0).all()
    assert t.loc[t["model_id"] == "cvae-mstar+sfr-d1", "conditions"].item() == "mstar+sfr"
    assert best_model(t) == "vae-d2"
    assert best_model(t, "cvae", "mstar+sfr") == "cvae-mstar+sfr-d1"
    with pytest.raises(InputError, match="listed twice"):
        bic_table(rows + [rows[0]])
    with pytest.raises(InputError, match="no cvae model"):
        best_model(t[t["kind"] == "vae"], "cvae")
    # JSON round trip, and a bad file is named
    paths = [write_evaluation(r, tmp_path / f"{r['model_id']}.json") for r in rows]
    pd.testing.assert_frame_equal(bic_table(load_evaluations(paths)), t)
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_id": "vae-d9"}')
    with pytest.raises(InputError, match="bad.json: key 'kind' is missing"):
        load_evaluations([bad])


def _seed_rows(bics: dict[int, list[float]], seeds: tuple[int, ...] = (42, 7, 9),
               n: int = 400) -> list[dict]:
    """Evaluations of VAEs d → their BIC in each repeat (repeat r trained with seeds[r])."""
    rows = []
    for d, values in bics.items():
        for r, b in enumerate(values):
            rows.append({**_row(f"vae-d{d}", "vae", [], d, (d * math.log(n) - b) / 2, n),
                         "repeat": r, "seed": seeds[r], "chi2_nu": 1.0 + 0.1 / d + 0.01 * r})
    return rows


def test_the_mean_over_seeds_chooses_when_the_seeds_disagree(tmp_path: Path) -> None:
    """Issue 11: the run seed alone (repeat 0) picks d = 6, the other two seeds d = 4; the
    mean BIC picks d = 4 (a choice by repeat 0 alone, as before, would say 6)."""
    bics = {3: [1030.0, 1031.0, 1029.0], 4: [1003.0, 1000.0, 1000.0],
            5: [1002.0, 1003.0, 1004.0], 6: [1000.0, 1004.0, 1005.0]}
    t = bic_table(_seed_rows(bics))
    assert len(t) == 12 and list(t["repeat"][:3]) == [0, 1, 2]
    assert t.loc[t["bic"].sub([b for d in bics for b in bics[d]]).abs().gt(1e-9)].empty
    # each seed's own choice
    own = t[t["best_in_kind"]].set_index("seed")["model_id"].to_dict()
    assert own == {42: "vae-d6", 7: "vae-d4", 9: "vae-d4"}
    assert best_model(t[t["repeat"] == 0]) == "vae-d6"  # the one-seed answer
    s = bic_summary(t).set_index("model_id")
    assert list(s.index) == ["vae-d3", "vae-d4", "vae-d5", "vae-d6"]
    assert s.loc["vae-d4", "best_in_kind"] and s["best_in_kind"].sum() == 1
    assert best_model(s.reset_index()) == "vae-d4"
    assert s.loc["vae-d4", "bic_mean"] == pytest.approx(1001.0)
    assert s.loc["vae-d6", "bic_std"] == pytest.approx(np.std([1000, 1004, 1005], ddof=1))
    assert (s.loc["vae-d6", "bic_min"], s.loc["vae-d6", "bic_max"]) == (1000.0, 1005.0)
    assert s.loc["vae-d6", "delta_bic"] == pytest.approx(2.0)
    # SE of the difference of two means of independent trainings
    se = math.sqrt(np.var([1000, 1004, 1005], ddof=1) / 3 + np.var([1003, 1000, 1000], ddof=1) / 3)
    assert s.loc["vae-d6", "delta_bic_se"] == pytest.approx(se)
    assert s.loc["vae-d4", "delta_bic"] == 0.0 and s.loc["vae-d4", "delta_bic_se"] == 0.0
    assert s["n_seeds"].tolist() == [3, 3, 3, 3]
    assert s["n_seeds_best"].to_dict() == {"vae-d3": 0, "vae-d4": 2, "vae-d5": 0, "vae-d6": 1}
    assert s.loc["vae-d4", "chi2_nu_mean"] == pytest.approx(1.025 + 0.01)
    # the representative of d = 4: its lowest BIC (a tie of repeats 1 and 2: the first)
    assert chosen_run(s.reset_index()) == ("vae-d4", 1, 7)
    assert (s.loc["vae-d6", "representative_repeat"], s.loc["vae-d6", "representative_seed"]) \
        == (0, 42)
    # written and read back
    write_bic_table(t, tmp_path / "bic.csv", tmp_path / "bic.md")
    write_bic_table(bic_summary(t), tmp_path / "s.csv", tmp_path / "s.md")
    back = read_bic_summary(tmp_path / "s.csv")
    assert chosen_run(back) == ("vae-d4", 1, 7) and (back["conditions"] == "").all()
    assert read_bic_table(tmp_path / "bic.csv")["seed"].tolist()[:3] == [42, 7, 9]
    with pytest.raises(InputError, match="s.md: not a readable CSV|column"):
        read_bic_summary(tmp_path / "s.md")
    with pytest.raises(InputError, match="bic.csv: column.*'bic_mean'"):
        read_bic_summary(tmp_path / "bic.csv")


def test_summary_needs_the_same_repeats_everywhere_and_handles_one_seed() -> None:
    rows = _seed_rows({3: [1010.0, 1012.0], 4: [1000.0, 1003.0]})
    with pytest.raises(InputError, match=r"model 'vae-d4' has repeats \[0\], others \[0, 1\]"):
        bic_summary(bic_table(rows[:3]))
    one = bic_summary(bic_table([r for r in rows if r["repeat"] == 0]))
    assert one["n_seeds"].tolist() == [1, 1] and one["bic_std"].isna().all()
    assert one["delta_bic_se"].isna().all() and one["delta_bic"].tolist() == [10.0, 0.0]
    # evaluations of a one-seed grid (no repeat, no seed) are repeat 0, seed -1
    old = [{k: v for k, v in r.items() if k not in ("repeat", "seed")} for r in rows[::2]]
    t = bic_table(old)
    assert t["repeat"].tolist() == [0, 0] and t["seed"].tolist() == [-1, -1]
    with pytest.raises(InputError, match="repeat 0 is listed twice"):
        bic_table(old + old[:1])


def _grid(path: Path, root: Path, dims: list[int], model: dict, train: dict,
          val_fraction: float) -> pd.DataFrame:
    from galforge.spectra.training import train_spectra_model

    rows = []
    for d in dims:
        out = root / f"vae-d{d}"
        train_spectra_model(path, {**model, "latent_dim": d}, train, seed=1,
                            val_fraction=val_fraction, out_model=out / "model.pt",
                            out_metrics=out / "metrics.csv", workroot=out / "work", progress=False)
        rows.append(evaluate_model(out / "model.pt", path))
    return bic_table(rows)


def test_bic_recovers_the_planted_number_of_factors_fast(tmp_path: Path) -> None:
    """P = 3 factors, 800 spectra, tiny models d = 1…5: the minimum lies at P ± 1."""
    p = write_preprocessed(tmp_path / "s.h5",
                           make_lowrank_spectra(800, 3, snr=(8.0, 16.0), seed=11))
    t = _grid(p, tmp_path, [1, 2, 3, 4, 5], dict(MODEL_PRESETS["tiny"]),
              {"epochs": 12, "batch_size": 64, "lr": 2e-3}, 0.25)
    assert (t["n"] == 200).all() and list(t["k"]) == [1, 2, 3, 4, 5]
    best = int(t.loc[t["best_in_kind"], "latent_dim"].item())
    assert abs(best - 3) <= 1, t[["model_id", "chi2_nu", "bic"]]
    # the fit improves steeply up to P and flattens beyond (χ² per pixel, floor 1)
    chi = t.set_index("latent_dim")["chi2_nu"]
    assert chi[1] > chi[3] + 0.1 and chi[5] > 0.98 and abs(chi[5] - chi[4]) < 0.02
    # the evaluation refuses spectra the model was not trained on
    other = write_preprocessed(tmp_path / "o.h5", make_lowrank_spectra(800, 3, seed=12) | {
        "key": np.arange(800, dtype=np.int64)})
    with pytest.raises(InputError, match="not the spectra the model was trained on"):
        evaluate_model(tmp_path / "vae-d1" / "model.pt", other)


@pytest.mark.slow
def test_bic_recovers_four_factors_at_demo_scale(tmp_path: Path) -> None:
    """P = 4, 4000 spectra × 4000 px, demo models and training (≈ 40 s per model)."""
    from galforge.spectra.presets import PRESETS

    p = write_preprocessed(tmp_path / "s.h5", make_lowrank_spectra(4000, 4, seed=11))
    t = _grid(p, tmp_path, [2, 3, 4, 5, 6], PRESETS["demo"]["model"], PRESETS["demo"]["train"],
              0.15)
    best = int(t.loc[t["best_in_kind"], "latent_dim"].item())
    assert abs(best - 4) <= 1, t[["model_id", "chi2_nu", "bic"]]
