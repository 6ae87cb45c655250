"""Spectra preprocessing: settings, masks, rest frame, normalisation, shards, merge + infill.

Real spectra (``shared/data/spectra``, marked ``archive``): they pass preprocessing
with no NaN, every output pixel overlapping a pixel the file flags (``and_mask``
bits / ``ivar <= 0``) or a sky line is masked -- the expected mask is computed
independently with spectres -- and the rest-frame Hα line falls on its pixel.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from conftest import shared_data_path
from galforge.archives.sdss_spectra import spectrum_key
from galforge.io import InputError
from galforge.settings import SettingsError
from galforge.spectra.preprocess import (
    PreprocessSettings,
    observed_bad_pixels,
    prepare_spectra,
    prepare_spectrum,
    preprocess_shard,
)
from galforge.spectra.readers import read_spectrum
from galforge.spectra.store import merge_and_infill, read_shard_rejects, read_spectra_file

HALPHA = 6564.61  # vacuum Å
REAL_FILES = (
    "spSpec-51630-0266-637.fit",
    "spSpec-51984-0296-002.fit",
    "spSpec-51984-0296-003.fit",
    "spec-0266-51602-0001.fits",
    "spec-0266-51630-0004.fits",
    "spec-0266-51630-0015.fits",
    "spec-0280-51612-0117.fits",
    "spec-0295-51585-0596.fits",
)


# --------------------------------------------------------------------------- helpers


def write_spec_lite(path: Path, plate: int, mjd: int, fiber: int, z: float, flux: np.ndarray,
                    ivar: np.ndarray, and_mask: np.ndarray, k0: int = 35797) -> Path:
    """A minimal DR8+ spec-lite file (COADD + SPECOBJ) that read_spectrum accepts."""
    n = flux.size
    loglam = ((k0 + np.arange(n)) * 1e-4).astype(np.float32)
    coadd = fits.BinTableHDU.from_columns([
        fits.Column("flux", "E", array=flux.astype(np.float32)),
        fits.Column("loglam", "E", array=loglam),
        fits.Column("ivar", "E", array=ivar.astype(np.float32)),
        fits.Column("and_mask", "J", array=and_mask.astype(np.int32)),
        fits.Column("or_mask", "J", array=and_mask.astype(np.int32)),
    ], name="COADD")
    specobj = fits.BinTableHDU.from_columns([
        fits.Column("PLATE", "J", array=[plate]), fits.Column("MJD", "J", array=[mjd]),
        fits.Column("FIBERID", "J", array=[fiber]), fits.Column("Z", "E", array=[z]),
        fits.Column("Z_ERR", "E", array=[1e-5]), fits.Column("ZWARNING", "J", array=[0]),
        fits.Column("CLASS", "6A", array=["GALAXY"]),
    ], name="SPECOBJ")
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([fits.PrimaryHDU(), coadd, specobj]).writeto(path, overwrite=True)
    return path


def fake_spectrum(rng: np.random.Generator, z: float, n: int = 3840, k0: int = 35797,
                  line: float = 40.0):
    """Flat continuum 10 + a Gaussian Hα line at rest 6564.61 Å + noise 0.5 (1e-17 units)."""
    lam = 10.0 ** ((k0 + np.arange(n)) * 1e-4)
    flux = 10.0 + line * np.exp(-0.5 * ((lam / (1 + z) - HALPHA) / 1.2) ** 2)
    flux = flux + 0.5 * rng.standard_normal(n)
    ivar = np.full(n, 4.0)
    mask = np.zeros(n, dtype=np.int64)
    return flux, ivar, mask


def write_fake_shard_files(root: Path, n: int, seed: int = 0) -> tuple[list[Path], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    paths, rows = [], []
    for i in range(n):
        plate, mjd, fiber = 300 + i % 3, 51600 + i % 3, 1 + i
        z = float(rng.uniform(0.01, 0.1))
        k0 = 35790 + int(rng.integers(0, 30))
        flux, ivar, mask = fake_spectrum(rng, z, k0=k0, line=float(rng.uniform(5, 50)))
        flux *= rng.uniform(0.5, 2.0)
        ivar[rng.integers(0, 3000, 5)] = 0.0
        mask[rng.integers(0, 3000, 5)] |= 1 << 22  # NOSKY
        p = write_spec_lite(root / f"{plate:04d}" / f"spec-{plate:04d}-{mjd}-{fiber:04d}.fits",
                            plate, mjd, fiber, z, flux, ivar, mask, k0=k0)
        paths.append(p)
        rows.append({"key": int(spectrum_key(plate, mjd, fiber)), "plate": plate, "mjd": mjd,
                     "fiber": fiber, "z": z, "log_mstar": 10.0 + 0.01 * i,
                     "log_sfr": 0.5 - 0.01 * i, "log_ssfr": -9.5 - 0.02 * i, "oh_p50": 8.9})
    return paths, pd.DataFrame(rows)


def small_settings(**kw) -> PreprocessSettings:
    base = dict(infill_components=3, infill_iter=20, infill_fit_max=200, batch=7,
                infill_chunk=5)
    base.update(kw)
    return PreprocessSettings(**base)


# --------------------------------------------------------------------------- settings


def test_settings_round_trip_and_unknown_keys():
    s = PreprocessSettings()
    assert s.n_pix == 4000 and s.norm_window == (5300.0, 5850.0)
    d = json.loads(json.dumps(s.to_dict()))
    assert PreprocessSettings.from_dict(d) == s
    with pytest.raises(SettingsError, match="n_pixels: unknown key"):
        PreprocessSettings.from_dict({"n_pixels": 10})
    with pytest.raises(ValueError, match="bad_mask_bits"):
        PreprocessSettings.from_dict({"bad_mask_bits": ["NOSKY", "NOT_A_BIT"]})
    with pytest.raises(SettingsError, match="norm_window"):
        PreprocessSettings(norm_window=(5850.0, 5300.0))
    with pytest.raises(SettingsError, match="sky_lines"):
        PreprocessSettings(sky_lines=[[5578.9]])
    with pytest.raises(SettingsError, match="min_good_fraction"):
        PreprocessSettings(min_good_fraction=1.5)
    assert "EMLINE" not in s.bad_mask_bits
    assert s.bad_bits_value == sum(1 << b for b in (18, 22, 23, 24, 25, 26, 27, 28))
    w = s.wave
    assert w.size == 4000 and w[0] == pytest.approx(3400) and w[-1] == pytest.approx(8400)


# --------------------------------------------------------------------------- one spectrum


def test_synthetic_spectrum_line_pixel_normalisation_and_masks():
    rng = np.random.default_rng(5)
    s = PreprocessSettings()
    z = 0.0537
    flux, ivar, amask = fake_spectrum(rng, z)
    ivar[1000:1010] = 0.0
    amask[2000:2004] = 1 << 23  # BRIGHTSKY: bad
    amask[2500:2504] = 1 << 30  # EMLINE: not bad
    loglam = (35797 + np.arange(flux.size)) * 1e-4
    f, w, m, norm, reason = prepare_spectrum(loglam, flux, ivar, amask, z, s)
    assert reason is None
    assert norm == pytest.approx(10.0, rel=0.01)  # median continuum in the window
    peak = int(np.nanargmax(np.where(m, -np.inf, f)))
    assert abs(peak - int(np.argmin(np.abs(s.wave - HALPHA)))) <= 1
    assert np.all(w[m] == 0) and np.all(w[~m] > 0) and np.all(np.isnan(f[m]))
    # noise 0.5 at norm 10: (10 / 0.5)^2 = 400 per old pixel; a new pixel averaging fractions
    # a, 1 - a of two old ones has 1 / (a^2 + (1 - a)^2) in [1, 2] times that (spectres' rule)
    assert 400 * 0.98 <= np.min(w[~m]) and np.max(w[~m]) <= 800 * 1.02
    assert 500 < np.median(w[~m]) < 750
    lam_rest = 10.0**loglam / (1 + z)
    for sl, masked in ((slice(1000, 1010), True), (slice(2000, 2004), True),
                       (slice(2500, 2504), False)):
        mid = np.argmin(np.abs(s.wave - lam_rest[sl].mean()))
        assert m[mid] == masked
    # outside the observed range: masked
    assert m[s.wave < 3790 / (1 + z)].all() and m[s.wave > 9210 / (1 + z)].all()


def test_off_grid_spectrum_uses_the_general_path_with_the_same_result():
    rng = np.random.default_rng(6)
    s = PreprocessSettings()
    flux, ivar, amask = fake_spectrum(rng, 0.03)
    loglam = (35797 + np.arange(flux.size)) * 1e-4
    a = prepare_spectrum(loglam, flux, ivar, amask, 0.03, s)
    b = prepare_spectrum(loglam + 2e-6, flux, ivar, amask, 0.03, s)  # not on the SDSS grid
    ok = ~a[2] & ~b[2]
    assert ok.sum() > 3000
    np.testing.assert_allclose(a[0][ok], b[0][ok], rtol=0.02, atol=0.02)


def test_rejections_with_reasons():
    rng = np.random.default_rng(7)
    s = PreprocessSettings()
    loglam = (35797 + np.arange(3840)) * 1e-4
    good = fake_spectrum(rng, 0.05)
    no_ivar = (good[0], np.zeros(3840), good[2])
    short = fake_spectrum(rng, 0.05, n=1500)
    negative = (-good[0], good[1], good[2])
    objs = []
    for (f, iv, m), ll, z in ((good, loglam, 0.05), (no_ivar, loglam, 0.05),
                              (short, loglam[:1500], 0.05), (negative, loglam, 0.05),
                              (good, loglam, float("nan"))):
        objs.append(type("S", (), dict(loglam=ll, flux=f, ivar=iv, and_mask=m, z=z))())
    out = prepare_spectra(objs, s)
    assert out.reasons[0] is None
    assert "good pixels in the normalisation window" in out.reasons[1]
    assert "good pixel fraction" in out.reasons[2] or "normalisation window" in out.reasons[2]
    assert "<= 0" in out.reasons[3]
    assert "invalid redshift" in out.reasons[4]
    assert out.accepted.tolist() == [True, False, False, False, False]


# --------------------------------------------------------------------------- shards


def test_shards_merge_and_infill_end_to_end(tmp_path):
    paths, props = write_fake_shard_files(tmp_path / "spectra", 24)
    s = small_settings()
    # a spectrum that will be rejected (no ivar) and one not in the properties table
    bad = write_spec_lite(tmp_path / "spectra" / "0999" / "spec-0999-51999-0001.fits", 999,
                          51999, 1, 0.05, np.ones(3840), np.zeros(3840), np.zeros(3840))
    extra = write_spec_lite(tmp_path / "spectra" / "0998" / "spec-0998-51999-0001.fits", 998,
                            51999, 1, 0.05, np.ones(3840), np.ones(3840), np.zeros(3840))
    props = pd.concat([props, pd.DataFrame([{"key": int(spectrum_key(999, 51999, 1)),
                                             "plate": 999, "mjd": 51999, "fiber": 1, "z": 0.05,
                                             "log_mstar": 9.0, "log_sfr": 0.0,
                                             "log_ssfr": -9.0, "oh_p50": 8.5}])])
    manifest = pd.DataFrame({"path": [str(p) for p in paths[12:]] + [str(bad), str(extra), ""],
                             "status": ["ok"] * 13 + ["cached", "missing"]})
    s1 = preprocess_shard(paths[:12], props, s, tmp_path / "shard-0.h5", progress=False)
    s2 = preprocess_shard(manifest, props, s, tmp_path / "shard-1.h5",
                          rejects_dest=tmp_path / "rejects-1.csv", progress=False)
    assert (s1["n_written"], s2["n_written"]) == (12, 12)
    assert s2["n_not_selected"] == 1 and s2["n_rejected"] == 2
    rej = read_shard_rejects([tmp_path / "shard-0.h5", tmp_path / "shard-1.h5"])
    assert len(rej) == 2
    assert any("normalisation window" in r for r in rej["reason"])
    assert any("not downloaded" in r for r in rej["reason"])
    assert len(pd.read_csv(tmp_path / "rejects-1.csv")) == 2
    shard = read_spectra_file(tmp_path / "shard-0.h5", mask=True)
    assert np.isnan(shard.flux[shard.mask]).all()
    assert list(s2["rejects"].columns) == ["key", "path", "reason"] and len(s2["rejects"]) == 2

    summary = merge_and_infill([tmp_path / "shard-0.h5", tmp_path / "shard-1.h5"], s,
                               tmp_path / "spectra.h5", progress=False)
    assert summary["n_spectra"] == 24 and 0 < summary["masked_fraction"] < 0.2
    d = read_spectra_file(tmp_path / "spectra.h5", mask=True)
    assert d.flux.shape == d.weight.shape == d.mask.shape == (24, 4000)
    assert d.flux.dtype == np.float32 and d.mask.dtype == bool
    assert np.all(np.isfinite(d.flux)) and np.all(np.isfinite(d.weight))
    assert np.all(d.weight[d.mask] == 0) and np.all(d.weight[~d.mask] > 0)
    np.testing.assert_allclose(d.wave, s.wave)
    # observed pixels are the shard's values; rows keep their keys and properties
    first = read_spectra_file(tmp_path / "shard-0.h5", mask=True)
    ok = ~first.mask
    np.testing.assert_array_equal(d.flux[:12][ok], first.flux[ok])
    by_key = props.set_index("key")
    np.testing.assert_allclose(d.properties["log_mstar"], by_key.loc[d.key, "log_mstar"])
    np.testing.assert_allclose(d.z, by_key.loc[d.key, "z"], rtol=1e-6)
    attrs = d.attrs
    assert attrs["kind"] == "spectra" and list(attrs["norm_window"]) == [5300.0, 5850.0]
    assert PreprocessSettings.from_dict(json.loads(attrs["settings"])) == s
    assert json.loads(attrs["infill"])["n_components"] == 3
    # the planted line (rest Hα) sits at its pixel in the merged file
    ha = int(np.argmin(np.abs(s.wave - HALPHA)))
    peaks = np.argmax(np.where(d.mask, -np.inf, d.flux)[:, ha - 20: ha + 21], axis=1)
    assert np.all(np.abs(peaks - 20) <= 1)


def test_merge_refuses_other_settings_and_duplicates(tmp_path):
    paths, props = write_fake_shard_files(tmp_path / "spectra", 8, seed=1)
    s = small_settings()
    preprocess_shard(paths, props, s, tmp_path / "a.h5", progress=False)
    preprocess_shard(paths[:4], props, small_settings(norm_window=(5400.0, 5800.0)),
                     tmp_path / "b.h5", progress=False)
    with pytest.raises(InputError, match="other preprocessing settings"):
        merge_and_infill([tmp_path / "a.h5", tmp_path / "b.h5"], s, tmp_path / "out.h5",
                         progress=False)
    preprocess_shard(paths[:4], props, s, tmp_path / "c.h5", progress=False)
    with pytest.raises(InputError, match="more than one shard"):
        merge_and_infill([tmp_path / "a.h5", tmp_path / "c.h5"], s, tmp_path / "out.h5",
                         progress=False)
    assert not (tmp_path / "out.h5").exists()
    assert not list(tmp_path.glob(".out.h5*"))  # no partial output left behind


def test_unreadable_spectrum_names_the_file_and_leaves_no_shard(tmp_path):
    paths, props = write_fake_shard_files(tmp_path / "spectra", 3, seed=2)
    broken = tmp_path / "spectra" / "spec-0300-51600-0099.fits"
    broken.write_bytes(b"not a fits file")
    with pytest.raises(InputError, match="spec-0300-51600-0099"):
        preprocess_shard(paths + [broken], props, small_settings(), tmp_path / "s.h5",
                         progress=False)
    assert not (tmp_path / "s.h5").exists()


# --------------------------------------------------------------------------- real spectra


def _real_spectra():
    return [read_spectrum(shared_data_path(f"spectra/{n}")) for n in REAL_FILES]


def _spectres_bad_fraction(new: np.ndarray, wav: np.ndarray, bad: np.ndarray) -> np.ndarray:
    spectres = pytest.importorskip("spectres")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spectres.spectres(new, wav, bad.astype(float), fill=None, verbose=False)


@pytest.mark.archive
def test_real_spectra_masks_follow_the_flagged_pixels():
    """mask == (new pixel not covered) or (it overlaps a flagged/sky pixel), the latter from
    spectres applied to the 0/1 bad-pixel indicator; weight 0 exactly there."""
    s = PreprocessSettings()
    spectra = _real_spectra()
    out = prepare_spectra(spectra, s)
    n_flagged = 0
    for i, sp in enumerate(spectra):
        assert out.reasons[i] is None, (sp.path.name, out.reasons[i])
        flagged = (sp.ivar <= 0) | ((sp.and_mask & s.bad_bits_value) != 0)
        n_flagged += int(flagged.sum())
        bad = observed_bad_pixels(sp.loglam, sp.flux, sp.ivar, sp.and_mask, s)
        assert np.all(bad[flagged])
        frac = _spectres_bad_fraction(s.wave, 10.0**sp.loglam / (1 + sp.z), bad)
        expected = np.isnan(frac) | (frac > 0)
        np.testing.assert_array_equal(out.mask[i], expected, err_msg=sp.path.name)
        assert np.all(out.weight[i][out.mask[i]] == 0)
        assert np.all(np.isfinite(out.flux[i][~out.mask[i]]))
        assert np.all(out.weight[i][~out.mask[i]] > 0)
    assert n_flagged > 300  # the files do flag pixels (NODATA, BRIGHTSKY, ivar = 0, ...)


@pytest.mark.archive
def test_real_spectra_pass_preprocessing_without_nan(tmp_path):
    """All real spectra through a shard and the merge + infill: no NaN anywhere."""
    spectra = _real_spectra()
    props = pd.DataFrame({"key": [sp.key for sp in spectra], "z": [sp.z for sp in spectra],
                          "log_mstar": np.linspace(9, 11, len(spectra))})
    s = small_settings(infill_components=3)
    paths = [sp.path for sp in spectra]
    summary = preprocess_shard(paths, props, s, tmp_path / "shard.h5", progress=False)
    assert summary["n_written"] == len(REAL_FILES) and summary["n_rejected"] == 0
    merge_and_infill([tmp_path / "shard.h5"], s, tmp_path / "spectra.h5", progress=False)
    d = read_spectra_file(tmp_path / "spectra.h5", mask=True)
    for name in ("flux", "weight", "z", "norm"):
        assert np.all(np.isfinite(getattr(d, name))), name
    assert d.mask.any(1).all() and (~d.mask).sum(1).min() > 0.8 * 4000
    # normalisation: median of the good pixels in the window is 1
    w = (d.wave >= 5300) & (d.wave <= 5850)
    for i in range(len(spectra)):
        good = ~d.mask[i] & w
        assert np.median(d.flux[i][good]) == pytest.approx(1.0, rel=1e-6)
    assert d.attrs["kind"] == "spectra"


@pytest.mark.archive
def test_real_halpha_on_its_rest_frame_pixel():
    """Galaxies whose Hα is clear in the file (peak > 10 sigma above the local continuum
    within ±10 Å rest of 6564.61 Å): in the preprocessed spectrum the continuum-subtracted
    peak is within 2 pixels of the Hα pixel and within 1 pixel of the file's own peak
    mapped to the rest frame."""
    s = PreprocessSettings()
    spectra = [sp for sp in _real_spectra() if sp.is_galaxy and sp.z < 0.2]
    out = prepare_spectra(spectra, s)
    wave = s.wave
    ha_pix = int(np.argmin(np.abs(wave - HALPHA)))
    checked = []
    for i, sp in enumerate(spectra):
        lam = 10.0**sp.loglam / (1 + sp.z)
        near = (np.abs(lam - HALPHA) <= 10) & (sp.ivar > 0)
        side = ((np.abs(lam - HALPHA) > 30) & (np.abs(lam - HALPHA) < 80) & (sp.ivar > 0))
        cont, noise = np.median(sp.flux[side]), np.std(sp.flux[side])
        j = np.flatnonzero(near)[np.argmax(sp.flux[near])]
        if (sp.flux[j] - cont) < 10 * noise:
            continue
        raw_pix = int(np.argmin(np.abs(wave - lam[j])))
        f, m = out.flux[i], out.mask[i]
        win = np.arange(ha_pix - 7, ha_pix + 8)  # ±10 Å
        fc = np.where(m[win], -np.inf, f[win] - np.median(f[(np.abs(wave - HALPHA) > 30)
                                                            & (np.abs(wave - HALPHA) < 80)
                                                            & ~m]))
        peak = int(win[np.argmax(fc)])
        assert abs(peak - ha_pix) <= 2, (sp.path.name, peak - ha_pix)
        assert abs(peak - raw_pix) <= 1, (sp.path.name, peak - raw_pix)
        checked.append(sp.path.name)
    assert len(checked) >= 3, checked  # the test really looked at emission-line galaxies
