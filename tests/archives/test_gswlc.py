"""GSWLC reader/writer/fetcher: the shared LCS-GSWLC-X2 table, round trips, the release .dat."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from conftest import shared_data_path
from galforge.archives import gswlc
from galforge.archives.download import DownloadOptions
from galforge.archives.testserver import FaultServer
from galforge.io import InputError

LCS = "gswlc/LCS-GSWLC-X2-NO-DR10-AGN-Simard2011-tab1-vizier-10arcsec-Tempel-2021Jan07.fits"

# Two lines in the layout of the release file GSWLC-X2.dat (24 whitespace-separated
# columns, no header; -99 = missing). Values made up, ids in the SDSS/GALEX ranges.
DAT_LINES = (
    "1237645879551066262 6380982889937585487 266 51630 637 145.8921700 0.0594120 0.0880307"
    " 1.23 10.512 0.031 0.412 0.081 1.52 0.21 0.83 0.12 0.61 0.09 0 2 3 5 1\n"
    "1237648704577142822 -99 296 51984 3 147.1000000 -0.2000000 0.0784466"
    " -99 -99 -99 -99 -99 -99 -99 -99 -99 -99 -99 5 1 0 0 1\n"
)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.archive
def test_shared_lcs_table_reads_with_missing_values_as_nan() -> None:
    path = shared_data_path(LCS)
    t = gswlc.read_gswlc(path)
    assert len(t) == 1334
    assert t.colnames == list(gswlc.STANDARD_COLUMNS)
    for name, dtype in gswlc.STANDARD_COLUMNS.items():
        assert t[name].dtype == dtype
    with fits.open(path) as hdul:
        raw = hdul[1].data
        raw_mstar = raw["logMstar"].astype(np.float64)
        raw_sfr = raw["logSFR"].astype(np.float64)
        raw_av = raw["AV_2"].astype(np.float64)
        assert np.array_equal(t["plate"], raw["plate"]) and np.array_equal(t["fiber"], raw["fiber_id"])
        assert np.array_equal(t["mjd"], raw["MJD"])
        np.testing.assert_allclose(t["z"], raw["Z_1"].astype(np.float64))
    missing = raw_mstar == -99
    assert missing.sum() == 7  # the README: -99 = missing
    assert np.array_equal(np.isnan(t["log_mstar"]), missing)
    assert np.array_equal(np.isnan(t["log_sfr"]), raw_sfr == -99)
    assert np.array_equal(np.isnan(t["av"]), raw_av == -99)  # AV_2 = GSWLC's, not NSA's AV_1
    good = ~missing
    np.testing.assert_allclose(t["log_mstar"][good], raw_mstar[good])
    assert 7 < np.nanmin(t["log_mstar"]) and np.nanmax(t["log_mstar"]) < 12.5
    assert np.all((t["z"] > 0.01) & (t["z"] < 0.3))  # GSWLC's range 0.01 < z < 0.30
    assert t.meta["layout"] == "fits"


@pytest.mark.archive
def test_write_read_round_trip_of_the_shared_table(tmp_path: Path) -> None:
    t = gswlc.read_gswlc(shared_data_path(LCS))
    dest = gswlc.write_gswlc(t, tmp_path / "gswlc.fits")
    with fits.open(dest) as hdul:
        assert hdul[1].columns.names == list(gswlc.GSWLC_X2_COLUMNS)
        assert hdul[1].name == "GSWLC"
        assert np.sum(hdul[1].data["LOGMSTAR"] == -99) == 7  # NaN written back as -99
    back = gswlc.read_gswlc(dest)
    for name in gswlc.STANDARD_COLUMNS:
        np.testing.assert_allclose(np.asarray(back[name], float), np.asarray(t[name], float),
                                   rtol=1e-6, equal_nan=True, err_msg=name)


def test_release_dat_reads_plain_and_gzipped_whatever_the_name(tmp_path: Path) -> None:
    plain = tmp_path / "GSWLC-X2.dat"
    plain.write_text(DAT_LINES)
    # the authors' server may answer with Content-Encoding x-gzip: a ".gz" name can hold text,
    # and a gzip file may have any name
    (tmp_path / "text.dat.gz").write_text(DAT_LINES)
    (tmp_path / "packed.dat").write_bytes(gzip.compress(DAT_LINES.encode()))
    tables = [gswlc.read_gswlc(tmp_path / n) for n in ("GSWLC-X2.dat", "text.dat.gz",
                                                       "packed.dat")]
    for t in tables:
        assert t.meta["layout"] == "gswlc-x2-dat"
        assert t["plate"].tolist() == [266, 296] and t["fiber"].tolist() == [637, 3]
        assert t["mjd"].tolist() == [51630, 51984]
        np.testing.assert_allclose(t["log_mstar"], [10.512, np.nan])
        np.testing.assert_allclose(t["log_sfr"], [0.412, np.nan])
        np.testing.assert_allclose(t["log_sfr_err"], [0.081, np.nan])
        np.testing.assert_allclose(t["av"], [0.61, np.nan])
        assert t["flag_sed"].tolist() == [0, 5]


def test_dat_round_trip_keeps_every_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 50
    table = {
        "objid": rng.integers(1237645879551066262, 1237680000000000000, n),
        "plate": rng.integers(266, 3000, n), "mjd": rng.integers(51578, 55000, n),
        "fiber": rng.integers(1, 641, n), "z": rng.uniform(0.01, 0.3, n),
        "log_mstar": rng.uniform(8, 12, n), "log_sfr": rng.uniform(-3, 2, n),
        "log_mstar_err": rng.uniform(0, 0.2, n), "log_sfr_err": rng.uniform(0, 0.5, n),
        "av": rng.uniform(0, 2, n), "flag_sed": rng.integers(0, 2, n),
        "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 70, n),
    }
    table["log_sfr"][3] = np.nan
    for suffix in ("x.dat", "x.dat.gz", "x.fits"):
        back = gswlc.read_gswlc(gswlc.write_gswlc(table, tmp_path / suffix))
        assert len(back) == n
        for name in ("plate", "mjd", "fiber", "flag_sed"):
            assert np.array_equal(back[name], table[name]), (suffix, name)
        for name in ("z", "log_mstar", "log_sfr", "log_mstar_err", "log_sfr_err", "av"):
            # .dat: 7 significant digits (7 decimals for z); FITS: float32 (z float64)
            np.testing.assert_allclose(back[name], table[name], rtol=2e-6, atol=1e-6,
                                       equal_nan=True, err_msg=f"{suffix} {name}")
    objid = np.loadtxt(tmp_path / "x.dat", dtype=np.int64, usecols=0)
    assert np.array_equal(objid, table["objid"])  # 64-bit ids survive the ASCII layout
    assert len((tmp_path / "x.dat").read_text().splitlines()[0].split()) == 24


def test_bad_inputs_name_the_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="GSWLC file not found"):
        gswlc.read_gswlc(tmp_path / "none.dat")
    short = tmp_path / "short.dat"
    short.write_text("1 2 266 51630 637 1.0 2.0\n")
    with pytest.raises(InputError, match=r"short\.dat: 7 columns per line, .* has 24"):
        gswlc.read_gswlc(short)
    words = tmp_path / "words.dat"
    words.write_text("<html> not found </html>\n")
    with pytest.raises(InputError, match=r"words\.dat"):
        gswlc.read_gswlc(words)
    nomass = tmp_path / "nomass.fits"
    Table({"PLATE": [1], "MJD": [2], "FIBER_ID": [3], "Z": [0.1], "LOGSFR_SED": [0.0]}).write(
        nomass)
    with pytest.raises(InputError, match=r"nomass\.fits: no column for 'log_mstar'"):
        gswlc.read_gswlc(nomass)
    with pytest.raises(InputError, match="missing standard column.*log_sfr"):
        gswlc.write_gswlc({"plate": [1], "mjd": [1], "fiber": [1], "z": [0.1],
                           "log_mstar": [10.0]}, tmp_path / "x.fits")
    assert not (tmp_path / "x.fits").exists()


def test_fetch_gswlc_resumes_through_the_download_layer(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = [DAT_LINES.splitlines()[0].split() for _ in range(1000)]
    for row in rows:  # vary the values so that the file does not compress to nothing
        row[9], row[11] = f"{rng.uniform(8, 12):.3f}", f"{rng.uniform(-2, 2):.3f}"
    payload = gzip.compress("".join(" ".join(r) + "\n" for r in rows).encode(), mtime=0)
    assert len(payload) > 4000  # several client chunks of 256 bytes
    sha = "sha256:" + hashlib.sha256(payload).hexdigest()
    opts = DownloadOptions(retries=2, backoff_base=0.001, backoff_max=0.01, progress=False,
                           chunk_size=256,
                           connect_timeout=2, read_timeout=2)
    with FaultServer() as srv:
        srv.add("/gswlc/GSWLC-X2.dat.gz", payload, drop_after=len(payload) // 2, chunk_size=256)
        dest = gswlc.fetch_gswlc(tmp_path / "GSWLC-X2.dat.gz",
                                 url=srv.url("/gswlc/GSWLC-X2.dat.gz"), checksum=sha,
                                 options=opts)
        ranges = [r.header("range") for r in srv.requests_for("/gswlc/GSWLC-X2.dat.gz")]
    assert ranges[0] is None and ranges[1].startswith("bytes=")  # resumed, not restarted
    assert dest.read_bytes() == payload
    assert len(gswlc.read_gswlc(dest)) == 1000
    assert gswlc.GSWLC_X2_URL == "https://salims.pages.iu.edu/gswlc/GSWLC-X2.dat.gz"
