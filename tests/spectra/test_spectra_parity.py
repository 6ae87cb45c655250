"""The spectra study's paper-vs-ours table on tiny fabricated tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galforge.io import InputError
from galforge.parity import PARITY_COLUMNS, read_parity
from galforge.spectra import steps
from galforge.spectra.analysis import AnalysisArrays, write_analysis_arrays
from galforge.spectra.parity import PAPER, line_hits, parity_table, shap_share_below

WAVE = np.linspace(3500.0, 8000.0, 901)  # 5 Å pixels


def bump(center: float, height: float = 1.0) -> np.ndarray:
    return height * np.exp(-0.5 * ((WAVE - center) / 4.0) ** 2)


def shap_curves() -> np.ndarray:
    """D1 peaks on [O III] 5008 and [O II], D2 on Hα; pixels below 3600 Å unobserved."""
    base = np.full_like(WAVE, 0.01)
    d1 = base + bump(5008.0, 3.0) + bump(3729.0, 2.0)
    d2 = base + bump(6566.0, 2.0) + bump(7200.0, 0.5)
    out = np.stack([d1, d2])
    out[:, WAVE < 3600.0] = np.nan
    return out


def bic_frame(n_seeds: int = 3) -> pd.DataFrame:
    """A BIC summary over the seeds (the columns the parity table reads)."""
    rows = [("vae-d1", "vae", "", 1, 130.0), ("vae-d2", "vae", "", 2, 120.0),
            ("vae-d3", "vae", "", 3, 125.0), ("cvae-ssfr-d1", "cvae", "ssfr", 1, 128.0),
            ("cvae-ssfr-d2", "cvae", "ssfr", 2, 129.0)]
    t = pd.DataFrame(rows, columns=["model_id", "kind", "conditions", "latent_dim", "bic_mean"])
    return t.assign(n_seeds=n_seeds, bic_std=1.0, delta_bic=0.0, delta_bic_se=0.5,
                    best_in_kind=False, chi2_nu_mean=1.0, representative_repeat=1,
                    representative_seed=77)


PCA = pd.DataFrame({"component": ["D1", "D2"], "fraction": [0.614, 0.386]})


def test_share_below_5000_weighs_every_d_the_same():
    below, pixels = shap_share_below(WAVE, shap_curves())
    observed = WAVE >= 3600.0
    assert pixels == pytest.approx(((WAVE < 5000) & observed).sum() / observed.sum())
    # D1: [O II] below, [O III] at 5008 above; D2: everything above
    assert 0.1 < below < 0.35
    flat = np.ones((2, WAVE.size))
    assert shap_share_below(WAVE, flat)[0] == pytest.approx(shap_share_below(WAVE, flat)[1])
    with pytest.raises(InputError, match="NaN"):
        shap_share_below(WAVE, np.full((1, WAVE.size), np.nan))


def test_line_hits_name_the_d_of_each_line():
    hits = line_hits(WAVE, shap_curves(), ["D1", "D2"])
    assert hits == {"[O II]": ["D1"], "[O III]": ["D1"], "Hα": ["D2"]}
    # a peak 30 Å off the line does not count
    shifted = np.stack([np.full_like(WAVE, 0.01) + bump(6595.0)])
    assert line_hits(WAVE, shifted, ["D1"])["Hα"] == []


def test_table_puts_the_paper_beside_ours():
    t = parity_table(bic_frame(), PCA, WAVE, shap_curves(), ["D1", "D2"],
                     {"source": "mock", "n_planted": 4}, source="mock")
    assert tuple(t.columns) == PARITY_COLUMNS and len(t) == 4 and set(t["source"]) == {"mock"}
    assert list(t["paper"]) == ["4", "34 / 32 / 16 / 18 %",
                                PAPER["shap_region"].text, "[O II], [O III], Hα"]
    assert t["ours"][0] == "2"
    assert t["note"][0] == ("VAE grid d = 1-3, lowest BIC averaged over 3 training seeds; "
                            "lowest-BIC CVAE: ssfr d = 1; the mock plants 4 parameters")
    assert t["ours"][1] == "61 / 39 %" and t["quantity"][1].endswith("D1-D2")
    assert "vae-d2 (seed 77)" in t["note"][1]
    one = parity_table(bic_frame(1), PCA, WAVE, shap_curves(), ["D1", "D2"], None,
                       source="mock")
    assert one["note"][0] == "VAE grid d = 1-3, one training seed; lowest-BIC CVAE: ssfr d = 1"
    assert t["ours"][2].endswith("% of the pixels")
    assert t["ours"][3] == "[O II] (D1), [O III] (D1), Hα (D2)"


def test_archive_table_and_missed_lines():
    curves = shap_curves()[:1]
    t = parity_table(bic_frame(), PCA.iloc[:1], WAVE, curves, ["D1"], {"source": "archive"},
                     source="archive")
    assert set(t["source"]) == {"archive"} and "plants" not in t["note"][0]
    assert t["ours"][3] == "[O II] (D1), [O III] (D1); not Hα"
    with pytest.raises(InputError, match="no VAE"):
        parity_table(bic_frame().query("kind == 'cvae'"), PCA, WAVE, curves, ["D1"], None,
                     source="mock")


def test_step_reads_the_analysis_files(tmp_path):
    bic_frame().to_csv(tmp_path / "bic.csv", index=False)  # bic_summary.csv in the workflow
    PCA.assign(variance=1.0, cumulative=[0.614, 1.0]).to_csv(tmp_path / "pca.csv", index=False)
    (tmp_path / "truth.json").write_text(json.dumps({"source": "mock", "n_planted": 4}))
    k, npix = 2, WAVE.size
    write_analysis_arrays(AnalysisArrays(
        best_vae="vae-d2", best_cvae="", wave=WAVE, pca_components=np.eye(k),
        pca_mean=np.zeros(k), pca_variance=np.ones(k), sweep_values=np.zeros((k, 3)),
        sweep_spectra=np.zeros((k, 3, npix)), cvae_sweeps={}, shap_mean_abs=shap_curves(),
        shap_example_rows=np.arange(1), shap_example_flux=np.zeros((1, npix)),
        shap_example_values=np.zeros((1, k, npix)), shap_example_D=np.zeros((1, k)),
        shap_additivity_error=0.0, shap_relative_additivity_error=0.0,
        shap_components=["D1", "D2"],
    ), tmp_path / "analysis.h5")
    out = {k: tmp_path / f"parity.{k}" for k in ("csv", "md", "html")}
    table = steps.parity(tmp_path / "bic.csv", tmp_path / "pca.csv", tmp_path / "analysis.h5",
                         tmp_path / "truth.json", out_csv=out["csv"], out_md=out["md"],
                         out_html=out["html"], source="mock")
    pd.testing.assert_frame_equal(read_parity(out["csv"]), table)
    assert table["ours"][3] == "[O II] (D1), [O III] (D1), Hα (D2)"
    assert "Iwasaki" in out["html"].read_text()
    (tmp_path / "bad.csv").write_text("x\n1\n")
    with pytest.raises(InputError, match="bad.csv"):
        steps.parity(tmp_path / "bic.csv", tmp_path / "bad.csv", tmp_path / "analysis.h5",
                     tmp_path / "truth.json", out_csv=out["csv"], out_md=out["md"],
                     out_html=out["html"], source="mock")
