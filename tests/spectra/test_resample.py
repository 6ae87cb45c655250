"""The flux-conserving resampler equals spectres 2.2 (Python variant) to 1e-6 relative.

Compared: fluxes and errors where spectres gives finite values (relative
difference <= 1e-6), and the same pattern of NaN / inf / filled bins, on seeded
random grids (random edges and shifts, sub- and super-sampling, partial and no
overlap, NaN/inf inputs) and on the real SDSS spectra of ``shared/data/spectra``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data_path
from galforge.io import InputError
from galforge.spectra.resample import (
    SDSS_DLOGLAM,
    bin_edges,
    resample,
    resample_shifted_loglam,
    uniform_loglam_grid,
)

spectres_mod = pytest.importorskip("spectres")

RTOL = 1e-6
NEW_WAVE = np.logspace(np.log10(3400.0), np.log10(8400.0), 4000)
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


def spectres(new, old, flux, err=None):
    """spectres' Python variant, fill=None (NaN), warnings off."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spectres_mod.spectres(new, old, flux, err, fill=None, verbose=False)


def assert_equal_to_spectres(got: np.ndarray, ref: np.ndarray, what: str = "") -> float:
    """Same NaN/inf pattern; finite values equal to RTOL relative. Returns the worst ratio."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"NaN pattern {what}")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref), err_msg=f"inf {what}")
    fin = np.isfinite(ref)
    if not fin.any():
        return 0.0
    diff = np.abs(got[fin] - ref[fin])
    scale = np.abs(ref[fin])
    bad = diff > RTOL * scale
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} values differ by more than {RTOL:g} relative; worst "
        f"{float(np.max(diff / np.where(scale > 0, scale, 1.0))):.3g}"
    )
    return float(np.max(diff / np.where(scale > 0, scale, np.inf)))


def random_grid(rng: np.random.Generator, n: int, lo: float, step: tuple[float, float]):
    return lo + np.cumsum(rng.uniform(*step, n))


# --------------------------------------------------------------------------- general path


def test_bin_edges_equal_spectres_make_bins():
    rng = np.random.default_rng(1)
    from spectres.spectral_resampling import make_bins

    for _ in range(20):
        w = random_grid(rng, int(rng.integers(2, 50)), rng.uniform(-10, 10), (0.01, 3.0))
        e1, w1 = bin_edges(w)
        e2, w2 = make_bins(w)
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(w1, w2)


def test_general_path_random_grids_equal_spectres():
    """Random old and new grids: sub-, super-sampling, partial and no overlap, NaN/inf."""
    rng = np.random.default_rng(20240601)
    n_filled = n_partial_edge = 0
    for trial in range(300):
        n = int(rng.integers(2, 80))
        m = int(rng.integers(2, 80))
        kind = trial % 3  # 0: finer new grid, 1: coarser, 2: similar
        old = random_grid(rng, n, rng.uniform(-5, 5), (0.2, 2.0))
        step = {0: (0.02, 0.5), 1: (1.0, 6.0), 2: (0.2, 2.0)}[kind]
        new = random_grid(rng, m, old[0] + rng.uniform(-8, 8), step)
        flux = rng.normal(3.0, 2.0, (2, n))
        err = rng.uniform(0.05, 1.5, (2, n))
        if trial % 4 == 0:
            flux[0, rng.integers(n)] = np.nan
            err[1, rng.integers(n)] = np.inf
        ref_f, ref_e = spectres(new, old, flux, err)
        got_f, got_e, filled = resample(new, old, flux, err)
        assert_equal_to_spectres(got_f, ref_f, f"flux, trial {trial}")
        assert_equal_to_spectres(got_e, ref_e, f"err, trial {trial}")
        # filled bins are exactly those spectres fills (NaN with all-finite input)
        clean_f = spectres(new, old, np.ones(n))
        np.testing.assert_array_equal(filled[0], np.isnan(clean_f))
        n_filled += int(filled[0].sum())
        n_partial_edge += int((~filled[0]).any() and filled[0].any())
    assert n_filled > 100 and n_partial_edge > 50  # the fill rule was exercised


def test_general_path_single_spectrum_fill_value_and_no_errors():
    old = np.linspace(10.0, 20.0, 11)
    new = np.linspace(8.0, 22.0, 29)
    flux = np.arange(11.0)
    got_f, got_e, filled = resample(new, old, flux, fill=-7.0)
    assert got_e is None and got_f.shape == (29,)
    assert np.all(got_f[filled] == -7.0) and filled.any() and (~filled).any()
    ref = spectres(new, old, flux)
    assert_equal_to_spectres(got_f[~filled], ref[~filled])
    # a constant flux density stays constant (flux conservation)
    const, _, fl = resample(new, old, np.full(11, 2.5))
    np.testing.assert_allclose(const[~fl], 2.5, rtol=1e-14)


def test_general_path_rejects_bad_input():
    with pytest.raises(InputError, match="increasing"):
        resample([1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    with pytest.raises(InputError, match="last axis"):
        resample([1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0])
    with pytest.raises(InputError, match="shape"):
        resample([1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 1.0])
    with pytest.raises(InputError, match="at least 2"):
        resample([1.0], [1.0, 2.0], [1.0, 1.0])


# --------------------------------------------------------------------------- fast path


@pytest.mark.parametrize(
    "new_wave",
    [
        NEW_WAVE,  # the study's case: slightly finer than the old pixels (K = 2)
        np.logspace(np.log10(3400.0), np.log10(8400.0), 700),  # coarser (general loop)
        np.logspace(np.log10(3300.0), np.log10(9800.0), 9000),  # much finer, beyond coverage
        np.linspace(3500.0, 8000.0, 3000),  # not log-uniform at all
    ],
    ids=["4000-log", "700-log", "9000-log", "3000-linear"],
)
def test_shifted_path_equals_spectres_per_spectrum(new_wave):
    """Each spectrum its own z and pixel range; compared with one spectres call each."""
    rng = np.random.default_rng(7)
    n_grid, n_spec = 3900, 9
    k0 = 35780
    loglam = (k0 + np.arange(n_grid)) * SDSS_DLOGLAM
    z = np.concatenate([[0.0, 0.1, -0.001], rng.uniform(0.0, 0.3, n_spec - 3)])
    first = rng.integers(0, 60, n_spec)
    npix = n_grid - first - rng.integers(0, 60, n_spec)
    npix[0] = n_grid - first[0]
    flux = rng.normal(10.0, 4.0, (n_spec, n_grid))
    err = rng.uniform(0.2, 3.0, (n_spec, n_grid))
    flux[3, first[3] + 500] = np.nan
    err[4, first[4] + 900] = np.inf
    got_f, got_e, filled = resample_shifted_loglam(new_wave, loglam, z, flux, err,
                                                   first=first, npix=npix, chunk=4)
    for i in range(n_spec):
        sl = slice(first[i], first[i] + npix[i])
        wav = 10.0 ** loglam[sl] / (1.0 + z[i])
        ref_f, ref_e = spectres(new_wave, wav, flux[i, sl], err[i, sl])
        assert_equal_to_spectres(got_f[i], ref_f, f"flux row {i}")
        assert_equal_to_spectres(got_e[i], ref_e, f"err row {i}")
        if i not in (3, 4):  # rows without injected NaN/inf: NaN flux = filled
            np.testing.assert_array_equal(filled[i], np.isnan(ref_f), err_msg=f"row {i}")
    assert filled.any() and (~filled).any()


def test_shifted_path_without_errors_and_fill():
    rng = np.random.default_rng(3)
    loglam = (35800 + np.arange(500)) * SDSS_DLOGLAM
    flux = rng.normal(1.0, 0.1, (3, 500))
    z = np.array([0.01, 0.05, 0.09])
    new = np.logspace(np.log10(3300), np.log10(4000), 600)
    got_f, got_e, filled = resample_shifted_loglam(new, loglam, z, flux, fill=0.0)
    assert got_e is None
    assert np.all(got_f[filled] == 0.0) and filled.any()
    for i in range(3):
        ref = spectres(new, 10.0**loglam / (1 + z[i]), flux[i])
        assert_equal_to_spectres(got_f[i][~filled[i]], ref[~filled[i]])
        np.testing.assert_array_equal(filled[i], np.isnan(ref))


def test_shifted_path_rejects_bad_input():
    ll = (35800 + np.arange(10)) * SDSS_DLOGLAM
    f = np.ones((2, 10))
    with pytest.raises(InputError, match="not uniform"):
        resample_shifted_loglam(NEW_WAVE, ll + np.r_[0, 1e-6, np.zeros(8)], [0, 0], f)
    with pytest.raises(InputError, match="z has"):
        resample_shifted_loglam(NEW_WAVE, ll, [0.1], f)
    with pytest.raises(InputError, match="z must be"):
        resample_shifted_loglam(NEW_WAVE, ll, [0.1, -1.0], f)
    with pytest.raises(InputError, match="row 1"):
        resample_shifted_loglam(NEW_WAVE, ll, [0.1, 0.1], f, first=[0, 5], npix=[10, 6])


def test_uniform_loglam_grid_snaps_sdss_float32():
    ll = ((35805 + np.arange(3835)) * 1e-4).astype(np.float32).astype(np.float64)
    assert uniform_loglam_grid(ll) == (35805, 3835)
    with pytest.raises(InputError, match="not on the uniform grid"):
        uniform_loglam_grid(ll + 3e-5)


# --------------------------------------------------------------------------- real spectra


def _real(name: str) -> Path:
    return shared_data_path(f"spectra/{name}")


def _read(path: Path):
    from galforge.spectra.readers import read_spectrum

    sp = read_spectrum(path)
    with np.errstate(divide="ignore"):
        err = np.where(sp.ivar > 0, 1.0 / np.sqrt(np.where(sp.ivar > 0, sp.ivar, 1.0)), np.inf)
    return sp, err


@pytest.mark.archive
def test_real_spectra_equal_spectres():
    """Each real spectrum: general path on its wavelengths as read, fast path on the snapped
    SDSS grid, and all of them in one fast-path batch (different start pixels)."""
    spectra = [_read(_real(name)) for name in REAL_FILES]
    rows = []
    for sp, err in spectra:
        wav = 10.0**sp.loglam / (1.0 + sp.z)
        ref_f, ref_e = spectres(NEW_WAVE, wav, sp.flux, err)
        got_f, got_e, filled = resample(NEW_WAVE, wav, sp.flux, err)
        assert_equal_to_spectres(got_f, ref_f, f"{sp.path.name} flux (general)")
        assert_equal_to_spectres(got_e, ref_e, f"{sp.path.name} err (general)")
        assert np.isinf(ref_e).any() or sp.source_format != "spSpec"  # DR7 ivar = 0 pixels
        assert (~filled).sum() > 3000
        np.testing.assert_array_equal(filled, np.isnan(ref_f))  # reader: finite flux
        k0, n = uniform_loglam_grid(sp.loglam)
        snapped = (k0 + np.arange(n)) * SDSS_DLOGLAM
        ref_f, ref_e = spectres(NEW_WAVE, 10.0**snapped / (1.0 + sp.z), sp.flux, err)
        rows.append((k0, n, sp, err, ref_f, ref_e))
        got_f, got_e, filled = resample_shifted_loglam(NEW_WAVE, snapped, [sp.z],
                                                       sp.flux[None], err[None])
        assert_equal_to_spectres(got_f[0], ref_f, f"{sp.path.name} flux (fast)")
        assert_equal_to_spectres(got_e[0], ref_e, f"{sp.path.name} err (fast)")
        np.testing.assert_array_equal(filled[0], np.isnan(ref_f))
    kmin = min(r[0] for r in rows)
    kmax = max(r[0] + r[1] for r in rows)
    assert len({r[0] for r in rows}) > 3  # really different start pixels
    grid = (kmin + np.arange(kmax - kmin)) * SDSS_DLOGLAM
    F = np.full((len(rows), grid.size), np.nan)
    E = np.full((len(rows), grid.size), np.nan)
    first = np.array([r[0] - kmin for r in rows])
    npix = np.array([r[1] for r in rows])
    for j, (_, n, sp, err, _, _) in enumerate(rows):
        F[j, first[j]:first[j] + n] = sp.flux
        E[j, first[j]:first[j] + n] = err
    zs = np.array([r[2].z for r in rows])
    got_f, got_e, _ = resample_shifted_loglam(NEW_WAVE, grid, zs, F, E, first=first, npix=npix)
    for j, (_, _, sp, _, ref_f, ref_e) in enumerate(rows):
        # the same snapped grid as the per-spectrum call: the same references
        np.testing.assert_allclose(grid[first[j]], (kmin + first[j]) * SDSS_DLOGLAM)
        assert_equal_to_spectres(got_f[j], ref_f, f"{sp.path.name} flux (batch)")
        assert_equal_to_spectres(got_e[j], ref_e, f"{sp.path.name} err (batch)")
