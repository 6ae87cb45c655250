"""The alignment parity table: rows from fabricated reports; Samuroff et al. beside ours."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data_path
from galforge.alignment.parity import PAPER, parity_from_files, parity_table, samuroff_beside_ours
from galforge.io import InputError
from galforge.parity import PARITY_COLUMNS


def _checks(frac=0.8, ok=True):
    c = {"wgp_fraction_within_2sigma": frac, "wgp_model_draws": 4,
         "cos2_satellites_model": 0.45, "cos2_satellites_simulation": 0.46, "ks_p_q": 0.3,
         "ks_p_s": 0.2, "pass_wgp": ok, "pass_cos2_satellites": True, "pass_axis_ratios": True}
    return {"gan": c, "diffusion": dict(c, wgp_fraction_within_2sigma=0.5, pass_wgp=False)}


_SO3 = {"blobs2": {"mmd_ratio": 1.2}, "pass_blobs2": True,
        "line": {"mmd_ratio": 2.5}, "pass_line": False}


def _wgp(rp=None, amp=0.3):
    rp = np.geomspace(0.1, 10, 6) if rp is None else rp
    return pd.DataFrame({"rp": rp, "wgp": amp / rp, "wgp_err": 0.05 / rp,
                         "wgg": 10 / rp, "wgg_err": 1 / rp})


def test_rows_follow_the_reports():
    truth = {"wgp_mock": {"wgp_fraction_within_1sigma": 0.9}, "pass_wgp_mock": True}
    t = parity_table(checks=_checks(), so3=_SO3, wgp=_wgp(), source="mock", truth=truth)
    assert list(t.columns) == list(PARITY_COLUMNS)
    by = dict(zip(t["quantity"], t["ours"], strict=True))
    assert by[PAPER["gan_wgp"].quantity] == "80% of r_p bins within 2σ"
    assert by[PAPER["diffusion_wgp"].quantity] == "50% of r_p bins within 2σ"
    assert by[PAPER["so3"].quantity] == "blobs2: MMD 1.20× floor, line: MMD 2.50× floor"
    assert by[PAPER["mock"].quantity] == "90% of r_p bins within 1σ"
    notes = dict(zip(t["quantity"], t["note"], strict=True))
    assert notes[PAPER["diffusion_wgp"].quantity].endswith("fail")
    assert "line fail" in notes[PAPER["so3"].quantity]
    assert by[PAPER["samuroff"].quantity] == "n/a"  # no file given: said, not hidden
    assert (t["source"] == "mock").all()


def test_samuroff_matching_interpolates_and_counts_agreement():
    rp = np.geomspace(0.2, 40, 9)
    theirs = {"rp": np.geomspace(0.1, 50, 12)}
    theirs["wgp"] = 0.3 / theirs["rp"]
    theirs["wgp_err"] = 0.01 / theirs["rp"]
    s = samuroff_beside_ours(_wgp(rp, 0.3), theirs)
    assert s["n_bins"] == 9 and s["n_within_errors"] == 9
    assert s["median_rp_wgp_ours"] == pytest.approx(0.3)
    assert s["median_rp_wgp_theirs"] == pytest.approx(0.3, rel=1e-9)
    s = samuroff_beside_ours(_wgp(rp, 0.6), theirs)  # twice theirs: many errors off
    assert s["n_within_errors"] == 0
    assert samuroff_beside_ours(_wgp(np.array([0.01, 0.05]), 0.3), theirs)["n_bins"] == 0


def test_bad_reports_name_the_key(tmp_path):
    bad = _checks()
    del bad["gan"]["ks_p_q"]
    with pytest.raises(InputError, match="ks_p_q"):
        parity_table(checks=bad, so3=_SO3, wgp=_wgp(), source="mock")
    with pytest.raises(InputError, match="diffusion"):
        parity_table(checks={"gan": _checks()["gan"]}, so3=_SO3, wgp=_wgp(), source="mock")
    with pytest.raises(InputError, match="w.csv"):
        parity_from_files(checks=tmp_path / "c.json", so3=tmp_path / "c.json",
                          wgp=tmp_path / "w.csv", source="mock")
    _wgp().to_csv(tmp_path / "w.csv", index=False)
    (tmp_path / "c.json").write_text("[1]")
    with pytest.raises(InputError, match="c.json"):
        parity_from_files(checks=tmp_path / "c.json", so3=tmp_path / "c.json",
                          wgp=tmp_path / "w.csv", source="mock")


@pytest.mark.archive
def test_samuroff_row_from_the_real_file(tmp_path):
    (tmp_path / "checks.json").write_text(json.dumps(_checks()))
    (tmp_path / "so3.json").write_text(json.dumps(_SO3))
    _wgp(np.geomspace(0.1, 10, 6), 0.4).to_csv(tmp_path / "wgp.csv", index=False)
    t = parity_from_files(checks=tmp_path / "checks.json", so3=tmp_path / "so3.json",
                          wgp=tmp_path / "wgp.csv", source="archive",
                          samuroff=shared_data_path("ia/2pt_tng_fidcovw_iteration4.fits"))
    row = t[t["quantity"] == PAPER["samuroff"].quantity].iloc[0]
    assert row["ours"] == "0.400 h^-2 Mpc^2"
    # their r_p w_g+ at 0.13-10 h^-1 Mpc is 0.3-0.5 h^-2 Mpc^2 (the file's rows)
    assert 0.25 < float(row["paper"].split()[0]) < 0.55
    assert "TNG300-1" in row["note"] and "5 of our r_p bins" in row["note"]  # 0.1 lies below their 0.13


def test_find_samuroff_looks_in_the_env_then_the_folders(tmp_path, monkeypatch):
    from galforge.alignment.correlations import SAMUROFF_FILE, find_samuroff

    monkeypatch.delenv("GALFORGE_SHARED_DATA", raising=False)
    a, b = tmp_path / "a", tmp_path / "b"
    assert find_samuroff(a, None, b) is None
    (b / SAMUROFF_FILE).parent.mkdir(parents=True)
    (b / SAMUROFF_FILE).write_bytes(b"x")
    assert find_samuroff(a, b) == (b / SAMUROFF_FILE).resolve()
    (a / SAMUROFF_FILE).parent.mkdir(parents=True)
    (a / SAMUROFF_FILE).write_bytes(b"x")
    monkeypatch.setenv("GALFORGE_SHARED_DATA", str(a))
    assert find_samuroff(b) == (a / SAMUROFF_FILE).resolve()
