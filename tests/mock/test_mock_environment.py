"""Tests of the environment mock universe (galforge.mock.environment / .lognormal).

Statistical checks use fixed seeds and state their tolerance next to the assert;
the tolerances were set from the seed-to-seed scatter, not tuned to one seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.fft as sfft
from astropy.io import fits
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

from galforge.archives.formats import SDSS_GALAXY_COLUMNS, SDSS_MISSING, SDSS_PROPERTY_COLUMNS
from galforge.cosmology import C_KMS, Cosmology
from galforge.mock import lognormal as ln
from galforge.mock.environment import (
    VOLUME_LIMIT,
    MockEnvironmentSettings,
    write_environment_mock,
)
from galforge.photometry import absolute_mag_r
from galforge.settings import SettingsError
from mock_presets import ENVIRONMENT_MOCK

COSMO = Cosmology(0.3)
ZLO, ZHI, MLIM = VOLUME_LIMIT

#: A ~600 deg^2 patch on a coarse grid: large enough for a two-point function, ~1-2 s.
MEDIUM = {"ra_min": 140.0, "ra_max": 170.0, "dec_min": 0.0, "dec_max": 20.0, "cell_size": 2.0}


def _write(tmp_path, name, settings, seed, config_hash=None):
    cat = tmp_path / f"{name}.fits"
    truth = tmp_path / f"{name}_truth.parquet"
    summary = write_environment_mock(settings, COSMO, seed, cat, truth, config_hash=config_hash)
    return cat, truth, summary


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    cat, truth, summary = _write(
        tmp, "tiny", MockEnvironmentSettings.from_dict(ENVIRONMENT_MOCK["tiny"]), 42, config_hash="cafe1234"
    )
    with fits.open(cat) as hdul:
        data = hdul[1].data
        table = {name: np.asarray(data[name]) for name in data.columns.names}
    return {
        "cat": cat,
        "truth_path": truth,
        "summary": summary,
        "table": table,
        "truth": pd.read_parquet(truth),
    }


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("medium")
    settings = MockEnvironmentSettings.from_dict(MEDIUM)
    cat, truth, summary = _write(tmp, "medium", settings, 1)
    with fits.open(cat) as hdul:
        table = {name: np.asarray(hdul[1].data[name]) for name in hdul[1].data.columns.names}
    return {
        "settings": settings,
        "summary": summary,
        "table": table,
        "truth": pd.read_parquet(truth),
    }


def _recomputed_mr(t):
    gr = (t["modelMag_g"].astype(float) - t["extinction_g"]) - (
        t["modelMag_r"].astype(float) - t["extinction_r"]
    )
    return absolute_mag_r(
        t["petroMag_r"].astype(float), t["z"], gr, COSMO, t["extinction_r"].astype(float)
    )


def _volume_limited(t):
    mr = _recomputed_mr(t)
    return (t["z"] > ZLO) & (t["z"] < ZHI) & (mr < MLIM)


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


def test_presets_build_and_defaults_are_valid():
    MockEnvironmentSettings()
    for preset in ENVIRONMENT_MOCK.values():
        s = MockEnvironmentSettings.from_dict(preset)
        assert s.ra_min < s.ra_max and s.z_min < ZLO and s.z_max > ZHI
    tiny = MockEnvironmentSettings.from_dict({**ENVIRONMENT_MOCK["tiny"], "cell_size": 3})
    assert tiny.cell_size == 3.0 and isinstance(tiny.cell_size, float)


def test_unknown_key_rejected_naming_it():
    with pytest.raises(SettingsError, match="sigma8_galaxy") as err:
        MockEnvironmentSettings.from_dict({"sigma8_galaxy": 0.9})
    assert err.value.key == "sigma8_galaxy"
    with pytest.raises(SettingsError, match="bogus"):
        MockEnvironmentSettings.from_dict({**ENVIRONMENT_MOCK["demo"], "bogus": 1})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cell_size", -1.0),
        ("sigma8_gal", 0.0),
        ("dec_max", 91.0),
        ("flux_limit", float("nan")),
        ("photometric_noise", "0.02"),
        ("property_missing_fraction", 1.0),
        ("z_min", True),
    ],
)
def test_bad_values_rejected_naming_the_key(key, value):
    with pytest.raises(SettingsError, match=key) as err:
        MockEnvironmentSettings.from_dict({key: value})
    assert err.value.key == key


def test_inconsistent_pairs_rejected():
    with pytest.raises(SettingsError, match="ra_max"):
        MockEnvironmentSettings.from_dict({"ra_min": 200.0, "ra_max": 150.0})
    with pytest.raises(SettingsError, match="z_max"):
        MockEnvironmentSettings.from_dict({"z_min": 0.05, "z_max": 0.05})


def test_grid_memory_guard(tmp_path):
    s = MockEnvironmentSettings.from_dict(
        {**ENVIRONMENT_MOCK["tiny"], "cell_size": 0.25, "max_cells": 1e6}
    )
    with pytest.raises(ValueError, match="max_cells"):
        _write(tmp_path, "big", s, 0)
    assert not list(tmp_path.iterdir())  # nothing (partial) written


# --------------------------------------------------------------------------------------
# File format and determinism
# --------------------------------------------------------------------------------------


def test_catalog_has_exactly_the_archive_layout(tiny):
    expected = {**SDSS_GALAXY_COLUMNS, **SDSS_PROPERTY_COLUMNS}
    with fits.open(tiny["cat"]) as hdul:
        assert len(hdul) == 2
        cols = hdul[1].columns
        assert cols.names == list(expected)
        for col in cols:
            fmt, unit, _ = expected[col.name]
            assert col.format == fmt, col.name
            assert (col.unit or "") == unit, col.name
        for hdr in (hdul[0].header, hdul[1].header):
            assert hdr["ORIGIN"] == "galforge mock"
            assert hdr["SEED"] == 42
            assert hdr["CFGHASH"] == "cafe1234"
            assert "DATE" not in hdr
        n = hdul[1].header["NAXIS2"]
    t = tiny["table"]
    assert n == tiny["summary"]["n_written"] > 1000
    for key in ("objID", "specObjID"):
        assert t[key].dtype.kind == "i" and t[key].dtype.itemsize == 8
        assert len(np.unique(t[key])) == n
    assert np.all(np.diff(t["specObjID"]) > 0)  # sorted, as the archive client writes it
    keys = set(zip(t["plate"].tolist(), t["mjd"].tolist(), t["fiberID"].tolist(), strict=True))
    assert len(keys) == n and t["fiberID"].min() >= 1 and t["fiberID"].max() <= 640
    s = MockEnvironmentSettings.from_dict(ENVIRONMENT_MOCK["tiny"])
    assert np.all((t["ra"] >= s.ra_min) & (t["ra"] <= s.ra_max))
    assert np.all((t["dec"] >= s.dec_min) & (t["dec"] <= s.dec_max))
    assert np.all((t["z"] >= s.z_min) & (t["z"] <= s.z_max))
    assert t["z"].max() > ZHI  # written a bit beyond the study's zmax
    assert np.all((t["extinction_r"] >= 0.02 - 1e-6) & (t["extinction_r"] <= 0.2 + 1e-6))
    np.testing.assert_allclose(t["extinction_g"], 3.793 / 2.751 * t["extinction_r"], rtol=1e-5)
    miss = t["lgm_tot_p50"] == SDSS_MISSING
    assert 0 < miss.sum() < 0.05 * n
    assert np.all((t["sfr_tot_p50"] == SDSS_MISSING) == miss)
    assert np.all(np.isfinite(t["specsfr_tot_p50"]))
    truth = tiny["truth"]
    assert np.array_equal(truth["objID"].to_numpy(), t["objID"])


def test_same_seed_identical_bytes_different_seed_differs(tiny, tmp_path):
    s = MockEnvironmentSettings.from_dict(ENVIRONMENT_MOCK["tiny"])
    cat, truth, _ = _write(tmp_path, "again", s, 42, config_hash="cafe1234")
    assert cat.read_bytes() == tiny["cat"].read_bytes()
    assert truth.read_bytes() == tiny["truth_path"].read_bytes()
    cat2, _, _ = _write(tmp_path, "other", s, 43, config_hash="cafe1234")
    assert cat2.read_bytes() != tiny["cat"].read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]  # atomic writes cleaned up


# --------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------


def test_galaxy_power_spectrum_matches_input_lognormal_power():
    """Poisson galaxies of the lognormal field recover its power spectrum.

    Periodic (256 h^-1 Mpc)^3 box, 2 h^-1 Mpc cells, n̄ = 0.01, four seeds. The
    measured (shot-noise subtracted, nearest-grid-point) power divided by the
    expected lognormal power scatters by ~7% per seed (the lognormal field's
    non-Gaussian sample variance), so the 4-seed mean must be within 12% per
    k bin in 0.05-0.5 h/Mpc and within 6% averaged over the bins. The input
    lognormal power itself must equal the EH98 target to 1%.
    """
    power = ln.LinearPower(Om0=0.3, sigma8=0.95)
    grid = ln.BoxGrid((128, 128, 128), 2.0)
    target = ln.power_on_grid(grid, power)
    pk_g, clipped = ln.gaussian_power_for(grid, target)
    assert clipped < 0.01
    var = ln.field_variance(grid, pk_g)
    kbins = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5])
    expected = ln.bin_power(grid, ln.lognormal_power(grid, pk_g), kbins)
    np.testing.assert_allclose(expected, ln.bin_power(grid, target, kbins), rtol=0.01)
    ratios = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        g, _ = ln.gaussian_field(grid, pk_g, rng)
        delta = ln.lognormal(g, var)
        assert delta.min() >= -1.0
        pos, _ = ln.poisson_sample(delta, grid, 0.01, rng)
        _, measured, _ = ln.measure_power(pos, grid, kbins)
        ratios.append(measured / expected)
    mean = np.mean(ratios, axis=0)
    assert np.all(np.abs(mean - 1.0) < 0.12), mean
    assert abs(mean.mean() - 1.0) < 0.06, mean


def test_linear_displacement_variance_and_divergence():
    """ψ = i k/k² δ_k: ∇·ψ = -δ exactly, and var(ψ) = Σ P/k²/V within 20% (4-seed mean)."""
    power = ln.LinearPower(Om0=0.3, sigma8=0.95)
    grid = ln.BoxGrid((64, 64, 64), 4.0)
    pk = ln.power_on_grid(grid, power)
    k2 = grid.kmag() ** 2
    k2[0, 0, 0] = np.inf
    expected = float(np.sum(pk / k2 * grid.half_weights()) / grid.volume)
    ratios = []
    for seed in range(4):
        g, gk = ln.gaussian_field(grid, pk, np.random.default_rng(seed))
        psi = ln.linear_displacement(gk, grid)
        ratios.append(sum(float(np.var(c)) for c in psi) / expected)
        kx, ky, kz = grid.kvectors()
        div = sum(
            1j * kc * sfft.rfftn(c.astype(np.float64))
            for kc, c in zip((kx, ky, kz), psi, strict=True)
        )
        ny = grid.shape[0] // 2  # compare away from the Nyquist planes
        sel = np.ones(div.shape, dtype=bool)
        sel[ny, :, :] = sel[:, ny, :] = False
        sel[:, :, -1] = False
        np.testing.assert_allclose(div[sel], -gk[sel], atol=1e-3 * np.abs(gk).max())
    assert abs(np.mean(ratios) - 1.0) < 0.2, ratios


def _landy_szalay(data, s, edges, rng):
    c0, c1 = COSMO.comoving_distance([ZLO, ZHI])
    nr = 10 * len(data)
    chi = np.cbrt(rng.uniform(c0**3, c1**3, nr))
    ra = np.radians(rng.uniform(s.ra_min, s.ra_max, nr))
    sd = rng.uniform(math.sin(math.radians(s.dec_min)), math.sin(math.radians(s.dec_max)), nr)
    cd = np.sqrt(1 - sd**2)
    rand = np.stack([chi * cd * np.cos(ra), chi * cd * np.sin(ra), chi * sd], axis=1)
    td, tr = cKDTree(data), cKDTree(rand)
    nd = len(data)
    dd = np.diff(td.count_neighbors(td, edges)) / (nd * (nd - 1))
    dr = np.diff(td.count_neighbors(tr, edges)) / (nd * nr)
    rr = np.diff(tr.count_neighbors(tr, edges)) / (nr * (nr - 1))
    return (dd - 2 * dr + rr) / rr


def test_catalog_correlation_function_is_galaxy_like(medium):
    """Real-space ξ(r) of the written volume-limited galaxies (truth positions).

    Expect ξ positive and falling from 3 to 13 h^-1 Mpc with a log-slope of
    -1.8 ± 0.6 between the 3-4 and 11-15 h^-1 Mpc bins (seeds 1-4 gave
    -1.6 ... -2.0), and r0 (ξ = 1) between 3 and 8 h^-1 Mpc.
    """
    t = medium["truth"]
    vl = (t.z_cos > ZLO) & (t.z_cos < ZHI) & (t.Mr_true < MLIM)
    data = t.loc[vl, ["pos_x", "pos_y", "pos_z"]].to_numpy()
    assert len(data) > 5000
    edges = np.array([3.0, 4.0, 6.0, 8.0, 11.0, 15.0])
    xi = _landy_szalay(data, medium["settings"], edges, np.random.default_rng(0))
    r = np.sqrt(edges[1:] * edges[:-1])
    assert np.all(xi > 0) and np.all(np.diff(xi) < 0), xi
    slope = math.log(xi[-1] / xi[0]) / math.log(r[-1] / r[0])
    assert -2.4 < slope < -1.2, (slope, xi)
    r0 = math.exp(np.interp(0.0, -np.log(xi), np.log(r)))
    assert 3.0 < r0 < 8.0, (r0, xi)


# --------------------------------------------------------------------------------------
# Redshift-space distortions
# --------------------------------------------------------------------------------------


def test_redshift_space_distortions(tiny, medium):
    for mock in (tiny, medium):
        t = mock["truth"]
        cat_z = mock["table"]["z"]
        np.testing.assert_array_equal(cat_z, t["z_obs"].to_numpy())
        # (1 + z_rsd) = (1 + z_cos)(1 + v_los/c), and z_obs - z_rsd is the ~30 km/s error
        np.testing.assert_allclose(1 + t.z_rsd, (1 + t.z_cos) * (1 + t.v_los / C_KMS), rtol=1e-12)
        dv_err = C_KMS * (t.z_obs - t.z_rsd) / (1 + t.z_rsd)
        assert 20.0 < dv_err.std() < 45.0
        np.testing.assert_allclose(t.v_los, t.v_los_lin + t.v_los_fog, atol=1e-6)
        # the LOS velocity really is the linear velocity projected on the line of sight
        pos = t[["pos_x", "pos_y", "pos_z"]].to_numpy()
        v = t[["vx_lin", "vy_lin", "vz_lin"]].to_numpy()
        proj = np.sum(pos * v, axis=1) / np.linalg.norm(pos, axis=1)
        np.testing.assert_allclose(proj, t.v_los_lin, atol=1e-6)
        # observed minus cosmological redshift: a few hundred km/s
        dv = C_KMS * (t.z_obs - t.z_cos) / (1 + t.z_cos)
        assert 200.0 < dv.std() < 700.0
        # FoG dispersion grows with density as documented: 150 (1+delta)^0.5, capped at 1000
        one_plus = 10**t.log1p_delta_true
        np.testing.assert_allclose(t.sigma_fog, np.minimum(150 * one_plus**0.5, 1000), rtol=1e-9)
        assert spearmanr(t.log1p_delta_true, np.abs(t.v_los_fog)).statistic > 0.1

    # linear-theory amplitude: rms within a factor 2 of the grid expectation (sample
    # variance of the few large modes in these small volumes is large)
    s = medium["summary"]
    assert 0.5 < s["sigma_v_lin_1d_measured"] / s["sigma_v_lin_1d_expected"] < 2.0
    assert 100.0 < s["sigma_v_lin_1d_expected"] < 500.0


def test_linear_velocities_stream_towards_each_other(medium):
    """Mean pairwise radial velocity of pairs at 3-15 h^-1 Mpc is negative (infall).

    Linear theory: v12(r) ≈ -(2/3) a H f r b ξ̄_m ~ -100 to -200 km/s here.
    """
    t = medium["truth"]
    pos = t[["pos_x", "pos_y", "pos_z"]].to_numpy()
    v = t[["vx_lin", "vy_lin", "vz_lin"]].to_numpy()
    pairs = cKDTree(pos).query_pairs(15.0, output_type="ndarray")
    sep = pos[pairs[:, 0]] - pos[pairs[:, 1]]
    r = np.linalg.norm(sep, axis=1)
    ok = r > 3.0
    v12 = np.sum((v[pairs[ok, 0]] - v[pairs[ok, 1]]) * sep[ok], axis=1) / r[ok]
    assert -400.0 < v12.mean() < -50.0, v12.mean()


# --------------------------------------------------------------------------------------
# Photometry, flux limit, properties
# --------------------------------------------------------------------------------------


def test_flux_limit_holds_and_is_active(tiny):
    t = tiny["table"]
    r0 = t["petroMag_r"].astype(float) - t["extinction_r"].astype(float)
    assert r0.max() <= 17.77
    assert r0.max() > 17.7  # the limit is what removes galaxies
    assert tiny["summary"]["n_in_z_range"] > 1.3 * tiny["summary"]["n_written"]
    assert 1000 <= tiny["summary"]["n_volume_limited"] <= 2500


def test_absolute_magnitude_round_trip(tiny):
    """M_r recomputed by the pipeline's formula equals the true M_r up to the 0.02 mag noise."""
    t = tiny["table"]
    res = _recomputed_mr(t) - tiny["truth"]["Mr_true"].to_numpy()
    assert abs(res.mean()) < 0.005
    assert 0.015 < res.std() < 0.03
    assert np.abs(res).max() < 0.12
    gr = (t["modelMag_g"].astype(float) - t["extinction_g"]) - (
        t["modelMag_r"].astype(float) - t["extinction_r"]
    )
    assert np.std(gr - tiny["truth"]["g_r_true"]) < 0.04


def test_planted_property_dependence_has_the_right_signs(tiny):
    """Denser -> more massive, redder, lower sSFR, more often quenched (volume-limited, seed 42).

    With ~1.7k galaxies a Spearman coefficient has an error of ~0.025; the planted
    values are ~0.2-0.3, so |rho| > 0.1 is a > 4 sigma detection of the sign.
    """
    t = tiny["table"]
    truth = tiny["truth"]
    vl = _volume_limited(t) & (t["lgm_tot_p50"] != SDSS_MISSING)
    assert vl.sum() > 1000
    dens = truth["log1p_delta_true"].to_numpy()[vl]
    gr = (
        (t["modelMag_g"].astype(float) - t["extinction_g"])
        - (t["modelMag_r"].astype(float) - t["extinction_r"])
    )[vl]
    rho_ssfr = spearmanr(dens, t["specsfr_tot_p50"][vl]).statistic
    rho_gr = spearmanr(dens, gr).statistic
    rho_mass = spearmanr(dens, t["lgm_tot_p50"][vl]).statistic
    assert rho_ssfr < -0.1, rho_ssfr
    assert rho_gr > 0.1, rho_gr
    assert rho_mass > 0.1, rho_mass
    q = truth["quenched"].to_numpy()[vl]
    assert 0.2 < q.mean() < 0.7
    # bimodal colours: red sequence and blue cloud
    assert abs(np.median(gr[q]) - 0.75) < 0.03 and abs(np.median(gr[~q]) - 0.45) < 0.03


def test_planted_field_moments_are_written_only_with_the_map_geometry(tiny, tmp_path):
    """The dipole and quadrupole of the true field about each galaxy (the property the map
    count does not carry) are written when the map's square and velocity window are set
    (the environment study ties them to its maps); drawing them takes no random numbers, so
    the catalogue is the same galaxies with or without them."""
    from galforge.mock.environment import MOMENT_NAMES

    assert not any(c.startswith("field_") for c in tiny["truth"].columns)
    settings = MockEnvironmentSettings.from_dict(
        {**ENVIRONMENT_MOCK["tiny"], "map_size_mpc": 10.0, "map_dv_kms": 1000.0})
    cat, truth_path, _ = _write(tmp_path, "with", settings, 42)
    truth = pd.read_parquet(truth_path)
    pd.testing.assert_frame_equal(truth.drop(columns=[f"field_{m}" for m in MOMENT_NAMES]),
                                  tiny["truth"])
    with fits.open(cat) as hdul:
        np.testing.assert_array_equal(hdul[1].data["objID"], tiny["table"]["objID"])
        np.testing.assert_array_equal(hdul[1].data["z"], tiny["table"]["z"])
    f = truth[[f"field_{m}" for m in MOMENT_NAMES]].to_numpy()
    assert np.isfinite(f).all() and (np.abs(f) <= 1).all()
    # orientation is spread over all directions: each component centred on 0. The volume's
    # largest modes tilt all galaxies alike a little: |mean| / std measured 0.00-0.15 (seed
    # 42), up to 0.25 over seeds 1 and 2; a frame or sign error gives |mean| ~ std.
    assert (np.abs(f.mean(axis=0)) < 0.35 * f.std(axis=0)).all(), f.mean(axis=0)
    assert (f.std(axis=0)[:2] > 0.05).all()  # the field is anisotropic on the map's scale
