"""Tests of the mock SDSS spectra with planted parameters (galforge.mock.spectra).

The planted truth is checked on the noiseless ``model`` column with simple,
independent measurements (line fluxes over ±2σ windows above the stellar
continuum, the Balogh et al. 1999 Dn4000), the noise against ``ivar``, the file
layout against astropy and a real spec-lite file. Fixed seeds; every tolerance
is stated next to its assert.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from scipy.stats import spearmanr

from conftest import shared_data_path
from galforge.archives.gswlc import read_gswlc
from galforge.archives.mpajhu import read_mpajhu
from galforge.archives.sdss_spectra import spectrum_key
from galforge.mock.settings import PLANTED_PARAMETER_NAMES
from galforge.mock.spectra import (
    COADD_COLUMNS,
    LINES,
    N_GRID,
    PLANTED_PARAMETERS,
    SDSS_DLOGLAM,
    SDSS_LOGLAM0,
    SPECOBJ_COLUMNS,
    SPPIXMASK,
    MockSpectraSettings,
    calzetti_k,
    dn4000,
    generate_spectra_mock,
    write_spectra_mock,
)
from galforge.settings import SettingsError
from mock_presets import SPECTRA_MOCK

SEED = 11
TINY = MockSpectraSettings.from_dict(SPECTRA_MOCK["tiny"])
GALAXY = "GALAXY"
#: Fraction of a Gaussian line inside ±2σ (pixel integration aside).
WINDOW = math.erf(2.0 / math.sqrt(2.0))


@pytest.fixture(scope="module")
def mock():
    """The tiny mock in memory, plus the same mock with every line switched off."""
    spectra, truth = generate_spectra_mock(TINY, SEED)
    # log_ssfr fixed at 1e-16/yr: lines 10^5-10^6.7 fainter, every other draw identical
    lineless, truth0 = generate_spectra_mock(
        TINY.replace(log_ssfr_min=-16.0, log_ssfr_max=-16.0), SEED
    )
    return spectra, truth, lineless, truth0


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("spectra_mock")
    summary = write_spectra_mock(TINY, root, SEED, progress=False)
    return root, summary


# --------------------------------------------------------------------------- settings


def test_settings_reject_unknown_and_out_of_range_keys() -> None:
    for bad, key in [
        ({"n_spectrum": 10}, "n_spectrum"),
        ({"a_v_max": -1.0}, "a_v_max"),
        ({"log_u_min": -3.0, "log_u_max": -3.5}, "log_u_max"),
        ({"n_spectra": 100.5}, "n_spectra"),
        ({"z_min": 0.1, "z_max": 0.1}, "z_max"),
    ]:
        with pytest.raises(SettingsError, match=key) as err:
            MockSpectraSettings.from_dict(bad)
        assert err.value.key == key
    s = MockSpectraSettings.from_dict({**SPECTRA_MOCK["demo"], "a_v_max": 0.5})
    assert MockSpectraSettings.from_dict(s.to_dict()) == s
    assert isinstance(s.n_spectra, int) and s.a_v_max == 0.5


def test_presets_sizes_and_number_of_planted_parameters() -> None:
    sizes = {k: MockSpectraSettings.from_dict(p).n_spectra for k, p in SPECTRA_MOCK.items()}
    assert sizes == {"tiny": 200, "demo": 3000, "paper": 30000}
    assert TINY.n_params == 4
    assert TINY.varying_parameters == tuple(PLANTED_PARAMETERS) == PLANTED_PARAMETER_NAMES
    fixed = TINY.replace(log_u_min=-3.2, log_u_max=-3.2)
    assert fixed.n_params == 3 and "log_u" not in fixed.varying_parameters
    names = {ln.name for ln in LINES}
    for name, meta in PLANTED_PARAMETERS.items():
        assert set(meta["lines"]) <= names, name
        assert meta["description"] and meta["features"]


def test_fixing_a_parameter_keeps_every_other_draw(mock) -> None:
    _spectra, truth, _lineless, truth0 = mock
    for col in ("log_age", "log_u", "a_v", "z_true", "r_fiber_mag", "plate", "fiber"):
        np.testing.assert_array_equal(truth[col].to_numpy(), truth0[col].to_numpy())
    gal = truth["class"] == GALAXY
    assert np.all(truth0.loc[gal, "log_ssfr"] == -16.0)


# --------------------------------------------------------------------------- the model


def _rest(truth: pd.DataFrame, k: int) -> np.ndarray:
    return 10.0 ** (SDSS_LOGLAM0 + SDSS_DLOGLAM * np.arange(N_GRID)) / (1.0 + truth["z_true"][k])


def _line_flux(spectra, lineless, truth, k: int, centre: float) -> tuple[float, float]:
    """Line flux over ±2σ above the lineless model (scaled to the same continuum).

    ±2σ keeps the Hα/[NII] blends below 0.4 %; the window holds a fraction
    :data:`WINDOW` of every line. Returns (flux, continuum at the line centre)
    in observed units × Å (rest).
    """
    lam = _rest(truth, k)
    sigma = centre * math.hypot(TINY.sigma_gas_kms, 69.03 * TINY.wdisp_pix) / 299792.458
    # pixel edges (rest frame); each pixel weighted by its overlap with centre ± 2σ
    lo = lam * 10.0 ** (-0.5 * SDSS_DLOGLAM)
    hi = lam * 10.0 ** (0.5 * SDSS_DLOGLAM)
    overlap = np.minimum(hi, centre + 2 * sigma) - np.maximum(lo, centre - 2 * sigma)
    weight = np.clip(overlap / (hi - lo), 0.0, 1.0)
    win = weight > 0
    side = (np.abs(lam - centre) > 60.0) & (np.abs(lam - centre) < 120.0)
    cont = lineless.model[k] * np.median(spectra.model[k][side] / lineless.model[k][side])
    flux = float(np.sum((spectra.model[k] - cont)[win] * (weight * (hi - lo))[win]))
    return flux, float(np.interp(centre, lam, cont))


@pytest.fixture(scope="module")
def measured(mock):
    spectra, truth, lineless, _ = mock
    gal = np.flatnonzero((truth["class"] == GALAXY).to_numpy())
    lines = {"ha": 6564.61, "hb": 4862.68, "o3": 5008.24, "n2": 6585.27}
    out = {
        name: np.array([_line_flux(spectra, lineless, truth, k, c) for k in gal])
        for name, c in lines.items()
    }
    return truth.iloc[gal].reset_index(drop=True), out


def test_oiii_hbeta_rises_and_nii_halpha_falls_with_ionisation(measured) -> None:
    t, f = measured
    o3hb = f["o3"][:, 0] / f["hb"][:, 0]
    n2ha = f["n2"][:, 0] / f["ha"][:, 0]
    # noiseless: the ratios are monotonic in log_u up to the 3-sigma window losses
    # (identical for every line): seen > 0.998 / < -0.999 (seeds 1-6)
    assert spearmanr(o3hb, t["log_u"])[0] > 0.98
    assert spearmanr(n2ha, t["log_u"])[0] < -0.98
    # and equal to the planted (intrinsic) ratios reddened with the stated gas
    # attenuation E(B-V)_gas = A_V / 4.05 / 0.44 (window losses cancel in a ratio)
    ebv = t["a_v"] / 4.05 / 0.44

    def red(a: float, b: float) -> np.ndarray:
        return -0.4 * ebv * (calzetti_k(a) - calzetti_k(b))

    np.testing.assert_allclose(np.log10(o3hb), t["log_o3hb"] + red(5008.24, 4862.68), atol=0.005)
    np.testing.assert_allclose(np.log10(n2ha), t["log_n2ha"] + red(6585.27, 6564.61), atol=0.005)


def test_halpha_equivalent_width_tracks_specific_sfr(measured) -> None:
    t, f = measured
    ew = f["ha"][:, 0] / f["ha"][:, 1]
    assert spearmanr(ew, t["log_ssfr"])[0] > 0.9  # seen 0.935-0.954 (age, dust spread it)
    # EW ∝ sSFR Υ(age) × dust: the fitted slope on log sSFR is 1 (seen 0.999-1.000,
    # seeds 1-6)
    x = np.column_stack([np.ones(len(t)), t["log_ssfr"], t["log_ml"], t["a_v"]])
    coef, *_ = np.linalg.lstsq(x, np.log10(ew), rcond=None)
    assert coef[1] == pytest.approx(1.0, abs=0.02)
    # and the truth column is the same EW (seen within 0.41 %: pixel integration)
    np.testing.assert_allclose(ew / WINDOW, t["ew_halpha"], rtol=0.01)


def test_balmer_decrement_tracks_dust(measured) -> None:
    t, f = measured
    bd = f["ha"][:, 0] / f["hb"][:, 0]
    assert spearmanr(bd, t["a_v"])[0] > 0.98  # seen 0.9999
    assert bd.min() > 2.8 and bd.max() < 5.8  # 2.86 (no dust) ... 5.5 (A_V = 1)
    np.testing.assert_allclose(bd, t["balmer_decrement"], rtol=0.01)  # seen 0.5 %


def test_d4000_tracks_age(mock) -> None:
    spectra, truth, _, _ = mock
    gal = np.flatnonzero((truth["class"] == GALAXY).to_numpy())
    lam = np.stack([_rest(truth, k) for k in gal])
    d4 = dn4000(lam, spectra.model[gal])
    t = truth.iloc[gal]
    assert spearmanr(d4, t["log_age"])[0] > 0.97  # seen 0.992-0.995 (dust adds a little)
    np.testing.assert_allclose(d4, t["d4000"], rtol=1e-6)
    assert d4.min() < 1.3 and d4.max() > 1.8  # young ~1.13 ... old ~2.05


def test_dn4000_of_flat_fnu_is_one() -> None:
    lam = np.linspace(3700.0, 4300.0, 601)
    assert dn4000(lam, 1.0 / lam**2)[0] == pytest.approx(1.0, rel=1e-12)
    assert np.isnan(dn4000(lam, 1.0 / lam**2, ivar=np.zeros(601))[0])


def test_derived_properties_follow_the_stated_relations(mock) -> None:
    _, truth, _, _ = mock
    gal = truth[truth["class"] == GALAXY]
    np.testing.assert_allclose(gal["log_sfr"] - gal["log_mstar"], gal["log_ssfr"], atol=1e-12)
    np.testing.assert_allclose(gal["oh_p50"], 8.90 + 0.57 * gal["log_n2ha"], atol=1e-12)
    # plausible SDSS main-sample masses, SFRs and metallicities
    assert 8.5 < gal["log_mstar"].min() and gal["log_mstar"].max() < 12.0
    assert 8.2 <= gal["oh_p50"].min() and gal["oh_p50"].max() <= 8.75
    # planted parameters inside their ranges and mutually independent
    # (|Spearman| < 0.2: 2.8 sigma for ~190 galaxies)
    for name in PLANTED_PARAMETERS:
        lo, hi = getattr(TINY, f"{name}_min"), getattr(TINY, f"{name}_max")
        assert lo <= gal[name].min() and gal[name].max() <= hi
    names = list(PLANTED_PARAMETERS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert abs(spearmanr(gal[a], gal[b])[0]) < 0.2, (a, b)


# --------------------------------------------------------------------------- noise and masks


def test_noise_matches_ivar(mock) -> None:
    spectra, _, _, _ = mock
    good = spectra.ivar > 0
    pull = (spectra.flux - spectra.model - spectra.sky_residual)[good] * np.sqrt(spectra.ivar[good])
    # ~7e5 pixels: the std of a unit normal is known to 1e-3 (seen 0.9993-1.0014)
    assert np.std(pull) == pytest.approx(1.0, abs=0.01)
    assert abs(np.mean(pull)) < 0.01
    # unflagged pixels keep the unmodelled sky residuals small: pull std within 5 %
    # (seen 1.009-1.013)
    clean = good & (spectra.and_mask == 0)
    raw = (spectra.flux - spectra.model)[clean] * np.sqrt(spectra.ivar[clean])
    assert np.std(raw) == pytest.approx(1.0, abs=0.05)


def test_signal_to_noise_is_sdss_like(mock) -> None:
    _, truth, _, _ = mock
    snr = truth.loc[truth["class"] == GALAXY, "snr_median_r"]
    assert 10.0 < np.median(snr) < 20.0  # r-band median S/N per pixel, seen 16.8
    assert snr.min() > 3.0


def test_masked_pixels_have_zero_ivar_and_a_bit(mock) -> None:
    spectra, truth, _, _ = mock
    cols = np.arange(N_GRID)[None, :]
    inside = (cols >= spectra.i_start[:, None]) & (cols < spectra.i_end[:, None])
    dead = inside & (spectra.ivar == 0)
    assert dead.sum() > 50  # cosmic rays and bad-column runs exist
    assert np.all(spectra.and_mask[dead] != 0)
    reject = (spectra.and_mask & ((1 << SPPIXMASK["FULLREJECT"]) | (1 << SPPIXMASK["NODATA"]))) != 0
    assert np.all(spectra.ivar[reject] == 0)
    assert np.all(spectra.or_mask & spectra.and_mask == spectra.and_mask)  # or ⊇ and
    # the bright sky lines are flagged BRIGHTSKY (bit 23) in every spectrum: [OI] 5579
    i5579 = int(round((math.log10(5578.9) - SDSS_LOGLAM0) / SDSS_DLOGLAM))
    bright = (spectra.and_mask[:, i5579] & (1 << SPPIXMASK["BRIGHTSKY"])) != 0
    assert bright.mean() > 0.95
    assert truth["n_bad_pixels"].sum() == dead.sum()


# --------------------------------------------------------------------------- files


def test_files_read_back_with_the_spec_lite_layout(mock, written) -> None:
    spectra, truth, _, _ = mock
    root, summary = written
    assert summary["n_spectra"] == len(truth) == 200
    files = sorted((root / "spectra").rglob("spec-*.fits"))
    assert len(files) == 200 and not list(root.rglob("*.part*"))
    assert {p.parent.name for p in files} == {f"{p:04d}" for p in truth["plate"].unique()}
    coadd_dtype = [(n, d) for n, _f, d in COADD_COLUMNS]
    for k in (0, 57, 199):
        path = root / truth["path"][k]
        plate, mjd, fiber = (int(v) for v in path.stem.split("-")[1:])
        with fits.open(path) as hdul:
            hdul.verify("exception")
            assert [h.name for h in hdul] == ["PRIMARY", "COADD", "SPECOBJ"]
            hdr = hdul[0].header
            assert (hdr["PLATEID"], hdr["MJD"], hdr["FIBERID"]) == (plate, mjd, fiber)
            data = hdul[1].data
            assert data.dtype == np.dtype(coadd_dtype)
            so = hdul[2].data
            assert (so["PLATE"][0], so["MJD"][0], so["FIBERID"][0]) == (plate, mjd, fiber)
            assert so["CLASS"][0] == truth["class"][k]
            assert so["Z"][0] == pytest.approx(truth["z"][k], rel=1e-6)
            # same pixels as generated in memory (the writer works chunk by chunk)
            for name, values in spectra.coadd(k).items():
                np.testing.assert_array_equal(np.asarray(data[name]), values, err_msg=name)
            # the SDSS grid, one contiguous run starting near 3800 A
            i = (data["loglam"].astype(np.float64) - SDSS_LOGLAM0) / SDSS_DLOGLAM
            np.testing.assert_allclose(i, np.round(i), atol=0.01)  # float32 loglam
            np.testing.assert_array_equal(np.diff(np.round(i)), 1)
            assert 3800 <= 10 ** data["loglam"][0] < 3830 and 3790 < len(data) <= N_GRID
        assert truth["key"][k] == spectrum_key(plate, mjd, fiber)


def test_truth_summary_and_catalogs(mock, written) -> None:
    _, truth, _, _ = mock
    root, summary = written
    table = pq.read_table(root / "truth.parquet")
    meta = table.schema.metadata
    planted = json.loads(meta[b"galforge.planted_parameters"])
    assert list(planted) == list(PLANTED_PARAMETERS)
    assert planted["log_u"]["lines"] == list(PLANTED_PARAMETERS["log_u"]["lines"])
    on_disk = table.to_pandas()
    pd.testing.assert_frame_equal(on_disk, truth[on_disk.columns.tolist()])
    for col in (
        "key",
        "plate",
        "mjd",
        "fiber",
        "z",
        "class",
        *PLANTED_PARAMETERS,
        "log_mstar",
        "log_sfr",
        "oh_p50",
    ):
        assert col in on_disk.columns
    assert json.loads((root / "summary.json").read_text())["n_params"] == 4

    gswlc = read_gswlc(root / "gswlc.fits")
    gal = truth[truth["in_gswlc"]].set_index("key")
    keys = spectrum_key(gswlc["plate"], gswlc["mjd"], gswlc["fiber"])
    assert set(keys) == set(gal.index)
    g = gal.loc[keys]
    # catalogue = truth + N(0, 0.05 dex): 5 sigma
    assert np.max(np.abs(np.asarray(gswlc["log_mstar"]) - g["log_mstar"])) < 0.25
    sfr_ok = np.isfinite(np.asarray(gswlc["log_sfr"]))
    assert np.max(np.abs(np.asarray(gswlc["log_sfr"])[sfr_ok] - g["log_sfr"][sfr_ok])) < 0.5

    mpa = read_mpajhu(
        root / "mpajhu/gal_info_dr7_v5_2.fit.gz", fiboh=root / "mpajhu/gal_fiboh_dr7_v5_2.fits.gz"
    )
    m_keys = spectrum_key(mpa["plate"], mpa["mjd"], mpa["fiberID"])
    t = truth.set_index("key").loc[m_keys]
    oh = np.asarray(mpa["oh_p50"], dtype=float)
    ok = np.isfinite(oh)
    assert ok.mean() > 0.9
    assert np.max(np.abs(oh[ok] - t["oh_p50"][ok])) < 0.15  # N(0, 0.03): 5 sigma


def test_rejectable_objects_are_present(mock) -> None:
    _, truth, _, _ = mock
    cls = truth["class"]
    assert (cls == "STAR").sum() >= 1 and (cls == "QSO").sum() >= 1
    high = (cls == GALAXY) & (truth["z"] > 0.1)
    assert high.sum() >= 1
    low = (cls == GALAXY) & (truth["z"] <= 0.1)
    assert truth.loc[low, "z"].between(0.01, 0.1).all()
    assert (truth["zwarning"] != 0).sum() >= 1
    assert (~truth.loc[cls == GALAXY, "in_gswlc"]).sum() >= 1
    sel = truth["selectable"]
    assert sel.sum() > 150 and not sel[cls != GALAXY].any() and not sel[high].any()


def test_deterministic_for_a_fixed_seed(mock) -> None:
    spectra, truth, _, _ = mock
    small = TINY.replace(n_spectra=40, fibers_per_plate=20)
    a, ta = generate_spectra_mock(small, 5)
    b, tb = generate_spectra_mock(small, 5)
    c, _ = generate_spectra_mock(small, 6)
    pd.testing.assert_frame_equal(ta, tb)
    for name in ("flux", "ivar", "and_mask", "or_mask", "model", "sky"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.flux, c.flux)


# --------------------------------------------------------------------------- real layout


@pytest.mark.archive
def test_layout_matches_a_real_spec_lite_file(written) -> None:
    root, _ = written
    real = shared_data_path("spectra/spec-0266-51602-0001.fits")
    mock_file = next((root / "spectra").rglob("spec-*.fits"))
    with fits.open(real) as r, fits.open(mock_file) as m:
        assert r[1].name == m[1].name == "COADD" and r[2].name == m[2].name == "SPECOBJ"
        assert r[1].columns.names == m[1].columns.names
        assert r[1].data.dtype == m[1].data.dtype
        assert [c.format for c in r[1].columns] == [c.format for c in m[1].columns]
        real_specobj = {c.name: c.format for c in r[2].columns}
        for c in m[2].columns:
            assert real_specobj.get(c.name) == c.format, c.name
        assert {name for name, _f, _d in SPECOBJ_COLUMNS} <= set(real_specobj)
        for key in ("PLATEID", "MJD", "FIBERID", "COEFF0", "COEFF1", "VACUUM", "BUNIT"):
            assert key in r[0].header and key in m[0].header
            assert type(r[0].header[key]) is type(m[0].header[key]), key
        # real and mock share the grid: integer pixel offsets from loglam = 3.5797
        for hdul in (r, m):
            i0 = (float(hdul[1].data["loglam"][0]) - SDSS_LOGLAM0) / SDSS_DLOGLAM
            assert abs(i0 - round(i0)) < 0.01
        assert Path(real).name.split("-")[0] == mock_file.name.split("-")[0] == "spec"


def test_rewrite_replaces_an_earlier_mock_and_refuses_a_foreign_folder(tmp_path) -> None:
    small = TINY.replace(n_spectra=20, fibers_per_plate=10)
    root = tmp_path / "mock"
    write_spectra_mock(small, root, 1, progress=False)
    first = set((root / "spectra").rglob("spec-*.fits"))
    write_spectra_mock(small, root, 2, progress=False)  # other MJDs and fibres
    second = set((root / "spectra").rglob("spec-*.fits"))
    assert len(second) == 20 and first != second
    truth = pd.read_parquet(root / "truth.parquet")
    assert {root / p for p in truth["path"]} == second
    foreign = tmp_path / "foreign"
    (foreign / "spectra" / "0266").mkdir(parents=True)
    (foreign / "spectra" / "0266" / "spec-0266-51602-0001.fits").write_bytes(b"")
    with pytest.raises(ValueError, match="not a galforge spectra mock folder"):
        write_spectra_mock(small, foreign, 1, progress=False)
