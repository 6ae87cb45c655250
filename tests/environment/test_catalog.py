"""The environment catalog: one ingestion path for SDSS-layout, mock and user tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from galforge.archives.formats import SDSS_GALAXY_COLUMNS, SDSS_PROPERTY_COLUMNS
from galforge.cli import main
from galforge.cosmology import Cosmology
from galforge.environment.catalog import CatalogSettings, build_catalog, read_table
from galforge.io import InputError
from galforge.photometry import absolute_mag_r, apparent_mag_r, kcorrect_r

COSMO = Cosmology(0.3)


def sdss_like(n: int = 400, seed: int = 1) -> Table:
    """A small table in the stored SDSS layout with known absolute magnitudes."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.01, 0.09, n)
    Mr = rng.uniform(-22.5, -17.5, n)
    g_r = rng.uniform(0.3, 0.9, n)
    ext_r = rng.uniform(0.02, 0.1, n)
    petro = apparent_mag_r(Mr, z, g_r, COSMO, extinction_r=ext_r)
    tab = Table()
    tab["objID"] = np.arange(n, dtype=np.int64) + 587722981742084000
    tab["specObjID"] = np.arange(n, dtype=np.int64) + 75094092970000000
    tab["ra"] = rng.uniform(150, 160, n)
    tab["dec"] = rng.uniform(10, 20, n)
    tab["z"] = z
    tab["zErr"] = np.full(n, 1e-4, np.float32)
    tab["petroMag_r"] = petro.astype(np.float32)
    tab["modelMag_r"] = petro.astype(np.float32)
    tab["extinction_r"] = ext_r.astype(np.float32)
    tab["extinction_g"] = (1.38 * ext_r).astype(np.float32)
    tab["modelMag_g"] = (petro + g_r + 0.38 * ext_r).astype(np.float32)
    tab["plate"] = np.full(n, 266, np.int32)
    tab["mjd"] = np.full(n, 51630, np.int32)
    tab["fiberID"] = np.arange(n, dtype=np.int32) + 1
    tab["lgm_tot_p50"] = np.where(np.arange(n) % 7 == 0, -9999.0, 10.5).astype(np.float32)
    tab["sfr_tot_p50"] = np.full(n, 0.1, np.float32)
    tab["specsfr_tot_p50"] = np.full(n, -10.4, np.float32)
    return tab, Mr


def test_sdss_layout_gives_absolute_magnitudes(tmp_path):
    tab, Mr = sdss_like()
    path = tmp_path / "sdss.fits"
    tab.write(path)
    settings = CatalogSettings(zmin=0.0, zmax=1.0, mr_max=None)
    df, report = build_catalog(path, settings, COSMO)
    assert report == {"source_file": "sdss.fits", "kind": "sdss", "input": 400,
                      "removed_redshift": 0, "removed_magnitude": 0, "selected": 400}
    # float32 magnitudes on disk: the round trip holds to their precision
    assert np.max(np.abs(df["Mr"].to_numpy() - Mr)) < 2e-5
    assert np.isnan(df["log_mstar"].to_numpy()[::7]).all()  # -9999 -> NaN
    assert set(SDSS_PROPERTY_COLUMNS) <= set(tab.colnames)


def test_volume_limit_counts(tmp_path):
    tab, Mr = sdss_like()
    path = tmp_path / "sdss.fits"
    tab.write(path)
    df, report = build_catalog(path, CatalogSettings(zmin=0.02, zmax=0.07, mr_max=-19.0), COSMO)
    z = np.asarray(tab["z"])
    inz = (z > 0.02) & (z < 0.07)
    assert report["removed_redshift"] == int((~inz).sum())
    assert report["selected"] == len(df) > 0
    assert (df["Mr"] < -19.0).all() and (df["z"] > 0.02).all() and (df["z"] < 0.07).all()
    assert report["input"] == report["removed_redshift"] + report["removed_magnitude"] + report["selected"]


def test_kcorrection_is_small_and_monotone_in_colour():
    # at z = 0.05 the r-band k-correction is a few hundredths of a magnitude, redder = larger
    k = kcorrect_r(0.05, np.array([0.3, 0.6, 0.9]))
    assert np.all((k > 0.0) & (k < 0.12)) and np.all(np.diff(k) > 0)
    assert kcorrect_r(0.0, 0.7) == 0.0
    m = apparent_mag_r(-20.0, 0.05, 0.7, COSMO)
    assert absolute_mag_r(m, 0.05, 0.7, COSMO) == pytest.approx(-20.0, abs=1e-12)


@pytest.mark.archive
def test_real_dr7_volume_limited_sample_through_column_map(dr7_vollim):
    settings = CatalogSettings(path=str(dr7_vollim), columns={"ra": "ra", "dec": "dec", "z": "z"},
                               zmin=0.02, zmax=0.107, mr_max=None)
    df, report = build_catalog(dr7_vollim, settings, COSMO)
    z = np.asarray(Table.read(dr7_vollim)["z"], dtype=float)
    assert report["input"] == 120606
    assert report["selected"] == int(((z > 0.02) & (z < 0.107)).sum())
    assert df["id"].is_unique and df["Mr"].isna().all()
    assert df["ra"].between(109.9, 261.1).all() and df["dec"].between(-3.8, 70.0).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns=["DEC"]), "no column 'DEC'"),
        (lambda d: d.assign(RA=np.where(np.arange(len(d)) == 17, np.nan, d["RA"])), "row 17: ra"),
        (lambda d: d.assign(RA=np.deg2rad(d["RA"]), DEC=np.deg2rad(d["DEC"])), "radians"),
        (lambda d: d.assign(Z=d["Z"] * 299792.458), "cz in km/s"),
        (lambda d: d.assign(Z=d["Z"] + 5.0), "no galaxy passes"),
        (lambda d: d.iloc[:0], "no rows"),
        (lambda d: d.assign(OBJ=np.zeros(len(d), dtype=np.int64)), "row 1: id 0 appears twice"),
    ],
)
def test_bad_user_catalogs_fail_with_one_clear_message_and_no_output(tmp_path, mutate, message):
    rng = np.random.default_rng(0)
    n = 200
    good = pd.DataFrame({"OBJ": np.arange(n), "RA": rng.uniform(100, 120, n),
                         "DEC": rng.uniform(0, 10, n), "Z": rng.uniform(0.03, 0.06, n)})
    path = tmp_path / "mine.csv"
    mutate(good).to_csv(path, index=False)
    cfg = {"environment": {"catalog": {"path": str(path), "mr_max": None,
                                       "columns": {"id": "OBJ", "ra": "RA", "dec": "DEC", "z": "Z"}}}}
    out, rep = tmp_path / "out" / "catalog.parquet", tmp_path / "out" / "report.json"
    rc = main(["environment-catalog", "--config", json.dumps(cfg), "--raw", str(path),
               "--out", str(out), "--report", str(rep)])
    assert rc == 2
    outdir = tmp_path / "out"
    assert not outdir.exists() or not any(outdir.iterdir()), "no partial output"


def test_bad_catalog_message_names_file_and_detail(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"ra": [1.0, np.nan], "dec": [0.0, 0.0], "z": [0.03, 0.04]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"mine\.csv: row 1: ra is not a finite number"):
        build_catalog(path, CatalogSettings(path=str(path), mr_max=None), COSMO)


def test_mr_cut_without_magnitudes_is_an_error(tmp_path):
    path = tmp_path / "mine.parquet"
    pd.DataFrame({"ra": [1.0, 2.0], "dec": [0.0, 0.0], "z": [0.03, 0.04]}).to_parquet(path)
    with pytest.raises(InputError, match="no Mr column"):
        build_catalog(path, CatalogSettings(path=str(path)), COSMO)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_table(tmp_path / "nope.fits")
    (tmp_path / "cat.dat").write_text("x")
    with pytest.raises(InputError, match="format"):
        read_table(tmp_path / "cat.dat")


def test_sdss_table_missing_a_column_is_named(tmp_path):
    tab, _ = sdss_like(20)
    del tab["extinction_g"]
    path = tmp_path / "sdss.fits"
    tab.write(path)
    with pytest.raises(InputError, match="missing column 'extinction_g'"):
        build_catalog(path, CatalogSettings(), COSMO)
    assert set(SDSS_GALAXY_COLUMNS) - set(tab.colnames) == {"extinction_g"}


def _casjobs_style_fits(path, n=50):
    """A user table whose every column has shape (N, 1) (TDIM='(1)'), as CasJobs writes."""
    rng = np.random.default_rng(3)
    t = Table()
    t["objid"] = np.arange(n, dtype=np.int64).reshape(n, 1)
    t["ra"] = rng.uniform(150, 160, n).reshape(n, 1)
    t["dec"] = rng.uniform(0, 5, n).reshape(n, 1)
    t["z"] = rng.uniform(0.03, 0.06, n).reshape(n, 1)
    t["flux"] = rng.uniform(0, 1, (n, 3))  # a real vector column: not read
    t.write(path, format="fits")
    return path


def test_fits_columns_of_shape_n1_are_squeezed(tmp_path):
    path = _casjobs_style_fits(tmp_path / "casjobs.fits")
    df = read_table(path)
    assert list(df.columns) == ["objid", "ra", "dec", "z"] and len(df) == 50
    assert df.attrs["skipped_columns"] == ["flux"]
    cat, report = build_catalog(path, CatalogSettings(
        path=str(path), columns={"id": "objid"}, zmin=0.02, zmax=0.07, mr_max=None),
        Cosmology(Om0=0.3))
    assert len(cat) == 50 and cat["id"].tolist() == list(range(50))


def test_a_missing_column_error_lists_what_the_file_has(tmp_path):
    path = _casjobs_style_fits(tmp_path / "casjobs.fits")
    with pytest.raises(InputError, match=r"no column 'objID'.*the file has: objid, ra, dec, z, "
                                         r"flux \(vector, not read\)"):
        build_catalog(path, CatalogSettings(path=str(path), columns={"id": "objID"},
                                            mr_max=None), Cosmology(Om0=0.3))


def test_a_truncated_fits_catalog_says_truncated(tmp_path):
    path = _casjobs_style_fits(tmp_path / "cut.fits", n=2000)
    data = path.read_bytes()
    for cut in (len(data) - 5000, 4000, 100):
        bad = tmp_path / f"cut{cut}.fits"
        bad.write_bytes(data[:cut])
        with pytest.raises(InputError, match="truncated"):
            read_table(bad)
