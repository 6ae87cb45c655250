"""The environment study's paper-vs-ours table on tiny fabricated tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from galforge.environment import steps
from galforge.environment.parity import PAPER, parity_from_files, parity_table
from galforge.io import InputError
from galforge.parity import PARITY_COLUMNS, read_parity


def env_table() -> pd.DataFrame:
    rho = {"z1": {"n_map": -0.94, "n_r5": -0.95, "n_r1": -0.70, "log_sigma_5": -0.82,
                  "d_nn": 0.56, "n_r2": -0.85},
           "z2": {"n_map": 0.97, "n_r5": 0.60, "n_r1": 0.10, "log_sigma_5": 0.30,
                  "d_nn": -0.20, "n_r2": 0.40}}
    return pd.DataFrame([{"latent_name": z, "latent": int(z[1:]) - 1, "parameter": p, "rho": r}
                         for z, by in rho.items() for p, r in by.items()])


def moments_table() -> pd.DataFrame:
    """z1 follows the cos dipole most closely, but the row names the best latent after z1."""
    rho = {"dipole_cos": {"z1": 0.9, "z2": -0.8, "z3": 0.1, "n_map": 0.02},
           "dipole_sin": {"z1": 0.0, "z2": 0.3, "z3": 0.79, "n_map": -0.09},
           "quad_cos": {"z1": 0.0, "z2": 0.2, "z3": -0.1, "n_map": 0.05},
           "quad_sin": {"z1": 0.1, "z2": 0.0, "z3": -0.6, "n_map": 0.01}}
    return pd.DataFrame([{"moment": m, "variable": v, "latent": 0 if v == "n_map" else int(v[1:]),
                          "rho": r, "abs_rho": abs(r)}
                         for m, by in rho.items() for v, r in by.items()])


ANISOTROPY = {"components": {
    m: {"best_latent": b, "rho_best_latent": r, "rho_n_map": c}
    for m, b, r, c in (("dipole_cos", "z2", -0.73, 0.04), ("dipole_sin", "z3", 0.69, -0.06),
                       ("quad_cos", "z5", 0.52, -0.10), ("quad_sin", "z6", 0.58, 0.06))}}
TRUTH = {"source": "mock", "top_latent_abs_rho_density_map": 0.93, "pass_top_latent": True,
         "anisotropy": ANISOTROPY, "pass_anisotropy": True}


def test_mock_table_puts_the_paper_beside_ours():
    t = parity_table(env_table(), TRUTH, moments_table(), source="mock")
    assert tuple(t.columns) == PARITY_COLUMNS and len(t) == 5 and set(t["source"]) == {"mock"}
    assert list(t["paper"]) == [PAPER[k].text for k in PAPER]
    # z2 tracks n_map more closely than z1 does: the table says so
    assert t["ours"][0] == "z2 (|ρ| = 0.970 with n_map)"
    # z1's strongest density parameter first, every parameter in the note, by |rho|
    assert t["ours"][1] == "0.950 (n_r5)"
    assert t["note"][1] == ("z1 with n_r5 0.950; n_map 0.940; n_r2 0.850; log_sigma_5 0.820; "
                            "n_r1 0.700; d_nn 0.560")
    assert t["ours"][2] == "0.930" and "pass" in t["note"][2]
    # the paper's second finding: the best latent after z1 per moment, and the count's |rho|
    assert t["ours"][3] == ("dipole cos θ: z2 (0.800); dipole sin θ: z3 (0.790); "
                            "quadrupole cos 2θ: z2 (0.200); quadrupole sin 2θ: z3 (0.600)")
    assert "n_map reaches |ρ| ≤ 0.090" in t["note"][3]
    assert t["ours"][4].startswith("dipole cos θ: z2 (0.730); dipole sin θ: z3 (0.690)")
    assert "pass" in t["note"][4] and "0.040, 0.060, 0.100, 0.060" in t["note"][4]
    # without the moments table, no row of the second finding
    assert len(parity_table(env_table(), TRUTH, source="mock")) == 3


def test_archive_table_has_no_truth_row():
    t = parity_table(env_table(), {"source": "archive"}, moments_table(), source="archive")
    assert len(t) == 3 and set(t["source"]) == {"archive"}
    assert "true" not in " ".join(t["quantity"])
    assert t["quantity"][2] == PAPER["anisotropy"].quantity


def test_missing_columns_or_z1_are_named():
    with pytest.raises(InputError, match="rho"):
        parity_table(env_table().drop(columns="rho"), None, source="mock")
    with pytest.raises(InputError, match="z1"):
        parity_table(env_table().query("latent_name == 'z2'"), None, source="mock")


def test_step_writes_the_three_tables(tmp_path):
    env_table().to_csv(tmp_path / "env.csv", index=False)
    moments_table().to_csv(tmp_path / "moments.csv", index=False)
    (tmp_path / "truth.json").write_text(json.dumps(TRUTH))
    out = {k: tmp_path / f"parity.{k}" for k in ("csv", "md", "html")}
    table = steps.parity(tmp_path / "env.csv", tmp_path / "truth.json",
                         moments_table=tmp_path / "moments.csv", out_csv=out["csv"],
                         out_md=out["md"], out_html=out["html"], source="mock")
    pd.testing.assert_frame_equal(read_parity(out["csv"]), table)
    assert len(table) == 5
    assert out["md"].read_text().startswith("| quantity") and "Gim" in out["html"].read_text()
    with pytest.raises(InputError, match="nope.csv"):
        parity_from_files(tmp_path / "nope.csv", tmp_path / "truth.json",
                          tmp_path / "moments.csv", source="mock")
    with pytest.raises(InputError, match="none.csv"):
        parity_from_files(tmp_path / "env.csv", tmp_path / "truth.json",
                          tmp_path / "none.csv", source="mock")
    moments_table().drop(columns="abs_rho").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="abs_rho"):
        parity_from_files(tmp_path / "env.csv", tmp_path / "truth.json",
                          tmp_path / "bad.csv", source="mock")
