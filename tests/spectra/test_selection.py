"""Selection of the real spectra in shared/data against GSWLC (and MPA-JHU metallicity).

What the shared data hold: the LCS-GSWLC-X2 table covers 1,334 galaxies around nine
clusters (plates 536-5880) and lists none of the eight real spectra. So the first test
runs the selection on the shared table as it is (every z < 0.1 galaxy: "no GSWLC
match"), and the others add GSWLC rows for the eight spectra, written with
``write_gswlc`` in the official layout. Their mass/SFR values are placeholders made up
for the test, not the galaxies' real GSWLC values.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table, vstack

from conftest import shared_data_path
from galforge.archives.gswlc import read_gswlc, write_gswlc
from galforge.archives.mpajhu import read_mpajhu, write_mpajhu_oh
from galforge.io import InputError
from galforge.spectra.selection import (
    PROPERTY_COLUMNS,
    REJECT_COLUMNS,
    SelectionSettings,
    select_spectra,
)

LCS = "gswlc/LCS-GSWLC-X2-NO-DR10-AGN-Simard2011-tab1-vizier-10arcsec-Tempel-2021Jan07.fits"
NAMES = [
    "spSpec-51630-0266-637.fit", "spSpec-51984-0296-003.fit", "spSpec-51984-0296-002.fit",
    "spec-0266-51602-0001.fits", "spec-0266-51630-0004.fits", "spec-0266-51630-0015.fits",
    "spec-0295-51585-0596.fits", "spec-0280-51612-0117.fits",
]
#: the z < 0.1 galaxies (README table), as plate/mjd/fiber
KEEP = {(266, 51630, 637), (296, 51984, 3), (266, 51602, 1), (266, 51630, 4)}
#: the others and the reason code each must get
EXPECTED_REJECTS = {
    "spSpec-51984-0296-002.fit": ("z_range", "redshift z=0.1037 outside 0 < z < 0.1"),
    "spec-0295-51585-0596.fits": ("z_range", "redshift z=0.1379 outside 0 < z < 0.1"),
    "spec-0266-51630-0015.fits": ("not_galaxy", "not a galaxy: class STAR"),
    "spec-0280-51612-0117.fits": ("not_galaxy", "not a galaxy: class QSO"),
}
# placeholder GSWLC values per spectrum (plate, mjd, fiber, z, log M*, log SFR)
PLACEHOLDER = [
    (266, 51630, 637, 0.0880, 10.6, 0.1), (296, 51984, 3, 0.0784, 10.9, -0.8),
    (296, 51984, 2, 0.1037, 11.1, -0.2), (266, 51602, 1, 0.0213, 9.4, -0.4),
    (266, 51630, 4, 0.0647, 10.2, 0.5), (266, 51630, 15, 0.0006, 9.0, -1.0),
    (295, 51585, 596, 0.1379, 11.3, 0.2), (280, 51612, 117, 0.2446, 11.0, 1.0),
]


def _real_paths() -> list[Path]:
    return [shared_data_path(f"spectra/{n}") for n in NAMES]


def _gswlc_with_rows(tmp_path: Path, *, drop_mass_of: tuple[int, int, int] | None = None) -> Path:
    """The shared LCS table plus placeholder rows for the eight real spectra, as one file."""
    shared = read_gswlc(shared_data_path(LCS))
    rows = Table(rows=PLACEHOLDER, names=("plate", "mjd", "fiber", "z", "log_mstar", "log_sfr"))
    for name in ("log_mstar_err", "log_sfr_err"):
        rows[name] = 0.05
    rows["av"] = np.linspace(0.1, 0.8, len(rows))
    rows["flag_sed"] = np.zeros(len(rows), np.int16)
    if drop_mass_of is not None:
        hit = [(r["plate"], r["mjd"], r["fiber"]) == drop_mass_of for r in rows]
        rows["log_mstar"][np.flatnonzero(hit)] = np.nan  # written as -99
    table = vstack([shared, rows], metadata_conflicts="silent")
    return write_gswlc(table, tmp_path / "gswlc.fits")


def _rejects_by_name(rejects) -> dict[str, tuple[str, str]]:
    return {Path(p).name: (c, r) for p, c, r in zip(rejects["path"], rejects["code"],
                                                      rejects["reason"], strict=True)}


@pytest.mark.archive
def test_shared_gswlc_table_lists_none_of_the_real_spectra(caplog) -> None:
    gswlc = read_gswlc(shared_data_path(LCS))
    with caplog.at_level(logging.INFO, logger="galforge.spectra"):
        props, rejects = select_spectra(_real_paths(), gswlc, None)
    assert len(props) == 0 and list(props.columns) == list(PROPERTY_COLUMNS)
    assert list(rejects.columns) == list(REJECT_COLUMNS)
    by_name = _rejects_by_name(rejects)
    assert len(by_name) == 8
    for plate, mjd, fiber in KEEP:
        name = next(n for n in NAMES if str(fiber) in n and str(plate) in n and str(mjd) in n)
        assert by_name[name] == ("no_gswlc", f"no GSWLC match for spectrum {plate}/{mjd}/{fiber}")
    for name, (code, reason) in EXPECTED_REJECTS.items():
        assert by_name[name][0] == code and by_name[name][1].startswith(reason)
    for name in NAMES:
        assert f"rejected {name}: " in caplog.text


@pytest.mark.archive
def test_z_below_0p1_galaxies_kept_others_rejected_with_reasons(tmp_path, caplog) -> None:
    gswlc_file = _gswlc_with_rows(tmp_path)
    # MPA-JHU metallicity for two of the kept galaxies; NaN (no estimate) for one
    info, fiboh = write_mpajhu_oh(
        [266, 296, 266], [51630, 51984, 51602], [637, 3, 1], [8.95, np.nan, 8.71],
        tmp_path / "gal_info_dr7_v5_2.fit.gz", tmp_path / "gal_fiboh_dr7_v5_2.fits.gz",
    )
    oh = read_mpajhu(info, fiboh=fiboh)
    with caplog.at_level(logging.INFO, logger="galforge.spectra"):
        props, rejects = select_spectra(_real_paths(), gswlc_file, oh, SelectionSettings())

    kept = set(zip(props["plate"], props["mjd"], props["fiber"], strict=True))
    assert kept == KEEP
    assert props["key"].is_monotonic_increasing and props["key"].dtype == np.int64
    assert np.all(props["z"] < 0.1) and np.all(props["z"] > 0)
    by_key = props.set_index("key")
    # properties come from the GSWLC rows matched on plate/mjd/fiber
    truth = {(p, m, f): (ms, sfr) for p, m, f, _z, ms, sfr in PLACEHOLDER}
    for p, m, f in KEEP:
        row = by_key.loc[(p * 10**5 + m) * 10**3 + f]
        ms, sfr = truth[(p, m, f)]
        assert row["log_mstar"] == pytest.approx(ms, abs=1e-6)
        assert row["log_sfr"] == pytest.approx(sfr, abs=1e-6)
        assert row["log_ssfr"] == pytest.approx(sfr - ms, abs=1e-6)
    assert by_key.loc[26651630637, "oh_p50"] == pytest.approx(8.95, abs=1e-6)
    assert by_key.loc[26651602001, "oh_p50"] == pytest.approx(8.71, abs=1e-6)
    assert np.isnan(by_key.loc[29651984003, "oh_p50"])  # MPA-JHU has no estimate
    assert np.isnan(by_key.loc[26651630004, "oh_p50"])  # not in the MPA-JHU table at all

    by_name = _rejects_by_name(rejects)
    assert set(by_name) == set(EXPECTED_REJECTS)  # all four have GSWLC rows: rejected anyway
    for name, (code, reason) in EXPECTED_REJECTS.items():
        assert by_name[name][0] == code
        assert by_name[name][1].startswith(reason)
        assert f"rejected {name}: {reason}" in caplog.text
    assert "kept 4 of 8 spectra" in caplog.text


@pytest.mark.archive
def test_missing_mass_metallicity_unreadable_and_duplicate(tmp_path, caplog) -> None:
    gswlc_file = _gswlc_with_rows(tmp_path, drop_mass_of=(266, 51630, 4))
    info, fiboh = write_mpajhu_oh([266, 296], [51630, 51984], [637, 3], [8.9, 9.0],
                                  tmp_path / "info.fit.gz", tmp_path / "oh.fits.gz")
    oh = read_mpajhu(info, fiboh=fiboh)
    junk = tmp_path / "spec-0266-51630-0099.fits"
    junk.write_text("<html>404</html>")
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(shared_data_path("spectra/spec-0266-51602-0001.fits"), copy)
    paths = [*_real_paths(), junk, copy / "spec-0266-51602-0001.fits"]
    with caplog.at_level(logging.INFO, logger="galforge.spectra"):
        props, rejects = select_spectra(paths, read_gswlc(gswlc_file), oh,
                                        SelectionSettings(require_metallicity=True))
    assert set(props["fiber"]) == {637, 3}  # the two with a metallicity
    codes = dict(zip(rejects["path"].map(lambda p: Path(p).name + ("'" if "copy" in p else "")),
                     rejects["code"], strict=True))
    assert codes["spec-0266-51630-0004.fits"] == "missing_property"  # -99 mass in GSWLC
    assert codes["spec-0266-51602-0001.fits"] == "missing_property"  # no metallicity
    assert codes["spec-0266-51630-0099.fits"] == "unreadable"
    assert codes["spec-0266-51602-0001.fits'"] == "duplicate"
    reasons = dict(zip(rejects["code"], rejects["reason"], strict=False))
    assert "log_mstar" in rejects.loc[rejects["path"].str.endswith("0004.fits"), "reason"].item()
    assert "spec-0266-51630-0099.fits" in reasons["unreadable"]
    assert rejects.loc[rejects["code"] == "unreadable", "key"].item() == -1
    assert "rejected spec-0266-51630-0099.fits: unreadable file" in caplog.text


def test_settings_reject_unknown_keys_and_bad_ranges() -> None:
    s = SelectionSettings.from_dict({"zmax": 0.08, "require_metallicity": True})
    assert s.to_dict() == {"zmin": 0.0, "zmax": 0.08, "require_metallicity": True}
    assert SelectionSettings.from_dict(s.to_dict()) == s
    assert SelectionSettings.from_dict(None) == SelectionSettings()
    with pytest.raises(ValueError, match="z_max: unknown key"):
        SelectionSettings.from_dict({"z_max": 0.1})
    with pytest.raises(ValueError, match=r"zmin \(0.1\) must be below zmax"):
        SelectionSettings(zmin=0.1, zmax=0.05)
    with pytest.raises(ValueError, match="zmax: must be a number"):
        SelectionSettings(zmax="0.1")
    with pytest.raises(ValueError, match="require_metallicity"):
        SelectionSettings(require_metallicity=1)


def test_require_metallicity_needs_a_table(tmp_path) -> None:
    gswlc = Table({"plate": [1], "mjd": [2], "fiber": [3], "log_mstar": [10.0],
                   "log_sfr": [0.0]})
    with pytest.raises(InputError, match="no metallicity"):
        select_spectra([], gswlc, None, SelectionSettings(require_metallicity=True))
    with pytest.raises(InputError, match="GSWLC table: no 'log_sfr' column"):
        select_spectra([], Table({"plate": [1], "mjd": [2], "fiber": [3],
                                  "log_mstar": [10.0]}), None)
    props, rejects = select_spectra([], gswlc, None)
    assert props.empty and rejects.empty


def test_mpajhu_metallicity_files_in_the_release_layout(tmp_path) -> None:
    from astropy.io import fits

    from galforge.archives import mpajhu

    assert mpajhu.MPAJHU_DR7_OH_URLS["fiboh"] == (
        "https://wwwmpa.mpa-garching.mpg.de/SDSS/DR7/Data/gal_fiboh_dr7_v5_2.fits.gz"
    )
    assert mpajhu.MPAJHU_DR7_OH_URLS["info"] == mpajhu.MPAJHU_DR7_URLS["info"]
    info, fiboh = write_mpajhu_oh(
        [266, 266, 296], [51630, 51602, 51984], [637, 1, 3], [8.95, np.nan, 9.1],
        tmp_path / mpajhu.MPAJHU_DR7_OH_FILES["info"], tmp_path / mpajhu.MPAJHU_DR7_OH_FILES["fiboh"],
        z=[0.088, 0.021, 0.078],
    )
    assert info.read_bytes()[:2] == fiboh.read_bytes()[:2] == b"\x1f\x8b"  # gzip, as released
    with fits.open(info) as a, fits.open(fiboh) as b:
        assert a[1].columns.names == ["PLATEID", "MJD", "FIBERID", "Z"]
        assert b[1].columns.names == ["AVG", "ENTROPY", "MEDIAN", "P16", "P84", "MODE", "P2P5",
                                      "P97P5"]
        assert b[1].data["MEDIAN"][1] == np.float32(-99.9)  # no estimate
    t = read_mpajhu(info, fiboh=fiboh)
    assert t.colnames == ["plate", "mjd", "fiberID", "oh_p50"]
    np.testing.assert_allclose(t["oh_p50"], [8.95, np.nan, 9.1], rtol=1e-6)
    short, _ = write_mpajhu_oh([1], [2], [3], [8.0], tmp_path / "i2.fit", tmp_path / "o2.fits")
    with pytest.raises(InputError, match=r"o2\.fits: 1 rows, but .*has 3"):
        read_mpajhu(info, fiboh=tmp_path / "o2.fits")
