"""Reading real SDSS spectra (DR7 spSpec, DR8+ spec lite and full) and bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import shared_data_path
from galforge.archives.sdss_spectra import spectrum_key
from galforge.io import InputError
from galforge.spectra.readers import (
    DR7_SPEC_CLASSES,
    parse_spectrum_filename,
    read_spectrum,
    spectrum_filename,
)

# The README table of shared/data/spectra: file -> (format, plate, mjd, fiber, class, z).
REAL = {
    "spSpec-51630-0266-637.fit": ("spSpec", 266, 51630, 637, "GALAXY", 0.0880),
    "spSpec-51984-0296-003.fit": ("spSpec", 296, 51984, 3, "GALAXY", 0.0785),
    "spSpec-51984-0296-002.fit": ("spSpec", 296, 51984, 2, "GALAXY", 0.1037),
    "spec-0266-51602-0001.fits": ("spec-lite", 266, 51602, 1, "GALAXY", 0.0213),
    "spec-0266-51630-0004.fits": ("spec-full", 266, 51630, 4, "GALAXY", 0.0647),
    "spec-0266-51630-0015.fits": ("spec-full", 266, 51630, 15, "STAR", 0.0006),
    "spec-0295-51585-0596.fits": ("spec-lite", 295, 51585, 596, "GALAXY", 0.1379),
    "spec-0280-51612-0117.fits": ("spec-lite", 280, 51612, 117, "QSO", 0.2446),
}


@pytest.mark.archive
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_spectrum_reads_with_its_ids_and_redshift(name: str) -> None:
    fmt, plate, mjd, fiber, cls, z = REAL[name]
    spec = read_spectrum(shared_data_path(f"spectra/{name}"))
    assert spec.source_format == fmt
    assert (spec.plate, spec.mjd, spec.fiber) == (plate, mjd, fiber)
    assert spec.spec_class == cls
    # the README gives 4 decimals (and lists 0.0784466 as 0.0785): agree to 1e-4
    assert spec.z == pytest.approx(z, abs=1e-4)
    assert spec.key == (plate * 10**5 + mjd) * 10**3 + fiber
    n = spec.loglam.size
    assert 3800 < n < 3900  # SDSS spectrograph: ~3850 pixels of 1e-4 dex
    for arr, dtype in ((spec.loglam, np.float64), (spec.flux, np.float64),
                       (spec.ivar, np.float64), (spec.and_mask, np.int64)):
        assert arr.shape == (n,) and arr.dtype == dtype
    # log-linear SDSS grid of 1e-4 dex: exact (DR7 COEFF0/COEFF1; DR8+ float32 loglam
    # snapped back to the grid it rounds)
    np.testing.assert_allclose(np.diff(spec.loglam), 1e-4, rtol=1e-9)
    if fmt != "spSpec":
        with fits.open(shared_data_path(f"spectra/{name}")) as hdul:
            stored = hdul[1].data["loglam"].astype(np.float64)
        assert np.max(np.abs(spec.loglam - stored)) < 3e-7  # ~1 float32 ulp
    wave = 10**spec.loglam
    # nominal coverage 3800-9200 A; the real files start 3790-3824 A and end 9181-9221 A
    assert 3780 < wave[0] < 3830 and 9150 < wave[-1] < 9230
    good = spec.ivar > 0
    assert good.mean() > 0.98
    assert np.all(np.isfinite(spec.flux[good])) and np.all(spec.ivar >= 0)
    assert np.median(spec.flux[good]) > 0  # every sample has positive continuum


@pytest.mark.archive
def test_dr7_error_row_zero_gives_zero_weight_and_nodata_mask() -> None:
    path = shared_data_path("spectra/spSpec-51630-0266-637.fit")
    with fits.open(path) as hdul:
        err = hdul[0].data[2].astype(np.float64)
        mask_row = hdul[0].data[3]
    spec = read_spectrum(path)
    assert np.array_equal(spec.ivar == 0, err <= 0)
    np.testing.assert_allclose(spec.ivar[err > 0], 1 / err[err > 0] ** 2, rtol=1e-12)
    assert np.all(spec.and_mask[err <= 0] & (1 << 24))  # NODATA where there is no error
    # the image mask row (float32 in the file) is kept exactly, EMLINE (bit 30) included
    assert np.array_equal(spec.and_mask, mask_row.astype(np.int64))
    assert np.any(spec.and_mask & (1 << 30))


@pytest.mark.archive
def test_dr7_redshift_warnings_are_read_and_judged_per_format() -> None:
    """The two z < 0.1 DR7 galaxies carry soft DR7 zWarning bits; the DR8+ files have 0."""
    a = read_spectrum(shared_data_path("spectra/spSpec-51630-0266-637.fit"))
    b = read_spectrum(shared_data_path("spectra/spSpec-51984-0296-003.fit"))
    assert (a.z_warning, b.z_warning) == (0x1200, 0x10200)  # AB_INC|LOC, AB_INC|4000BREAK
    assert a.z_conf == pytest.approx(0.527, abs=1e-3) and b.z_conf == pytest.approx(0.993, abs=1e-3)
    assert a.redshift_reliable and b.redshift_reliable
    c = read_spectrum(shared_data_path("spectra/spec-0266-51602-0001.fits"))
    assert c.z_warning == 0 and c.redshift_reliable and np.isnan(c.z_conf)


def test_spectrum_file_names_match_the_archive() -> None:
    assert spectrum_filename("spSpec", 266, 51630, 637) == "spSpec-51630-0266-637.fit"
    assert spectrum_filename("spec-lite", 266, 51602, 1) == "spec-0266-51602-0001.fits"
    assert spectrum_filename("spec-full", 295, 51585, 596) == "spec-0295-51585-0596.fits"
    assert parse_spectrum_filename("x/spSpec-51984-0296-003.fit") == ("spSpec", 296, 51984, 3)
    assert parse_spectrum_filename("spec-0280-51612-0117.fits") == ("spec", 280, 51612, 117)
    assert parse_spectrum_filename("notes.txt") is None
    with pytest.raises(ValueError, match="unknown spectrum format"):
        spectrum_filename("spZbest", 1, 2, 3)
    keys = spectrum_key([266, 10**7], [51630, 51630], [637, 1])
    assert keys.tolist() == [26651630637, -1]
    assert DR7_SPEC_CLASSES[7] == "GAL_EM"


def test_missing_and_non_fits_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not found: .*nope\.fits"):
        read_spectrum(tmp_path / "nope.fits")
    junk = tmp_path / "spec-0001-50000-0001.fits"
    junk.write_text("<html>503 Service Unavailable</html>")
    with pytest.raises(InputError, match=r"spec-0001-50000-0001\.fits"):
        read_spectrum(junk)


def _lite(path: Path, *, coadd_cols=("flux", "loglam", "ivar", "and_mask"), specobj=True,
          ids=(1, 50000, 1)) -> Path:
    n = 10
    arrays = {"flux": np.ones(n, np.float32), "loglam": (3.58 + 1e-4 * np.arange(n)).astype(
        np.float32), "ivar": np.ones(n, np.float32), "and_mask": np.zeros(n, np.int32)}
    fmt = {"flux": "E", "loglam": "E", "ivar": "E", "and_mask": "J"}
    coadd = fits.BinTableHDU.from_columns(
        [fits.Column(name=c, format=fmt[c], array=arrays[c]) for c in coadd_cols], name="COADD")
    hdus = [fits.PrimaryHDU(), coadd]
    if specobj:
        cols = {"PLATE": ("J", ids[0]), "MJD": ("J", ids[1]), "FIBERID": ("J", ids[2]),
                "Z": ("E", 0.05), "Z_ERR": ("E", 1e-5), "ZWARNING": ("J", 0),
                "CLASS": ("6A", "GALAXY")}
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column(name=k, format=f, array=np.array([v])) for k, (f, v) in cols.items()],
            name="SPECOBJ"))
    fits.HDUList(hdus).writeto(path)
    return path


def test_broken_files_give_input_errors_naming_file_and_part(tmp_path: Path) -> None:
    ok = read_spectrum(_lite(tmp_path / "spec-0001-50000-0001.fits"))
    assert ok.source_format == "spec-lite" and ok.spec_class == "GALAXY"
    with pytest.raises(InputError, match=r"nocol\.fits: HDU COADD has no column 'ivar'"):
        read_spectrum(_lite(tmp_path / "nocol.fits", coadd_cols=("flux", "loglam", "and_mask")))
    with pytest.raises(InputError, match=r"nospecobj\.fits: no SPECOBJ binary table"):
        read_spectrum(_lite(tmp_path / "nospecobj.fits", specobj=False))
    with pytest.raises(InputError, match=r"name says plate/mjd/fiber 1/50000/2"):
        read_spectrum(_lite(tmp_path / "spec-0001-50000-0002.fits"))


@pytest.mark.archive
def test_broken_real_files_give_input_errors(tmp_path: Path) -> None:
    src = shared_data_path("spectra/spSpec-51630-0266-637.fit")
    truncated = tmp_path / "spSpec-51630-0266-637.fit"
    truncated.write_bytes(src.read_bytes()[:20000])
    with pytest.raises(InputError, match=r"spSpec-51630-0266-637\.fit: damaged FITS file"):
        read_spectrum(truncated)
    lite = shared_data_path("spectra/spec-0266-51602-0001.fits")
    cut = tmp_path / lite.name
    cut.write_bytes(lite.read_bytes()[:40000])  # inside the COADD table
    with pytest.raises(InputError, match=r"spec-0266-51602-0001\.fits: damaged .*truncated"):
        read_spectrum(cut)
    nokey = tmp_path / "nokey.fit"
    shutil.copy(src, nokey)
    with fits.open(nokey, mode="update") as hdul:
        del hdul[0].header["SPEC_CLN"]
    with pytest.raises(InputError, match=r"nokey\.fit: header keyword 'SPEC_CLN' missing"):
        read_spectrum(nokey)
