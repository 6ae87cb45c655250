"""Direct binary-table reads agree with astropy, and refuse the tables they do not handle."""

from __future__ import annotations

import gzip
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import shared_data_path
from galforge.spectra import readers
from galforge.spectra.bintable import read_simple_table, simple_table_dtype
from galforge.spectra.readers import read_spectrum

REAL_SPEC = ["spec-0266-51602-0001.fits", "spec-0266-51630-0004.fits",
             "spec-0266-51630-0015.fits", "spec-0280-51612-0117.fits",
             "spec-0295-51585-0596.fits"]
REAL_SPSPEC = ["spSpec-51630-0266-637.fit", "spSpec-51984-0296-002.fit",
               "spSpec-51984-0296-003.fit"]


def _assert_same_columns(hdu: fits.BinTableHDU, raw: np.ndarray, where: str) -> None:
    ref = hdu.data
    assert list(raw.dtype.names) == list(ref.columns.names), where
    assert len(raw) == len(ref), where
    for name in ref.columns.names:
        a, b = raw[name], np.asarray(ref[name])
        if a.dtype.kind == "S":
            got = [x.decode("ascii") for x in np.ravel(a)]
            exp = [str(x) for x in np.ravel(b)]
            assert [g.rstrip() for g in got] == [e.rstrip() for e in exp], f"{where}: {name}"
        else:
            assert a.shape == b.shape, f"{where}: {name}"
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{where}: {name}"


@pytest.mark.archive
@pytest.mark.parametrize("name", REAL_SPEC + REAL_SPSPEC)
def test_every_table_of_the_real_files_reads_as_astropy_reads_it(name: str) -> None:
    path = shared_data_path(f"spectra/{name}")
    with fits.open(path, memmap=False) as hdul:
        n_simple = 0
        for i, hdu in enumerate(hdul):
            if not isinstance(hdu, fits.BinTableHDU):
                continue
            raw = read_simple_table(hdul, i)
            if raw is None:
                continue
            n_simple += 1
            _assert_same_columns(hdu, raw, f"{name} HDU {i}")
    # the tables the reader needs (COADD + SPECOBJ, or the DR7 mask table) are simple
    assert n_simple >= (2 if name.startswith("spec-") else 1)


@pytest.mark.archive
@pytest.mark.parametrize("name", REAL_SPEC + REAL_SPSPEC)
def test_read_spectrum_is_the_same_with_and_without_the_direct_path(name, monkeypatch) -> None:
    path = shared_data_path(f"spectra/{name}")
    fast = read_spectrum(path)
    monkeypatch.setattr(readers, "read_simple_table", lambda hdul, index: None)
    slow = read_spectrum(path)
    for f in fields(fast):
        a, b = getattr(fast, f.name), getattr(slow, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
        else:
            assert a == b or (a != a and b != b), f.name


def _table(cols: list[fits.Column], **header) -> fits.BinTableHDU:
    hdu = fits.BinTableHDU.from_columns(cols, name="T")
    for k, v in header.items():
        hdu.header[k] = v
    return hdu


def test_repeat_counts_strings_and_gzip_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 37
    cols = [
        fits.Column(name="flux", format="E", array=rng.normal(size=n).astype(np.float32)),
        fits.Column(name="d", format="D", array=rng.normal(size=n)),
        fits.Column(name="mask", format="J", array=rng.integers(-2**31, 2**31 - 1, n)),
        fits.Column(name="k", format="K", array=rng.integers(-2**62, 2**62, n)),
        fits.Column(name="i", format="I", array=rng.integers(-2**15, 2**15 - 1, n)),
        fits.Column(name="b", format="B", array=rng.integers(0, 255, n).astype(np.uint8)),
        fits.Column(name="vec", format="5E", array=rng.normal(size=(n, 5)).astype(np.float32)),
        fits.Column(name="cls", format="8A", array=np.array(["GALAXY", "QSO", "STAR"] * 12
                                                             + ["X"])),
    ]
    plain = tmp_path / "t.fits"
    fits.HDUList([fits.PrimaryHDU(), _table(cols)]).writeto(plain)
    packed = tmp_path / "t.fits.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        with fits.open(path, memmap=False) as hdul:
            raw = read_simple_table(hdul, 1)
            assert raw is not None and raw["vec"].shape == (n, 5)
            _assert_same_columns(hdul[1], raw, path.name)
            # astropy still reads the file normally afterwards
            assert np.array_equal(hdul[1].data["mask"], raw["mask"])


@pytest.mark.parametrize("case", ["logical", "bits", "heap", "scaled", "dims", "duplicate"])
def test_tables_it_does_not_handle_are_left_to_astropy(tmp_path: Path, case: str) -> None:
    n = 4
    base = fits.Column(name="x", format="E", array=np.arange(n, dtype=np.float32))
    extra = {
        "logical": [fits.Column(name="ok", format="L", array=np.array([True, False] * 2))],
        "bits": [fits.Column(name="flags", format="8X", array=np.zeros((n, 1), np.uint8))],
        "heap": [fits.Column(name="var", format="PE()",
                             array=np.array([np.ones(k, np.float32) for k in range(1, n + 1)],
                                            dtype=object))],
        "scaled": [fits.Column(name="u", format="I", bzero=32768,
                               array=np.arange(n, dtype=np.uint16))],
        "dims": [fits.Column(name="img", format="6E", dim="(3,2)",
                             array=np.zeros((n, 2, 3), np.float32))],
        "duplicate": [fits.Column(name="X", format="E", array=np.zeros(n, np.float32))],
    }[case]
    path = tmp_path / f"{case}.fits"
    fits.HDUList([fits.PrimaryHDU(), _table([base, *extra])]).writeto(path)
    with fits.open(path, memmap=False) as hdul:
        assert simple_table_dtype(hdul[1].header) is None
        assert read_simple_table(hdul, 1) is None
        assert read_simple_table(hdul, 0) is None  # not a table at all


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_a_truncated_table_is_an_error_not_short_data(tmp_path: Path) -> None:
    path = tmp_path / "t.fits"
    cols = [fits.Column(name="x", format="D", array=np.arange(1000, dtype=np.float64))]
    fits.HDUList([fits.PrimaryHDU(), _table(cols)]).writeto(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(data[: 2880 * 2 + 4000])  # headers + half of the rows
    with fits.open(cut, memmap=False) as hdul, pytest.raises(OSError, match="truncated"):
        read_simple_table(hdul, 1)
