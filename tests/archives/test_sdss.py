"""Tests of the SDSS DR7 galaxy fetch and the MPA-JHU join, offline.

``fetch_dr7_galaxies`` runs through the real astroquery ``SDSSClass`` against a
:class:`~galforge.archives.testserver.FaultServer` on 127.0.0.1 that stands in
for the DR7 SkyServer SQL search. The fixture
``fixtures/sdss/dr7_x_sql_main_galaxies.csv`` is a synthetic 20-row answer in
the format the old (DR < 10) ``x_sql.asp`` returns for ``format=csv``: the
column names on line 1, no ``#Table1`` line (astroquery issue #1715 shows such
an answer), one galaxy per line, ``-9999`` for a missing magnitude. Its ids
follow the DR7 bit layouts. The stand-in server answers each slice with the
fixture rows inside the slice's redshift bounds, read from the SQL it receives.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from galforge.archives import mpajhu, sdss
from galforge.archives.formats import SDSS_GALAXY_COLUMNS, SDSS_PROPERTY_COLUMNS
from galforge.archives.testserver import FaultServer, RecordedRequest, Reply
from galforge.io import InputError

FIXTURE = Path(__file__).parent / "fixtures" / "sdss" / "dr7_x_sql_main_galaxies.csv"
ZMIN, ZMAX = 0.02, 0.07  # the environment study's range; fetched with a 0.005 margin

_Z_RE = re.compile(r"s\.z >= ([0-9.]+) AND s\.z (<=?) ([0-9.]+)")


def _fixture_rows() -> tuple[str, list[list[str]]]:
    lines = FIXTURE.read_text().splitlines()
    return lines[0], [row for row in csv.reader(lines[1:])]


def _normalise(sql: str) -> str:
    return " ".join(sql.split())


class CasStandIn:
    """Answers x_sql.asp like the DR7 CAS: CSV rows of the fixture within the slice."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500, body: str | None = None):
        self.header, self.rows = _fixture_rows()
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.body = body
        self.calls = 0

    def __call__(self, req: RecordedRequest) -> Reply:
        self.calls += 1
        if self.calls <= self.fail_first:
            return Reply.text(
                "<html><body>Server Error</body></html>", self.fail_status, "text/html"
            )
        if self.body is not None:
            return Reply.text(self.body)
        cmd = req.query["cmd"][0]
        m = _Z_RE.search(cmd)
        assert m, cmd
        lo, op, hi = float(m.group(1)), m.group(2), float(m.group(3))
        zi = self.header.split(",").index("z")
        keep = [
            r
            for r in self.rows
            if lo <= float(r[zi]) and (float(r[zi]) <= hi if op == "<=" else float(r[zi]) < hi)
        ]
        return Reply.text("\n".join([self.header, *(",".join(r) for r in keep)]) + "\n")


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


def _fetch(srv: FaultServer, dest: Path, **kw):
    kw = {"zmin": ZMIN, "zmax": ZMAX, "min_interval": 0, "backoff": 0, "timeout": 5, **kw}
    return sdss.fetch_dr7_galaxies(dest, base_url=srv.base_url, **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- SQL -------------------------------------------------------------------------------


def test_sql_selects_exactly_the_stored_columns():
    select = sdss.DR7_GALAXY_SQL.split("FROM")[0].removeprefix("SELECT")
    names = [item.strip().split(".")[-1] for item in select.split(",")]
    assert names == list(sdss.DR7_FETCH_COLUMNS)
    assert list(sdss.DR7_FETCH_COLUMNS)[: len(SDSS_GALAXY_COLUMNS)] == list(SDSS_GALAXY_COLUMNS)
    assert {"plate", "mjd", "fiberID"} <= set(sdss.DR7_FETCH_COLUMNS)
    assert "--" not in sdss.DR7_GALAXY_SQL  # astroquery strips comments; keep the text as sent


def test_sql_encodes_the_main_sample_selection():
    sql = sdss.DR7_GALAXY_SQL
    assert f"s.specClass = {sdss.SPEC_CLASS_GALAXY}" in sql
    assert f"(s.primTarget & 0x{sdss.MAIN_SAMPLE_TARGET_MASK:08X}) > 0" in sql
    assert f"s.zConf > {sdss.ZCONF_MIN}" in sql
    assert "JOIN PhotoObj AS p ON p.objID = s.bestObjID" in sql
    assert "p.petroMag_r - p.extinction_r <= {r_limit}" in sql


def test_build_queries_tiles_the_padded_range_without_gaps():
    queries = sdss.build_dr7_queries(ZMIN, ZMAX, n_slices=4)
    assert len(queries) == 4
    bounds = [_Z_RE.search(q).groups() for q in queries]
    assert float(bounds[0][0]) == pytest.approx(0.015)
    assert float(bounds[-1][2]) == pytest.approx(0.075)
    assert [b[1] for b in bounds] == ["<", "<", "<", "<="]
    for (_, _, hi), (lo, _, _) in zip(bounds, bounds[1:], strict=False):
        assert hi == lo  # the same text: no galaxy in two slices or none
    assert all("<= 17.77" in q for q in queries)


def test_build_queries_clamps_at_zero_and_validates():
    q = sdss.build_dr7_queries(0.001, 0.01, z_margin=0.005, n_slices=1)[0]
    assert "s.z >= 0.000000 AND s.z <= 0.015000" in q
    with pytest.raises(ValueError, match="zmin < zmax"):
        sdss.build_dr7_queries(0.07, 0.02)
    with pytest.raises(ValueError, match="n_slices"):
        sdss.build_dr7_queries(0.02, 0.07, n_slices=0)
    with pytest.raises(ValueError, match="z_margin"):
        sdss.build_dr7_queries(0.02, 0.07, z_margin=-0.1)


def test_endpoint_constant_is_what_astroquery_builds():
    from astroquery.sdss import SDSSClass, conf

    assert sdss.DR7_SQL_ENDPOINT == conf.skyserver_baseurl + sdss.DR7_SQL_PATH
    payload = SDSSClass().query_sql_async("SELECT 1", data_release=7, get_query_payload=True)
    assert set(payload) == {"cmd", "format"} and payload["format"] == "csv"


# --- fetch -------------------------------------------------------------------------------


def test_fetch_writes_fits_from_concatenated_slices(server, tmp_path):
    stand_in = CasStandIn()
    server.add_handler(sdss.DR7_SQL_PATH, stand_in, methods=("GET",))
    dest = tmp_path / "sdss_dr7.fits"

    assert _fetch(server, dest, n_slices=3) == dest

    # one GET per slice, carrying the SQL exactly as astroquery sends it
    reqs = server.requests_for(sdss.DR7_SQL_PATH)
    assert len(reqs) == 3 and all(r.method == "GET" for r in reqs)
    expected = sdss.build_dr7_queries(ZMIN, ZMAX, n_slices=3)
    for req, sql in zip(reqs, expected, strict=True):
        assert req.query["format"] == ["csv"]
        assert "searchtool" not in req.query
        assert _normalise(req.query["cmd"][0]) == _normalise(sql)

    header, rows = _fixture_rows()
    names = header.split(",")
    with fits.open(dest) as hdul:
        hdu = hdul[1]
        assert hdu.columns.names == list(sdss.DR7_FETCH_COLUMNS)
        for i, (name, (fmt, unit, desc)) in enumerate(sdss.DR7_FETCH_COLUMNS.items(), start=1):
            col = hdu.columns[name]
            assert col.format == fmt, name
            assert (col.unit or "") == unit, name
            assert hdu.header[f"TCOMM{i}"] == desc
        assert hdu.header["SDSSDR"] == 7 and hdu.header["NSLICES"] == 3
        assert hdu.header["ZLO"] == pytest.approx(0.015) and hdu.header["ZHI"] == pytest.approx(
            0.075
        )
        data = Table(hdu.data)

    # all slices arrived: every fixture row once, sorted by specObjID
    assert len(data) == len(rows) == 20
    assert np.all(np.diff(data["specObjID"]) > 0)
    by_spec = {int(r[names.index("specObjID")]): r for r in rows}
    for row in data:
        src = by_spec[int(row["specObjID"])]
        assert int(row["objID"]) == int(src[names.index("objID")])  # exact 64-bit ids
        assert row["ra"] == float(src[names.index("ra")])
        assert row["z"] == float(src[names.index("z")])
        assert row["fiberID"] == int(src[names.index("fiberID")])
        assert row["modelMag_g"] == pytest.approx(float(src[names.index("modelMag_g")]))
    assert (data["modelMag_g"] == -9999.0).sum() == 1  # CAS missing value kept as is
    z = np.asarray(data["z"])
    assert z.min() < 0.02 and z.max() > 0.07  # the margin rows are there


def test_fetch_retries_a_server_error(server, tmp_path):
    stand_in = CasStandIn(fail_first=1, fail_status=500)
    server.add_handler(sdss.DR7_SQL_PATH, stand_in, methods=("GET",))
    dest = tmp_path / "g.fits"
    _fetch(server, dest, n_slices=2, retries=2)
    assert server.hits(sdss.DR7_SQL_PATH) == 3  # 500, then slice 1, slice 2
    assert len(Table.read(dest, hdu=1)) == 20


def test_fetch_gives_up_after_the_retries(server, tmp_path):
    server.add_handler(
        sdss.DR7_SQL_PATH, CasStandIn(fail_first=99, fail_status=503), methods=("GET",)
    )
    dest = tmp_path / "g.fits"
    with pytest.raises(sdss.SDSSQueryError, match="HTTP 503"):
        _fetch(server, dest, n_slices=2, retries=2)
    assert server.hits(sdss.DR7_SQL_PATH) == 3
    assert _leftovers(tmp_path) == []


def test_fetch_does_not_retry_a_client_error(server, tmp_path):
    server.add_handler(
        sdss.DR7_SQL_PATH, CasStandIn(fail_first=99, fail_status=404), methods=("GET",)
    )
    with pytest.raises(sdss.SDSSQueryError, match="HTTP 404"):
        _fetch(server, tmp_path / "g.fits", retries=3)
    assert server.hits(sdss.DR7_SQL_PATH) == 1


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            "<html><head><title>SkyServer Error</title></head><body>Query timed out</body></html>",
            "HTML page",
        ),
        ("", "empty response"),
        ("   \n", "empty response"),
        ("ERROR: Invalid column name 'petroMag_x'.\n", "Invalid column name 'petroMag_x'"),
        ("#Table1\n", "no header line"),
    ],
)
def test_fetch_rejects_unusable_answers_and_writes_nothing(server, tmp_path, body, match):
    server.add_handler(sdss.DR7_SQL_PATH, CasStandIn(body=body), methods=("GET",))
    dest = tmp_path / "g.fits"
    with pytest.raises(sdss.SDSSQueryError, match=match):
        _fetch(server, dest, n_slices=2)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_fetch_names_a_missing_column(server, tmp_path):
    header, rows = _fixture_rows()
    names = header.split(",")
    drop = names.index("extinction_g")
    body = "\n".join(",".join(v for j, v in enumerate(r) if j != drop) for r in [names, *rows])
    server.add_handler(sdss.DR7_SQL_PATH, CasStandIn(body=body), methods=("GET",))
    with pytest.raises(sdss.SDSSQueryError, match="missing column.*'extinction_g'"):
        _fetch(server, tmp_path / "g.fits", n_slices=1)
    assert _leftovers(tmp_path) == []


def test_fetch_detects_a_truncated_slice(server, tmp_path):
    server.add_handler(sdss.DR7_SQL_PATH, CasStandIn(), methods=("GET",))
    with pytest.raises(sdss.SDSSQueryError, match="row limit.*n_slices > 1"):
        _fetch(server, tmp_path / "g.fits", n_slices=1, row_limit=20)
    assert _leftovers(tmp_path) == []


def test_fetch_offline_says_unreachable_and_suggests_mock(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "g.fits"
    with pytest.raises(sdss.ArchiveUnreachableError, match=r"unreachable.*source: mock"):
        sdss.fetch_dr7_galaxies(
            dest,
            zmin=ZMIN,
            zmax=ZMAX,
            base_url=f"http://127.0.0.1:{port}",
            retries=1,
            backoff=0,
            min_interval=0,
            timeout=2,
        )
    assert _leftovers(tmp_path) == []


def test_fetch_uses_an_injected_client(tmp_path):
    header, rows = _fixture_rows()

    class FakeResponse:
        status_code = 200
        text = "#Table1\n" + "\n".join([header, *(",".join(r) for r in rows)])

        def raise_for_status(self):
            return None

    class FakeClient:
        def __init__(self):
            self.calls = []

        def query_sql_async(self, sql, **kw):
            self.calls.append((sql, kw))
            return FakeResponse()

    client = FakeClient()
    dest = sdss.fetch_dr7_galaxies(
        tmp_path / "g.fits", zmin=ZMIN, zmax=ZMAX, n_slices=1, client=client, min_interval=0
    )
    assert client.calls[0][1] == {"data_release": 7, "timeout": 120.0, "cache": False}
    assert len(Table.read(dest, hdu=1)) == 20  # a DR >= 10 style '#Table1' line is skipped


def test_parse_cas_csv_rejects_bad_rows():
    header, rows = _fixture_rows()
    ragged = header + "\n" + ",".join(rows[0][:-1])
    with pytest.raises(sdss.SDSSQueryError, match="line 2 has 13 fields"):
        sdss.parse_cas_csv(ragged)
    bad = header + "\n" + ",".join(["x" if j == 0 else v for j, v in enumerate(rows[0])])
    with pytest.raises(sdss.SDSSQueryError, match="column 'objID' has a non-numeric value"):
        sdss.parse_cas_csv(bad)
    lower = header.lower() + "\n" + ",".join(rows[0])
    assert sdss.parse_cas_csv(lower)["fiberID"].tolist() == [int(rows[0][-1])]


def test_write_galaxy_table_names_a_missing_column(tmp_path):
    data = {k: np.zeros(2) for k in sdss.DR7_FETCH_COLUMNS if k != "mjd"}
    with pytest.raises(InputError, match="'mjd'"):
        sdss.write_galaxy_table(data, tmp_path / "g.fits")
    assert _leftovers(tmp_path) == []


# --- MPA-JHU -----------------------------------------------------------------------------


def _write_gz_fits(path: Path, columns: dict[str, tuple[str, np.ndarray]]) -> Path:
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=n, format=f, array=a) for n, (f, a) in columns.items()]
    )
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def _mpajhu_files(folder: Path, plate, mjd, fiber, lgm, sfr, ssfr) -> dict[str, Path]:
    """Tiny files in the MPA-JHU DR7 layout: gal_info keys, row-aligned MEDIAN files."""
    n = len(plate)
    info = _write_gz_fits(
        folder / mpajhu.MPAJHU_DR7_FILES["info"],
        {
            "PLATEID": ("I", np.asarray(plate, np.int16)),
            "MJD": ("J", np.asarray(mjd, np.int32)),
            "FIBERID": ("I", np.asarray(fiber, np.int16)),
            "Z": ("E", np.linspace(0.02, 0.07, n).astype(np.float32)),
        },
    )
    out = {"info": info}
    for key, med in (("lgm_tot", lgm), ("sfr_tot", sfr), ("specsfr_tot", ssfr)):
        med = np.asarray(med, np.float32)
        out[key] = _write_gz_fits(
            folder / mpajhu.MPAJHU_DR7_FILES[key],
            {
                "AVG": ("E", med + 0.01),
                "ENTROPY": ("E", np.ones(n, np.float32)),
                "MEDIAN": ("E", med),
                "P16": ("E", med - 0.1),
                "P84": ("E", med + 0.1),
                "MODE": ("E", med),
                "P2P5": ("E", med - 0.2),
                "P97P5": ("E", med + 0.2),
            },
        )
    return out


def test_mpajhu_urls_point_at_the_dr7_release():
    assert mpajhu.MPAJHU_DR7_URLS["info"] == (
        "https://wwwmpa.mpa-garching.mpg.de/SDSS/DR7/Data/gal_info_dr7_v5_2.fit.gz"
    )
    assert set(mpajhu.MPAJHU_DR7_URLS) == {"info", "lgm_tot", "sfr_tot", "specsfr_tot"}


def test_read_and_join_mpajhu(tmp_path):
    files = _mpajhu_files(
        tmp_path,
        plate=[266, 266, 299, 412, 266],
        mjd=[51630, 51630, 51671, 52258, 51630],
        fiber=[585, 484, 369, 382, 585],  # 266/51630/585 listed twice: first row wins
        lgm=[10.1, 9.5, 10.8, 11.2, 1.0],
        sfr=[0.3, -99.0, -0.5, 0.9, 0.0],  # -99: MPA-JHU placeholder for a failed fit
        ssfr=[-10.0, -11.0, -9999.0, -10.5, 0.0],
    )
    mpa = mpajhu.read_mpajhu(
        files["info"],
        lgm_tot=files["lgm_tot"],
        sfr_tot=files["sfr_tot"],
        specsfr_tot=files["specsfr_tot"],
    )
    assert mpa.colnames == [
        "plate",
        "mjd",
        "fiberID",
        "lgm_tot_p50",
        "sfr_tot_p50",
        "specsfr_tot_p50",
    ]
    assert np.isnan(mpa["sfr_tot_p50"][1]) and np.isnan(mpa["specsfr_tot_p50"][2])

    galaxies = Table(
        {
            "plate": np.array([299, 266, 9999, 266], np.int32),
            "mjd": np.array([51671, 51630, 55555, 51630], np.int32),
            "fiberID": np.array([369, 585, 1, 484], np.int32),
            "z": [0.03, 0.04, 0.05, 0.06],
        }
    )
    joined = mpajhu.join_properties(galaxies, mpa)
    assert "lgm_tot_p50" not in galaxies.colnames  # a copy
    np.testing.assert_allclose(joined["lgm_tot_p50"], [10.8, 10.1, np.nan, 9.5], rtol=1e-6)
    np.testing.assert_allclose(joined["sfr_tot_p50"], [-0.5, 0.3, np.nan, np.nan], rtol=1e-6)
    np.testing.assert_allclose(joined["specsfr_tot_p50"], [np.nan, -10.0, np.nan, -11.0], rtol=1e-6)
    for name, (_fmt, unit, _desc) in SDSS_PROPERTY_COLUMNS.items():
        assert joined[name].dtype == np.float32
        assert joined[name].unit == (u.Unit(unit) if unit else None)


def test_join_fills_nan_for_unread_files_and_writes_fits(tmp_path):
    header, rows = _fixture_rows()
    data = sdss.parse_cas_csv("\n".join([header, *(",".join(r) for r in rows)]))
    files = _mpajhu_files(
        tmp_path,
        data["plate"],
        data["mjd"],
        data["fiberID"],
        np.full(20, 10.5),
        np.zeros(20),
        np.full(20, -10.5),
    )
    mpa = mpajhu.read_mpajhu(files["info"], lgm_tot=files["lgm_tot"])  # mass only
    joined = mpajhu.join_properties(Table(data), mpa)
    assert np.all(joined["lgm_tot_p50"] == np.float32(10.5))
    assert np.all(np.isnan(joined["sfr_tot_p50"])) and np.all(np.isnan(joined["specsfr_tot_p50"]))

    dest = sdss.write_galaxy_table(joined, tmp_path / "with_props.fits")
    with fits.open(dest) as hdul:
        cols = hdul[1].columns
        assert cols.names == [*sdss.DR7_FETCH_COLUMNS, *SDSS_PROPERTY_COLUMNS]
        for name, (fmt, unit, _desc) in SDSS_PROPERTY_COLUMNS.items():
            assert cols[name].format == fmt and (cols[name].unit or "") == unit


def test_mpajhu_errors_name_the_file_and_column(tmp_path):
    files = _mpajhu_files(
        tmp_path, [266, 299], [51630, 51671], [1, 2], [10, 11], [0, 1], [-10, -11]
    )
    short = _write_gz_fits(tmp_path / "short.fit.gz", {"MEDIAN": ("E", np.zeros(1, np.float32))})
    with pytest.raises(
        InputError, match="short.fit.gz: 1 rows, but .*gal_info_dr7_v5_2.fit.gz has 2"
    ):
        mpajhu.read_mpajhu(files["info"], lgm_tot=short)
    nomedian = _write_gz_fits(tmp_path / "nomed.fit.gz", {"AVG": ("E", np.zeros(2, np.float32))})
    with pytest.raises(InputError, match="nomed.fit.gz: missing column.*MEDIAN"):
        mpajhu.read_mpajhu(files["info"], sfr_tot=nomedian)
    with pytest.raises(InputError, match="not found"):
        mpajhu.read_mpajhu(tmp_path / "nope.fit.gz")
    (tmp_path / "junk.fit").write_bytes(b"not a fits file")
    with pytest.raises(InputError, match="junk.fit"):
        mpajhu.read_mpajhu(tmp_path / "junk.fit")
    mpa = mpajhu.read_mpajhu(files["info"])
    with pytest.raises(InputError, match="galaxy table: missing column.*'fiberID'"):
        mpajhu.join_properties(Table({"plate": [1], "mjd": [2]}), mpa)


def test_fetch_reports_a_server_that_does_not_answer_in_time(server, tmp_path):
    header, rows = _fixture_rows()
    server.add(sdss.DR7_SQL_PATH, (header + "\n").encode(), delay=2.0)
    with pytest.raises(sdss.SDSSQueryError, match="no answer .* within 0.3 s after 1 attempt"):
        _fetch(server, tmp_path / "g.fits", n_slices=1, retries=0, timeout=0.3)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("drop_times", [1, None])
def test_fetch_retries_a_connection_dropped_mid_answer(server, tmp_path, drop_times):
    body = FIXTURE.read_bytes()
    server.add(
        sdss.DR7_SQL_PATH, body, content_type="text/plain", drop_after=100, drop_times=drop_times
    )
    dest = tmp_path / "g.fits"
    if drop_times is None:  # always dropped: a broken answer, not an unreachable archive
        with pytest.raises(sdss.SDSSQueryError, match="failed after 2 attempt"):
            _fetch(server, dest, n_slices=1, retries=1)
        assert _leftovers(tmp_path) == []
    else:
        _fetch(server, dest, n_slices=1, retries=1)
        assert len(Table.read(dest, hdu=1)) == 20
    assert server.hits(sdss.DR7_SQL_PATH) == 2
