"""End to end: the environment study's archive data path through the real CLI, offline.

The three commands the workflow runs for ``source: archive`` are called in-process
(:func:`galforge.cli.main`) against a local
:class:`~galforge.archives.testserver.FaultServer`:

1. ``fetch-mpajhu`` (the shared MPA-JHU rule) downloads four tiny gzipped FITS files in the
   MPA-JHU DR7 layout (:data:`galforge.archives.mpajhu.MPAJHU_DR7_URLS` points at the
   server); one answers HTTP 500 once, so the download layer's retry (with its
   real 1 s backoff) is part of the path;
2. ``environment-fetch`` runs the DR7 CAS SQL search through astroquery
   (``astroquery.sdss.conf.skyserver_baseurl`` points at the server, which answers
   from ``fixtures/sdss/dr7_x_sql_main_galaxies.csv``), joins MPA-JHU on
   (plate, mjd, fiberID) and writes the SDSS-layout FITS table;
3. ``environment-catalog`` reads it into the canonical catalog and its report.

The CAS fetch pauses ``min_interval`` (1 s) between its 12 slices and backs off
2, 4, 8 s on failures; the CLI has no knob for either, so the pauses are
recorded instead of slept (``sdss.time`` and ``sdss._with_retries`` are patched)
and checked, which keeps the module at a few seconds.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

# helpers shared with the unit tests of the SDSS client (tests/archives is on sys.path)
from test_sdss import CasStandIn, _fixture_rows, _mpajhu_files, _normalise

from galforge.archives import mpajhu, sdss
from galforge.archives.formats import SDSS_PROPERTY_COLUMNS
from galforge.archives.testserver import FaultServer, RecordedRequest, Reply
from galforge.cli import main
from galforge.cosmology import Cosmology
from galforge.photometry import absolute_mag_r, kcorrect_r

ZMIN, ZMAX, MR_MAX = 0.02, 0.07, -18.95
CONFIG = json.dumps({"source": "archive", "environment": {"catalog": {"zmin": ZMIN, "zmax": ZMAX}}})
N_SLICES = sdss.DEFAULT_N_SLICES  # what the CLI uses (no knob)
MISSING_G_OBJID = 588019536347136829  # the fixture row with modelMag_g = -9999

# --- the MPA-JHU stand-in --------------------------------------------------------------
# fixture rows that MPA-JHU lists (the others have no MPA-JHU entry)
MATCHED = [0, 1, 2, 3, 4, 6, 7, 8, 10, 12, 14, 16, 18, 19]
SENTINEL_SFR_ROW = 12  # sfr_tot MEDIAN = -99: a failed fit -> NaN
SENTINEL_SSFR_ROW = 16  # specsfr_tot MEDIAN = -9999 -> NaN


def _fixture_table() -> dict[str, np.ndarray]:
    header, rows = _fixture_rows()
    return sdss.parse_cas_csv("\n".join([header, *(",".join(r) for r in rows)]))


def _mpajhu_rows() -> tuple[dict[str, np.ndarray], dict[tuple[int, int, int], tuple[float, ...]]]:
    """MPA-JHU columns (row-aligned) and the expected properties per spectrum key."""
    gal = _fixture_table()
    plate, mjd, fiber, lgm, sfr, ssfr = [], [], [], [], [], []
    expected: dict[tuple[int, int, int], tuple[float, ...]] = {}
    for i in reversed(MATCHED):  # not in the galaxies' order
        key = (int(gal["plate"][i]), int(gal["mjd"][i]), int(gal["fiberID"][i]))
        m, s, ss = 9.5 + 0.1 * i, -1.0 + 0.05 * i, -10.5 + 0.03 * i
        if i == SENTINEL_SFR_ROW:
            s = -99.0
        if i == SENTINEL_SSFR_ROW:
            ss = -9999.0
        for col, v in zip((plate, mjd, fiber, lgm, sfr, ssfr), (*key, m, s, ss), strict=True):
            col.append(v)
        expected[key] = tuple(
            np.nan if v <= mpajhu.MPAJHU_SENTINEL_MAX else float(np.float32(v)) for v in (m, s, ss)
        )
    # spectra that are not in the galaxy table, one of them a near miss (fiber 537 vs 538)
    for key in ((1371, 52821, 538), (9999, 55555, 1), (266, 51631, 585)):
        for col, v in zip((plate, mjd, fiber, lgm, sfr, ssfr), (*key, 12.0, 2.0, -8.0), strict=True):
            col.append(v)
    cols = dict(zip(("plate", "mjd", "fiber", "lgm", "sfr", "ssfr"),
                    (plate, mjd, fiber, lgm, sfr, ssfr), strict=True))
    return {k: np.asarray(v) for k, v in cols.items()}, expected


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch):
    """No proxy for 127.0.0.1, and the root logger as it was (``main`` replaces its handlers)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Record, instead of sleeping, the CAS fetch's pauses between slices and its retry backoff."""
    recorded: dict[str, list[float]] = {"between_slices": [], "retry_backoff": []}

    class _Time:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            recorded["between_slices"].append(seconds)

    monkeypatch.setattr(sdss, "time", _Time())
    monkeypatch.setattr(
        sdss, "_with_retries",
        functools.partial(sdss._with_retries, sleep=recorded["retry_backoff"].append),
    )
    return recorded


def _point_cas_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    from astroquery.sdss import conf

    monkeypatch.setattr(conf, "skyserver_baseurl", base_url)


def _serve_mpajhu(server: FaultServer, monkeypatch: pytest.MonkeyPatch, folder: Path,
                  *, fail_once: str | None = None) -> dict[str, bytes]:
    """Serve MPA-JHU-layout files from ``server`` under the names the CLI downloads."""
    folder.mkdir()
    cols, _ = _mpajhu_rows()
    files = _mpajhu_files(folder, cols["plate"], cols["mjd"], cols["fiber"],
                          cols["lgm"], cols["sfr"], cols["ssfr"])
    blobs = {}
    for key, path in files.items():
        blobs[key] = path.read_bytes()
        script = {"fail_status": 500, "fail_times": 1} if key == fail_once else {}
        server.add(f"/mpa/{path.name}", blobs[key], content_type="application/gzip", **script)
        monkeypatch.setitem(mpajhu.MPAJHU_DR7_URLS, key, server.url(f"/mpa/{path.name}"))
    return blobs


def _mpajhu_args(folder: Path, prefix: str) -> list[str]:
    names = {"info": "info", "lgm": "lgm_tot", "sfr": "sfr_tot", "specsfr": "specsfr_tot"}
    out = []
    for opt, key in names.items():
        out += [f"--{prefix}{opt}", str(folder / mpajhu.MPAJHU_DR7_FILES[key])]
    return out


def _err_lines(err: str, command: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith(f"galforge {command}: error:")]


# --- the archive path --------------------------------------------------------------------


def test_archive_path_end_to_end(server, pauses, monkeypatch, tmp_path, capsys):
    cache = tmp_path / "mpajhu"
    cache.mkdir()
    outdir = tmp_path / "out"
    outdir.mkdir()

    # 1. MPA-JHU download: one transient 500, retried by the download layer ----------------
    blobs = _serve_mpajhu(server, monkeypatch, tmp_path / "served", fail_once="info")
    t0 = time.monotonic()
    err = ""
    for key in ("info", "lgm_tot", "sfr_tot", "specsfr_tot"):  # one job per file in the workflow
        rc = main(["fetch-mpajhu", "--config", CONFIG, "--no-progress",
                   "--out", str(cache / mpajhu.MPAJHU_DR7_FILES[key])])
        err += capsys.readouterr().err
        assert rc == 0, err
    elapsed = time.monotonic() - t0
    for key, blob in blobs.items():
        name = mpajhu.MPAJHU_DR7_FILES[key]
        assert (cache / name).read_bytes() == blob, name
        assert server.hits(f"/mpa/{name}") == (2 if key == "info" else 1), name
    assert sorted(p.name for p in cache.iterdir()) == sorted(mpajhu.MPAJHU_DR7_FILES.values())
    assert re.search(r"attempt 1 of \d+ failed \(HTTP 500[^)]*\); retrying in 1\.\d\d s", err), err
    assert elapsed >= 1.0  # the default backoff_base (1 s) was honoured, not skipped

    # 2. CAS query through astroquery + MPA-JHU join -----------------------------------------
    stand_in = CasStandIn(fail_first=1, fail_status=500)  # slice 1 fails once: CAS retry too
    server.add_handler(sdss.DR7_SQL_PATH, stand_in, methods=("GET",))
    _point_cas_at(monkeypatch, server.base_url)
    out = outdir / "sdss_dr7.fits"
    fetch_argv = ["environment-fetch", "--config", CONFIG, "--no-progress", "--out", str(out),
                  *_mpajhu_args(cache, "mpajhu-")]
    rc = main(fetch_argv)
    err = capsys.readouterr().err
    assert rc == 0, err

    reqs = server.requests_for(sdss.DR7_SQL_PATH)
    queries = sdss.build_dr7_queries(ZMIN, ZMAX, n_slices=N_SLICES)
    assert len(reqs) == N_SLICES + 1  # the retried slice 1, then every slice once
    for req, sql in zip(reqs, [queries[0], *queries], strict=True):
        assert req.query["format"] == ["csv"] and "searchtool" not in req.query
        assert _normalise(req.query["cmd"][0]) == _normalise(sql)
    # the rate limit and the backoff were asked for (and recorded, not slept)
    assert pauses["between_slices"] == [1.0] * (N_SLICES - 1)
    assert pauses["retry_backoff"] == [2.0]
    assert "MPA-JHU: matched 14 of 20 galaxies" in err

    assert sorted(p.name for p in outdir.iterdir()) == ["sdss_dr7.cas.fits", "sdss_dr7.fits"]
    with fits.open(out) as hdul:
        assert hdul[1].columns.names == [*sdss.DR7_FETCH_COLUMNS, *SDSS_PROPERTY_COLUMNS]
        for name, (fmt, unit, _desc) in SDSS_PROPERTY_COLUMNS.items():
            assert hdul[1].columns[name].format == fmt and (hdul[1].columns[name].unit or "") == unit
        table = Table(hdul[1].data)
    gal = _fixture_table()
    assert len(table) == 20
    assert sorted(table["objID"].tolist()) == sorted(gal["objID"].tolist())
    _, expected = _mpajhu_rows()
    props = ("lgm_tot_p50", "sfr_tot_p50", "specsfr_tot_p50")
    for row in table:
        want = expected.get((int(row["plate"]), int(row["mjd"]), int(row["fiberID"])),
                            (np.nan,) * 3)
        got = tuple(float(row[p]) for p in props)
        np.testing.assert_array_equal(got, want, err_msg=str(row["objID"]))
    assert np.isfinite(np.asarray(table["lgm_tot_p50"])).sum() == len(MATCHED)

    # a rerun reuses the cached CAS table: no new query, the same output
    before, first = server.hits(sdss.DR7_SQL_PATH), out.read_bytes()
    assert main(fetch_argv) == 0
    capsys.readouterr()
    assert server.hits(sdss.DR7_SQL_PATH) == before
    assert out.read_bytes() == first

    # 3. the catalog ----------------------------------------------------------------------
    cat_path, rep_path = tmp_path / "cat.parquet", tmp_path / "rep.json"
    rc = main(["environment-catalog", "--config", CONFIG, "--raw", str(out),
               "--out", str(cat_path), "--report", str(rep_path)])
    err = capsys.readouterr().err
    assert rc == 0, err
    cat = pd.read_parquet(cat_path)
    report = json.loads(rep_path.read_text())

    cosmo = Cosmology(0.3)
    t = table.to_pandas().set_index("objID")
    z = t["z"].to_numpy(float)
    m = {c: t[c].to_numpy(float) for c in ("modelMag_g", "extinction_g", "modelMag_r", "extinction_r")}
    g_r = (m["modelMag_g"] - m["extinction_g"]) - (m["modelMag_r"] - m["extinction_r"])  # float64
    mr_lib = absolute_mag_r(t["petroMag_r"].to_numpy(float), z, g_r, cosmo,
                            extinction_r=t["extinction_r"].to_numpy(float))
    mr_by_hand = (t["petroMag_r"].to_numpy(float) - t["extinction_r"].to_numpy(float)
                  - cosmo.distance_modulus(z) - kcorrect_r(z, g_r))
    np.testing.assert_allclose(mr_lib, mr_by_hand, rtol=0, atol=1e-9)
    # the CSV's decimal values, without the float32 round trip: agree to float32 precision
    good = (gal["modelMag_g"] > -1000)
    g_r_csv = (gal["modelMag_g"].astype(float) - gal["extinction_g"]) - (
        gal["modelMag_r"].astype(float) - gal["extinction_r"])
    mr_csv = absolute_mag_r(gal["petroMag_r"].astype(float), gal["z"], g_r_csv, cosmo,
                            extinction_r=gal["extinction_r"].astype(float))
    mr_expect = pd.Series(mr_lib, index=t.index)
    np.testing.assert_allclose(mr_expect.loc[gal["objID"][good]].to_numpy(), mr_csv[good],
                               rtol=0, atol=5e-5)

    # the selection, judged on the galaxies with complete photometry
    valid = t.index != MISSING_G_OBJID
    in_z = (z > ZMIN) & (z < ZMAX)
    want_ids = set(t.index[valid & in_z & (mr_lib < MR_MAX)])
    got_ids = set(cat["id"]) - {MISSING_G_OBJID}
    assert got_ids == want_ids
    assert len(want_ids) >= 5
    assert list(cat.columns) == ["id", "ra", "dec", "z", "Mr", "g_r", "log_mstar", "log_sfr",
                                 "log_ssfr"]
    sel = cat[cat["id"] != MISSING_G_OBJID].set_index("id")
    assert np.all(np.isfinite(sel["Mr"]))
    np.testing.assert_allclose(sel["Mr"], mr_expect.loc[sel.index], rtol=0, atol=1e-9)
    np.testing.assert_allclose(sel["g_r"], pd.Series(g_r, index=t.index).loc[sel.index],
                               rtol=0, atol=1e-9)
    assert (sel["Mr"] < MR_MAX).all() and ((sel["z"] > ZMIN) & (sel["z"] < ZMAX)).all()
    np.testing.assert_array_equal(sel["ra"], t.loc[sel.index, "ra"])

    # MPA-JHU properties: filled where matched (NaN for failed fits), NaN where unmatched
    n_matched = n_unmatched = 0
    for oid, row in sel.iterrows():
        key = (int(t.loc[oid, "plate"]), int(t.loc[oid, "mjd"]), int(t.loc[oid, "fiberID"]))
        want = expected.get(key)
        n_matched += want is not None
        n_unmatched += want is None
        got = (row["log_mstar"], row["log_sfr"], row["log_ssfr"])
        np.testing.assert_array_equal(got, want or (np.nan,) * 3, err_msg=str(oid))
    assert n_matched >= 3 and n_unmatched >= 2  # both kinds reach the volume-limited sample

    # the report adds up
    assert report["kind"] == "sdss" and report["source_file"] == out.name
    assert report["input"] == 20
    assert report["removed_redshift"] == int((~in_z).sum())
    assert report["removed_redshift"] + report["removed_magnitude"] + report["selected"] == 20
    assert report["selected"] == len(cat)


def test_fetch_offline_exits_2_with_one_line_suggesting_mock(pauses, monkeypatch, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _point_cas_at(monkeypatch, f"http://127.0.0.1:{port}")
    inputs = tmp_path / "mpajhu"
    inputs.mkdir()
    cols, _ = _mpajhu_rows()
    _mpajhu_files(inputs, cols["plate"], cols["mjd"], cols["fiber"], cols["lgm"], cols["sfr"],
                  cols["ssfr"])
    outdir = tmp_path / "out"
    outdir.mkdir()

    rc = main(["environment-fetch", "--config", CONFIG, "--no-progress",
               "--out", str(outdir / "sdss_dr7.fits"), *_mpajhu_args(inputs, "mpajhu-")])

    captured = capsys.readouterr()
    assert rc == 2
    lines = _err_lines(captured.err, "environment-fetch")
    assert len(lines) == 1, captured.err
    assert "unreachable" in lines[0] and "source: mock" in lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert list(outdir.iterdir()) == []  # no output, no CAS cache, no temporary file
    assert pauses["retry_backoff"] == [2.0, 4.0, 8.0]  # retried (recorded, not slept)


def test_cli_error_path_masks_credentials(server, monkeypatch, tmp_path, capsys):
    """The CLI's one error message and its log lines do not show a credential.

    No CLI command sends ``TNG_API_KEY`` yet (``TNGClient`` is not wired in), so the
    secret rides in the query string of a failing MPA-JHU URL, and the server's 404
    page echoes the URL it was asked for.
    """
    secret = "sekrit-123"
    monkeypatch.setenv("TNG_API_KEY", secret)
    _serve_mpajhu(server, monkeypatch, tmp_path / "served")

    def not_found(req: RecordedRequest) -> Reply:
        return Reply.text(f"<html>Not Found: {req.path}?{req.query_string}</html>", 404,
                          "text/html")

    server.add_handler("/mpa/private/gal_info.fit.gz", not_found, methods=("GET",))
    monkeypatch.setitem(mpajhu.MPAJHU_DR7_URLS, "info",
                        server.url(f"/mpa/private/gal_info.fit.gz?api_key={secret}"))
    cache = tmp_path / "mpajhu"
    cache.mkdir()

    rc = main(["fetch-mpajhu", "--config", CONFIG, "--no-progress", "-v",
               "--out", str(cache / mpajhu.MPAJHU_DR7_FILES["info"])])

    captured = capsys.readouterr()
    assert rc == 2
    assert server.hits("/mpa/private/gal_info.fit.gz") == 1  # a 404 is not retried
    req = server.requests_for("/mpa/private/gal_info.fit.gz")[0]
    assert req.query["api_key"] == [secret]  # the secret did travel ...
    assert secret not in captured.err and secret not in captured.out  # ... but is never shown
    lines = _err_lines(captured.err, "fetch-mpajhu")
    assert len(lines) == 1
    assert "HTTP 404" in lines[0]
    assert "HTTP 404" in captured.err and "api_key=***" in captured.err
    assert not (cache / mpajhu.MPAJHU_DR7_FILES["info"]).exists()


# --- regressions: defects found and fixed ---------------------------------------------


def test_missing_g_magnitude_gives_no_bogus_absolute_magnitude(server, pauses, monkeypatch,
                                                               tmp_path, capsys):
    inputs = tmp_path / "mpajhu"
    inputs.mkdir()
    cols, _ = _mpajhu_rows()
    _mpajhu_files(inputs, cols["plate"], cols["mjd"], cols["fiber"], cols["lgm"], cols["sfr"],
                  cols["ssfr"])
    server.add_handler(sdss.DR7_SQL_PATH, CasStandIn(), methods=("GET",))
    _point_cas_at(monkeypatch, server.base_url)
    out = tmp_path / "sdss_dr7.fits"
    assert main(["environment-fetch", "--config", CONFIG, "--no-progress", "--out", str(out),
                 *_mpajhu_args(inputs, "mpajhu-")]) == 0
    assert main(["environment-catalog", "--config", CONFIG, "--raw", str(out),
                 "--out", str(tmp_path / "cat.parquet"),
                 "--report", str(tmp_path / "rep.json")]) == 0
    cat = pd.read_parquet(tmp_path / "cat.parquet")
    assert cat["Mr"].between(-30, -10).all(), cat.loc[~cat["Mr"].between(-30, -10), ["id", "Mr"]]
    assert cat["g_r"].dropna().between(-2, 5).all()


def test_fetch_refetches_when_the_redshift_range_changes(server, pauses, monkeypatch, tmp_path,
                                                         capsys):
    inputs = tmp_path / "mpajhu"
    inputs.mkdir()
    cols, _ = _mpajhu_rows()
    _mpajhu_files(inputs, cols["plate"], cols["mjd"], cols["fiber"], cols["lgm"], cols["sfr"],
                  cols["ssfr"])
    server.add_handler(sdss.DR7_SQL_PATH, CasStandIn(), methods=("GET",))
    _point_cas_at(monkeypatch, server.base_url)
    argv = ["--no-progress", "--out", str(tmp_path / "sdss_dr7.fits"),
            *_mpajhu_args(inputs, "mpajhu-")]
    assert main(["environment-fetch", "--config", CONFIG, *argv]) == 0
    n_first = server.hits(sdss.DR7_SQL_PATH)
    wider = json.dumps({"source": "archive",
                        "environment": {"catalog": {"zmin": 0.01, "zmax": 0.08}}})
    assert main(["environment-fetch", "--config", wider, *argv]) == 0
    assert server.hits(sdss.DR7_SQL_PATH) > n_first  # the wider range must be queried
