"""Latent analysis: PCA of the latents, property maps, sweeps, MI and SHAP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galforge.spectra._testing import write_preprocessed
from galforge.spectra.analysis import (
    AnalysisSettings,
    best_mi_per_property,
    binned_property_means,
    choose_examples,
    cvae_condition_sweep,
    decode_component_sweep,
    fit_latent_pca,
    importance_peaks,
    latent_catalog,
    mean_abs_shap,
    mi_table,
    pca_variance_table,
    shap_values,
    sweep_values,
)
from galforge.spectra.presets import PRESETS as _STUDY_PRESETS

MODEL_PRESETS = {scale: p["model"] for scale, p in _STUDY_PRESETS.items()}


def test_settings_reject_unknown_keys() -> None:
    assert AnalysisSettings.from_dict({}) == AnalysisSettings()
    with pytest.raises(ValueError, match="n_binz: unknown key"):
        AnalysisSettings.from_dict({"n_binz": 3})
    with pytest.raises(ValueError, match="sweep_quantiles"):
        AnalysisSettings(sweep_quantiles=(0.9, 0.1))
    s = AnalysisSettings(n_bins=8)
    assert AnalysisSettings.from_dict(s.to_dict()) == s


# -- PCA ------------------------------------------------------------------------------------------
def _correlated_latents(n: int = 3000, d: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    return rng.standard_normal((n, d)) @ a + rng.standard_normal(d)


def test_pca_matches_sklearn_and_fractions_sum_to_one() -> None:
    from sklearn.decomposition import PCA

    mu = _correlated_latents()
    pca = fit_latent_pca(mu)
    ref = PCA(n_components=4, svd_solver="full").fit(mu)
    np.testing.assert_allclose(pca.variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(pca.fractions, ref.explained_variance_ratio_, rtol=1e-10)
    # same axes with the same signs (largest-magnitude entry of each axis positive)
    np.testing.assert_allclose(pca.components, ref.components_, atol=1e-10)
    assert np.all(pca.components[np.arange(4), np.argmax(np.abs(pca.components), axis=1)] > 0)
    assert pca.fractions.sum() == pytest.approx(1.0, abs=1e-12)
    d = pca.transform(mu)
    np.testing.assert_allclose(d, ref.transform(mu), atol=1e-9)
    np.testing.assert_allclose(pca.inverse_transform(d), mu, atol=1e-10)
    c = np.cov(d.T)
    np.testing.assert_allclose(c - np.diag(np.diag(c)), 0.0, atol=1e-9)  # D uncorrelated
    table = pca_variance_table(pca)
    assert list(table["component"]) == ["D1", "D2", "D3", "D4"]
    assert table["cumulative"].iloc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(table["variance"]) <= 0)


def test_pca_ignores_nan_rows_and_catalog_columns() -> None:
    mu = _correlated_latents(200, 3)
    mu_nan = mu.copy()
    mu_nan[5] = np.nan
    pca = fit_latent_pca(mu_nan)
    ref = fit_latent_pca(np.delete(mu, 5, axis=0))
    np.testing.assert_allclose(pca.components, ref.components)
    d = pca.transform(mu_nan)
    assert np.isnan(d[5]).all()
    cat = latent_catalog(np.arange(200) + 10**12, np.full(200, 266), np.full(200, 51630),
                         np.arange(1, 201), d)
    assert list(cat.columns) == ["key", "plate", "mjd", "fiber", "D1", "D2", "D3"]
    assert cat["key"].dtype == np.int64 and len(cat) == 200


# -- property maps (Fig 1) ---------------------------------------------------------------------
def test_binned_property_means() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, 20000), rng.uniform(0, 1, 20000)
    v = 2 * x - y
    out = binned_property_means(x, y, v, n_bins=5, min_count=3, quantile_range=(0.0, 1.0))
    xc = 0.5 * (out["x_edges"][1:] + out["x_edges"][:-1])
    yc = 0.5 * (out["y_edges"][1:] + out["y_edges"][:-1])
    want = 2 * xc[:, None] - yc[None, :]
    np.testing.assert_allclose(out["mean"], want, atol=0.02)  # bin width 0.2: mean of a plane
    assert out["count"].sum() == 20000
    sparse = binned_property_means(x[:30], y[:30], v[:30], n_bins=10, min_count=3)
    assert np.isnan(sparse["mean"][sparse["count"] < 3]).all()


# -- MI (Fig 4) ----------------------------------------------------------------------------------
def test_mi_high_for_planted_relation_and_one_for_noise() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    d = rng.standard_normal((n, 2))
    props = pd.DataFrame({
        "planted": np.exp(d[:, 0]) + 0.1 * rng.standard_normal(n),  # monotone, non-linear
        "noise": rng.standard_normal(n),
    })
    t = mi_table(d, props, n_shuffles=50, seed=0)
    assert len(t) == 4
    nmi = t.set_index(["component", "property"])["nmi"]
    assert nmi["D1", "planted"] > 20  # ≈ 1 + 2N·I/(B−1)² for a strong dependence
    for key in [("D1", "noise"), ("D2", "noise"), ("D2", "planted")]:
        # independent: ≈ 1 with spread ≈ √2/(B−1) = 0.13 for N = 2000 (galforge.stats)
        assert abs(nmi[key] - 1.0) < 0.45, key
    best = best_mi_per_property(t).set_index("property")
    assert best.loc["planted", "component"] == "D1"
    assert best.loc["planted", "rho"] > 0.9
    # reproducible and independent of the other columns
    t2 = mi_table(d[:, :1], props[["planted"]], n_shuffles=50, seed=0)
    assert t2["nmi"].iloc[0] == nmi["D1", "planted"]


# -- small trained models ------------------------------------------------------------------------
NPIX = 512
REGION = slice(300, 312)  # the only informative pixels of the toy spectra


def _toy_file(path: Path, n: int = 600, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    wave = np.logspace(np.log10(3400), np.log10(8400), NPIX)
    a = rng.standard_normal(n)
    model = np.ones((n, NPIX))
    bump = np.exp(-0.5 * ((np.arange(NPIX) - 305.5) / 2.5) ** 2)
    model += np.outer(1.0 + 0.6 * a, bump)
    sigma = 0.05
    flux = model + sigma * rng.standard_normal(model.shape)
    data = {
        "wave": wave, "flux": flux.astype(np.float32),
        "weight": np.full((n, NPIX), 1 / sigma**2, np.float32),
        "mask": np.zeros((n, NPIX), bool), "key": np.arange(n, dtype=np.int64) + 10**12,
        "plate": np.full(n, 300, np.int32), "mjd": np.full(n, 51600, np.int32),
        "fiber": np.arange(1, n + 1, dtype=np.int32), "z": np.full(n, 0.05),
        "properties": {"log_mstar": 10 + 0.3 * a + 0.05 * rng.standard_normal(n),
                       "log_sfr": rng.standard_normal(n)},
    }
    return write_preprocessed(path, data)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from galforge.spectra.training import encode, train_spectra_model
    from galforge.train import load_for_inference

    root = tmp_path_factory.mktemp("toy")
    path = _toy_file(root / "toy.h5")
    out = {}
    for name, settings in {
        "vae": {**MODEL_PRESETS["tiny"], "latent_dim": 2, "npix": NPIX},
        "cvae": {**MODEL_PRESETS["tiny"], "latent_dim": 1, "npix": NPIX, "kind": "cvae",
                 "conditions": ["mstar"]},
    }.items():
        train_spectra_model(path, settings, {"epochs": 4, "batch_size": 64, "lr": 3e-3}, seed=0,
                            val_fraction=0.2, out_model=root / name / "model.pt",
                            out_metrics=root / name / "metrics.csv", workroot=root / name / "w",
                            progress=False)
        out[name] = load_for_inference(root / name / "model.pt")[0]
    out["latents"] = encode(root / "vae" / "model.pt", path)
    out["path"] = path
    return out


def test_sweeps(toy: dict) -> None:
    vae, cvae = toy["vae"], toy["cvae"]
    pca = fit_latent_pca(toy["latents"].mu)
    d = pca.transform(toy["latents"].mu)
    vals = sweep_values(d[:, 0], 5, (0.05, 0.95))
    assert vals.shape == (5,) and np.all(np.diff(vals) > 0)
    spec = decode_component_sweep(vae, pca, 0, vals)
    assert spec.shape == (5, NPIX)
    # D1 carries the bump amplitude: the bump changes monotonically along the sweep
    peak = spec[:, REGION].mean(axis=1)
    assert abs(peak[-1] - peak[0]) > 0.3
    assert np.all(np.diff(peak) > 0) or np.all(np.diff(peak) < 0)
    # D = 0 everywhere decodes the mean latent
    with torch.no_grad():
        mean_spec = vae.decode(torch.as_tensor(pca.mean[None, :], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(decode_component_sweep(vae, pca, 1, [0.0]), mean_spec, atol=1e-5)
    with pytest.raises(ValueError, match="plain VAE"):
        decode_component_sweep(cvae, pca, 0, vals)
    cs = cvae_condition_sweep(cvae, "mstar", [9.5, 10.0, 10.5])
    assert cs.shape == (3, NPIX)
    assert np.abs(cs[0] - cs[-1]).max() > 1e-3
    with pytest.raises(ValueError, match="not conditioned on 'log_sfr'"):
        cvae_condition_sweep(cvae, "log_sfr", [0.0])


def test_shap_additivity_and_peak_at_the_planted_region(toy: dict) -> None:
    from galforge.spectra.store import read_spectra_file

    vae = toy["vae"]
    pca = fit_latent_pca(toy["latents"].mu)
    data = read_spectra_file(toy["path"])
    rng = np.random.default_rng(0)
    bg = data.flux[rng.choice(data.n, 32, replace=False)]
    rows = choose_examples(pca.transform(toy["latents"].mu)[:, 0], n=3)
    explain = np.concatenate([rows, np.arange(40)])
    res = shap_values(vae, pca, data.flux[explain], bg, components=[0], rows=explain)
    assert res.values.shape == (len(explain), 1, NPIX)
    assert res.components == ["D1"]
    # additivity: Σφ + E[D1] = D1, checked by us on every spectrum (reported, not silenced)
    assert res.relative_additivity_error < 1e-3
    err = np.abs(res.values.sum(axis=2) + res.expected - res.outputs).max()
    assert res.additivity_error == pytest.approx(err)
    imp = mean_abs_shap(res)[0]
    assert REGION.start <= int(np.argmax(imp)) < REGION.stop
    outside = np.delete(imp, np.arange(REGION.start, REGION.stop))
    # per pixel, the informative region carries > 10x the attribution of the noise pixels
    assert imp[REGION].mean() > 10 * outside.mean()
    peaks = importance_peaks(np.arange(NPIX, dtype=float), imp, n_peaks=2, min_separation=20)
    assert REGION.start <= peaks["wave"].iloc[0] < REGION.stop
    with pytest.raises(ValueError, match="plain VAE"):
        shap_values(toy["cvae"], pca, data.flux[:2], bg)


def test_choose_examples_and_peaks() -> None:
    v = np.array([5.0, np.nan, 1.0, 3.0, 2.0, 4.0])
    rows = choose_examples(v, n=3, quantiles=[0.0, 0.5, 1.0])
    assert list(rows) == [2, 3, 0]
    imp = np.zeros(100)
    imp[[10, 12, 50, 80]] = [5.0, 4.0, 3.0, 1.0]
    p = importance_peaks(np.arange(100.0), imp, n_peaks=3, min_separation=5)
    assert list(p["wave"]) == [10.0, 50.0, 80.0]
