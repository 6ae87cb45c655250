"""Sharded spectrum downloads against a local FaultServer standing in for the SDSS SAS."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from galforge.archives import sdss_spectra as ss
from galforge.archives.download import DownloadError, DownloadOptions
from galforge.archives.testserver import FaultServer
from galforge.io import InputError

# (plate, mjd, fiber): 9 spectra on 6 plates; plate mod 3 gives shards 0: 300, 303;
# 1: 301, 304; 2: 302, 305
SPECTRA = [
    (300, 51600, 1), (300, 51600, 2), (301, 51601, 10), (301, 51601, 11), (301, 51601, 12),
    (302, 51602, 5), (303, 51603, 640), (304, 51604, 7), (305, 51605, 8),
]


def _lite_bytes(plate: int, mjd: int, fiber: int, npix: int = 2000) -> bytes:
    """A small spec-lite file (COADD + SPECOBJ) with noise, so it does not compress away."""
    rng = np.random.default_rng(plate * 1000 + fiber)
    loglam = (3.5797 + 1e-4 * np.arange(npix)).astype(np.float32)
    coadd = fits.BinTableHDU.from_columns([
        fits.Column(name="flux", format="E", array=rng.normal(5, 1, npix).astype(np.float32)),
        fits.Column(name="loglam", format="E", array=loglam),
        fits.Column(name="ivar", format="E", array=np.ones(npix, np.float32)),
        fits.Column(name="and_mask", format="J", array=np.zeros(npix, np.int32)),
    ], name="COADD")
    vals = {"PLATE": ("J", plate), "MJD": ("J", mjd), "FIBERID": ("J", fiber), "Z": ("E", 0.05),
            "Z_ERR": ("E", 1e-5), "ZWARNING": ("J", 0), "CLASS": ("6A", "GALAXY")}
    specobj = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format=f, array=np.array([v])) for k, (f, v) in vals.items()],
        name="SPECOBJ")
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), coadd, specobj]).writeto(buf)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def opts() -> DownloadOptions:
    return DownloadOptions(retries=2, checksum_retries=0, backoff_base=0.001, backoff_max=0.01,
                           connect_timeout=2.0, read_timeout=2.0, chunk_size=1024,
                           progress=False)


def _route(plate: int, mjd: int, fiber: int) -> str:
    return f"/sas/lite/{plate:04d}/spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"


def _serve_all(server: FaultServer, **script) -> dict[tuple[int, int, int], bytes]:
    data = {}
    for p, m, f in SPECTRA:
        data[(p, m, f)] = _lite_bytes(p, m, f)
        server.add(_route(p, m, f), data[(p, m, f)], **script)
    return data


def _table() -> pd.DataFrame:
    return pd.DataFrame(SPECTRA, columns=["plate", "mjd", "fiberID"])


def test_archive_url_patterns() -> None:
    assert ss.spectrum_url(266, 51602, 1) == (
        "https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/lite/0266/"
        "spec-0266-51602-0001.fits"
    )
    assert ss.spectrum_url(266, 51630, 4, fmt="spec-full") == (
        "https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/full/0266/"
        "spec-0266-51630-0004.fits"
    )
    assert ss.spectrum_url(266, 51630, 637, fmt="spSpec") == (
        "http://das.sdss.org/spectro/1d_26/0266/1d/spSpec-51630-0266-637.fit"
    )
    assert ss.spectrum_url(3586, 55181, 2, base_url="http://mirror/x/") == (
        "http://mirror/x/3586/spec-3586-55181-0002.fits"
    )
    with pytest.raises(ValueError, match="unknown spectrum format"):
        ss.spectrum_url(1, 2, 3, fmt="spPlate")


def test_shard_of_is_stable_and_keeps_plates_together() -> None:
    assert ss.shard_of(266, 4) == 2 and isinstance(ss.shard_of(266, 4), int)
    plates = np.array([p for p, _m, _f in SPECTRA])
    assert ss.shard_of(plates, 3).tolist() == [0, 0, 1, 1, 1, 2, 0, 1, 2]
    # consecutive plates (as SDSS plate numbers nearly are) spread evenly
    counts = np.bincount(ss.shard_of(np.arange(266, 3266), 16), minlength=16)
    assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="n_shards"):
        ss.shard_of(266, 0)
    with pytest.raises(ValueError, match="non-negative integers"):
        ss.shard_of(np.array([1.5]), 2)


def test_shard_download_writes_files_and_manifest(server, opts, tmp_path) -> None:
    data = _serve_all(server, checksum_header="content-md5")
    root = tmp_path / "spectra"
    manifest = ss.fetch_spectra_shard(_table(), 1, 3, root, base_url=server.url("/sas/lite"),
                                      options=opts, max_workers=2)
    assert manifest == root / "manifest-0001-of-0003.csv"
    m = ss.read_manifest(manifest)
    assert list(m.columns) == list(ss.MANIFEST_COLUMNS)
    assert (m["root"] == str(root)).all()  # the download folder: the files must stay in it
    wanted = sorted(s for s in SPECTRA if s[0] % 3 == 1)
    assert list(zip(m["plate"], m["mjd"], m["fiber"], strict=True)) == wanted
    assert (m["status"] == "ok").all()
    assert m["key"].tolist() == [(p * 10**5 + mj) * 10**3 + f for p, mj, f in wanted]
    for row in m.itertuples():
        path = Path(row.path)
        assert path == root / f"{row.plate:04d}" / path.name
        content = data[(row.plate, row.mjd, row.fiber)]
        assert path.read_bytes() == content
        assert row.bytes == len(content) and row.sha256 == hashlib.sha256(content).hexdigest()
    # only this shard's plates were requested
    assert {r.path.split("/")[3] for r in server.requests} == {"0301", "0304"}
    assert not list(root.rglob("*.part"))

    server.reset()
    again = ss.fetch_spectra_shard(_table(), 1, 3, root, base_url=server.url("/sas/lite"),
                                   options=opts)
    assert (ss.read_manifest(again)["status"] == "cached").all()
    assert server.requests == []  # nothing fetched twice


def test_dropped_connection_resumes_with_range(server, opts, tmp_path) -> None:
    data = _serve_all(server)
    route = _route(302, 51602, 5)
    server.add(route, data[(302, 51602, 5)], drop_after=6000, drop_times=1, chunk_size=1024)
    manifest = ss.fetch_spectra_shard(_table(), 2, 3, tmp_path, base_url=server.url("/sas/lite"),
                                      options=opts)
    reqs = server.requests_for(route)
    assert len(reqs) == 2 and reqs[0].header("range") is None
    start = int(reqs[1].header("range").removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 6000
    m = ss.read_manifest(manifest)
    path = Path(m.loc[m["fiber"] == 5, "path"].item())
    assert path.read_bytes() == data[(302, 51602, 5)]


def test_failed_shard_writes_no_manifest_and_next_run_resumes(server, opts, tmp_path) -> None:
    data = _serve_all(server)
    route = _route(303, 51603, 640)
    # the first request drops mid-file (and the run has no retries); the next is served whole
    payload = server.add(route, data[(303, 51603, 640)], drop_after=5000, drop_times=1,
                         chunk_size=1024)
    no_retry = DownloadOptions(retries=0, backoff_base=0.001, chunk_size=1024, progress=False,
                               connect_timeout=2.0, read_timeout=2.0)
    with pytest.raises(DownloadError, match=r"(?s)1 of 3 downloads failed .*spec-0303-51603-0640"):
        ss.fetch_spectra_shard(_table(), 0, 3, tmp_path, base_url=server.url("/sas/lite"),
                               options=no_retry)
    assert not (tmp_path / "manifest-0000-of-0003.csv").exists()
    assert len(list((tmp_path / "0303").glob("*.part"))) == 1  # kept for the rerun
    assert payload.hits == 1
    manifest = ss.fetch_spectra_shard(_table(), 0, 3, tmp_path, base_url=server.url("/sas/lite"),
                                      options=no_retry)
    second = server.requests_for(route)[-1]
    assert 0 < int(second.header("range").removeprefix("bytes=").rstrip("-")) <= 5000
    m = ss.read_manifest(manifest)
    assert set(m["status"]) == {"ok", "cached"}  # the two plate-300 files came in run one
    assert (tmp_path / "0303" / "spec-0303-51603-0640.fits").read_bytes() == data[
        (303, 51603, 640)]


def test_missing_spectra_and_bad_files(server, opts, tmp_path) -> None:
    _serve_all(server)
    server.add(_route(305, 51605, 8), b"", fail_status=404, fail_times=None)
    with pytest.raises(DownloadError, match="1 of 2 spectra are not on the archive"):
        ss.fetch_spectra_shard(_table(), 2, 3, tmp_path / "a", base_url=server.url("/sas/lite"),
                               options=opts)
    manifest = ss.fetch_spectra_shard(_table(), 2, 3, tmp_path / "b",
                                      base_url=server.url("/sas/lite"), options=opts,
                                      max_missing=0.5)
    m = ss.read_manifest(manifest).set_index("fiber")
    assert m.loc[8, "status"] == "missing" and m.loc[5, "status"] == "ok"
    # an error page served with status 200 is caught, deleted, and fails the shard
    server.add(_route(304, 51604, 7), b"<html>maintenance</html>" * 100)
    with pytest.raises(DownloadError, match="not the spectrum asked for"):
        ss.fetch_spectra_shard(_table(), 1, 3, tmp_path / "c", base_url=server.url("/sas/lite"),
                               options=opts)
    assert not (tmp_path / "c" / "0304" / "spec-0304-51604-0007.fits").exists()
    # a wrong checksum from the table fails too (after checksum_retries)
    table = _table()
    table["checksum"] = ["md5:" + "0" * 32] * len(table)
    with pytest.raises(DownloadError, match="downloads failed"):
        ss.fetch_spectra_shard(table, 0, 3, tmp_path / "d", base_url=server.url("/sas/lite"),
                               options=opts)
    with pytest.raises(InputError, match="shard must be"):
        ss.fetch_spectra_shard(table, 3, 3, tmp_path)
    with pytest.raises(InputError, match="no 'fiber' column"):
        ss.fetch_spectra_shard(pd.DataFrame({"plate": [1], "mjd": [2]}), 0, 1, tmp_path)


def _manifest(tmp_path: Path, root: Path, paths: list[str]) -> Path:
    frame = pd.DataFrame({"key": np.arange(len(paths)), "plate": 300, "mjd": 51600,
                          "fiber": np.arange(len(paths)), "path": paths, "status": "ok",
                          "url": "", "bytes": 0, "sha256": "", "root": str(root)})
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def test_manifest_paths_must_stay_in_the_download_folder(tmp_path, monkeypatch) -> None:
    root = tmp_path / "spectra"
    (root / "0300").mkdir(parents=True)
    inside = root / "0300" / "spec-0300-51600-0001.fits"
    inside.write_bytes(b"x")
    outside = tmp_path / "elsewhere" / "spec-0300-51600-0002.fits"
    outside.parent.mkdir()
    outside.write_bytes(b"y")
    (root / "0300" / "spec-0300-51600-0002.fits").symlink_to(outside)
    (root / "0300" / "spec-0300-51600-0003.fits").symlink_to(inside)  # a link within: fine
    ok = [str(inside), str(root / "0300" / "spec-0300-51600-0003.fits"),
          str(root / "0300" / ".." / "0300" / "spec-0300-51600-0001.fits"),
          str(root / "0300" / "spec-0300-51600-0009.fits")]  # not there yet (missing): fine
    assert len(ss.read_manifest(_manifest(tmp_path, root, ok))) == 4
    escapes = {
        "../../etc/passwd": "../../etc/passwd",
        "dotdot": str(root / "0300" / ".." / ".." / "elsewhere" / outside.name),
        "absolute": str(outside),
        "etc": "/etc/passwd",
        "symlink": str(root / "0300" / "spec-0300-51600-0002.fits"),
        "the root itself": str(root),
        "empty": "",
    }
    for what, bad in escapes.items():
        manifest = _manifest(tmp_path, root, [*ok[:2], bad])
        with pytest.raises(InputError) as err:
            ss.read_manifest(manifest)
        msg = str(err.value)
        assert msg.startswith(f"{manifest}: row 2 (CSV line 4, key 2) lists the spectrum file "
                              f"{bad!r}"), what
        assert f"outside the folder {str(root)!r}" in msg, what
        if what == "symlink":
            assert f"resolves to {outside}" in msg
    # relative paths and root are taken from the working directory, as the readers open them
    monkeypatch.chdir(tmp_path)
    rel = _manifest(tmp_path, Path("spectra"), ["spectra/0300/spec-0300-51600-0001.fits"])
    assert len(ss.read_manifest(rel)) == 1
    # no root recorded (an earlier galforge), or more than one
    pd.read_csv(rel).drop(columns="root").to_csv(rel, index=False)
    with pytest.raises(InputError, match="lacks column.s. root .a manifest of an earlier"):
        ss.read_manifest(rel)
    two = _manifest(tmp_path, root, [str(inside), str(inside)])
    pd.read_csv(two).assign(root=[str(root), str(tmp_path)]).to_csv(two, index=False)
    with pytest.raises(InputError, match="one folder on every row"):
        ss.read_manifest(two)
