"""The Zenodo route against a local replay server (no internet): listing, concept redirect,
md5 mismatch, a truncated download resumed, hostile archive members, end to end."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from galforge.archives.download import ChecksumError, HTTPStatusError
from galforge.archives.testserver import FaultServer
from galforge.archives.zenodo import (
    UnsafeArchiveError,
    download_record,
    fetch_record,
    npy_name,
    safe_unpack,
)
from galforge.cli import main
from galforge.edf.table import read_edf_table
from galforge.mock.edf import draw_galaxy, galaxy_truths
from galforge.mock.edf_settings import MockEdfSettings

CONCEPT, VERSION = "8389554", "8390001"
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "progress": False}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests reach the local server directly, whatever proxy the machine sets."""
    for name in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.fixture(scope="module")
def galaxies() -> dict[str, bytes]:
    """Four mock galaxies as the record's .npy files."""
    s = MockEdfSettings(n_galaxies=4, n_stars_min=700, n_stars_max=900, n_sparse=0, prefix="g")
    return {g.file: _npy_bytes(draw_galaxy(g, 5)) for g in galaxy_truths(s, 5)}


def _tar_gz(members: dict[str, bytes], folder: str = "all_sims/") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(folder + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def _serve_record(srv: FaultServer, files: dict[str, bytes], *, version: str = VERSION,
                  checksums: dict[str, str] | None = None, **script) -> None:
    entries = []
    for key, data in files.items():
        path = f"/api/records/{version}/files/{key}/content"
        srv.add(path, data, **script.get(key, {}))
        entries.append({"key": key, "size": len(data),
                        "checksum": (checksums or {}).get(key, _md5(data)),
                        "links": {"self": srv.url(path)}})
    srv.add_json(f"/api/records/{version}", {
        "id": int(version), "conceptrecid": CONCEPT, "doi": f"10.5281/zenodo.{version}",
        "metadata": {"title": "NIHAO star particles"}, "files": entries})


def test_listing_download_and_unpack(tmp_path, galaxies):
    names = sorted(galaxies)
    loose = {names[0]: galaxies[names[0]]}  # one galaxy as a plain file, the rest archived
    archived = _tar_gz({n: galaxies[n] for n in names[1:]} | {"README.txt": b"hello"})
    with FaultServer() as srv:
        _serve_record(srv, {**loose, "all_sims.tar.gz": archived})
        man = download_record(VERSION, tmp_path / "z", tmp_path / "z" / "galaxies",
                              api_url=srv.url("/api"), max_bytes=10**8, **FAST)
    got = sorted(p.name for p in (tmp_path / "z" / "galaxies").glob("*.npy"))
    assert got == names and man["galaxies"] == 4
    for n in names:
        assert (tmp_path / "z" / "galaxies" / n).read_bytes() == galaxies[n]
    assert man["record_requested"] == man["record_resolved"] == VERSION
    assert {f["key"]: f["checksum"] for f in man["files"]} == {
        names[0]: _md5(galaxies[names[0]]), "all_sims.tar.gz": _md5(archived)}
    assert json.loads((tmp_path / "z" / "manifest.json").read_text()) == man


def test_a_concept_record_redirects_to_its_latest_version(galaxies):
    with FaultServer() as srv:
        _serve_record(srv, {"a.tar.gz": _tar_gz(galaxies)})
        srv.add_redirect(f"/api/records/{CONCEPT}", srv.url(f"/api/records/{VERSION}"))
        rec = fetch_record(CONCEPT, api_url=srv.url("/api"), **FAST)
    assert rec.requested == CONCEPT and rec.resolved == VERSION and rec.concept == CONCEPT
    assert [f.key for f in rec.files] == ["a.tar.gz"]
    assert rec.files[0].checksum.startswith("md5:") and rec.files[0].size > 0


def test_an_md5_mismatch_is_refused_and_leaves_nothing(tmp_path, galaxies):
    name = sorted(galaxies)[0]
    with FaultServer() as srv:
        _serve_record(srv, {name: galaxies[name]}, checksums={name: "md5:" + "0" * 32})
        with pytest.raises(ChecksumError, match="md5"):
            download_record(VERSION, tmp_path / "z", tmp_path / "z" / "galaxies",
                            api_url=srv.url("/api"), max_bytes=10**8, **FAST)
    assert not (tmp_path / "z" / "galaxies").exists()
    assert not list((tmp_path / "z").glob("*.npy")) and not list((tmp_path / "z").glob("*.part*"))


def test_a_truncated_download_resumes_with_range(tmp_path, galaxies):
    data = _tar_gz(galaxies)
    with FaultServer() as srv:
        _serve_record(srv, {"all.tar.gz": data}, **{"all.tar.gz": {"drop_after": len(data) // 3}})
        download_record(VERSION, tmp_path / "z", tmp_path / "z" / "galaxies",
                        api_url=srv.url("/api"), max_bytes=10**8, **FAST)
        reqs = srv.requests_for(f"/api/records/{VERSION}/files/all.tar.gz/content")
    assert len(reqs) == 2 and reqs[0].header("Range") is None
    start = int(reqs[1].header("Range").removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= len(data) // 3  # continued from what had arrived
    assert len(list((tmp_path / "z" / "galaxies").glob("*.npy"))) == 4


def test_http_errors_and_bad_answers_are_named(tmp_path):
    with FaultServer() as srv:
        srv.add_json("/api/records/1", {"message": "not found"}, status=404)
        srv.add_json("/api/records/2", {"id": 2, "files": []})
        with pytest.raises(HTTPStatusError, match="404"):
            fetch_record(1, api_url=srv.url("/api"), **FAST)
        with pytest.raises(Exception, match="lists no files"):
            fetch_record(2, api_url=srv.url("/api"), **FAST)
    with pytest.raises(Exception, match="must be a number"):
        fetch_record("abc")


def _tar_with(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        good = tarfile.TarInfo("ok.npy")
        good.size = 3
        tf.addfile(good, io.BytesIO(b"abc"))
        tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _member(name: str, **kw) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    return info


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _tar_with(_member("../evil.npy", size=4), b"evil"), "escape the target"),
    (lambda: _tar_with(_member("a/../../evil.npy", size=4), b"evil"), "escape the target"),
    (lambda: _tar_with(_member("/etc/evil.npy", size=4), b"evil"), "absolute path"),
    (lambda: _tar_with(_member("link.npy", type=tarfile.SYMTYPE, linkname="/etc/passwd")),
     "symbolic link"),
    (lambda: _tar_with(_member("hard.npy", type=tarfile.LNKTYPE, linkname="ok.npy")),
     "hard link"),
    (lambda: _tar_with(_member("dev", type=tarfile.CHRTYPE)), "device or FIFO"),
    (lambda: _tar_with(_member("big.npy", size=5000), b"x" * 5000), "beyond the size limit"),
])
def test_hostile_tar_members_are_refused(tmp_path, make, message):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(make())
    target = tmp_path / "out" / "inner"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_unpack(archive, target, max_bytes=1000)
    # nothing of the archive is kept, nothing escaped
    assert not any(target.iterdir()) and not (tmp_path / "evil.npy").exists()
    assert not (tmp_path / "out" / "evil.npy").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["inner"]


def test_hostile_zip_members_are_refused(tmp_path):
    def zipped(name: str, data: bytes = b"x", mode: int | None = None) -> Path:
        path = tmp_path / f"z{len(list(tmp_path.iterdir()))}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
        return path

    for path, message in ((zipped("../../evil.npy"), "escape the target"),
                          (zipped("link.npy", b"/etc/passwd", 0o120777), "symbolic link"),
                          (zipped("big.npy", b"0" * 10_000), "more than the limit")):
        with pytest.raises(UnsafeArchiveError, match=message):
            safe_unpack(path, tmp_path / "t", max_bytes=5_000)
    assert not (tmp_path.parent / "evil.npy").exists()
    good = zipped("sub/g_1_1e11.npy", b"abc")
    assert [p.relative_to(tmp_path / "t").as_posix()
            for p in safe_unpack(good, tmp_path / "t", max_bytes=100)] == ["sub/g_1_1e11.npy"]
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(UnsafeArchiveError, match="not a readable archive"):
        safe_unpack(tmp_path / "junk.zip", tmp_path / "t", max_bytes=100)


def test_a_hostile_record_leaves_no_galaxies(tmp_path, galaxies):
    bad = _tar_with(_member("../../../evil.npy", size=4), b"evil")
    with FaultServer() as srv:
        _serve_record(srv, {"bad.tar": bad})
        with pytest.raises(UnsafeArchiveError, match="escape"):
            download_record(VERSION, tmp_path / "z", tmp_path / "z" / "galaxies",
                            api_url=srv.url("/api"), max_bytes=10**8, **FAST)
    assert not (tmp_path / "z" / "galaxies").exists()
    assert not list(tmp_path.rglob("evil.npy"))


def test_the_zenodo_route_end_to_end_through_the_cli(tmp_path, galaxies):
    archived = _tar_gz(galaxies | {npy_name("g", 999, 1e10): _npy_bytes(np.zeros((11, 3)))})
    with FaultServer() as srv:
        _serve_record(srv, {"all_sims.tar.gz": archived})
        srv.add_redirect(f"/api/records/{CONCEPT}", srv.url(f"/api/records/{VERSION}"))
        cfg = json.dumps({"scale": "tiny", "source": "archive",
                          "edf": {"archive": {"record": CONCEPT, "api_url": srv.url("/api")},
                                  "clean": {"min_stars": 300}}})
        folder = tmp_path / "cache" / "galaxies"
        rc = main(["edf-fetch", "--config", cfg, "--no-progress", "--galaxies", str(folder),
                   "--manifest", str(tmp_path / "record.json")])
    assert rc == 0
    man = json.loads((tmp_path / "record.json").read_text())
    assert man["record_requested"] == CONCEPT and man["record_resolved"] == VERSION
    assert main(["edf-table", "--config", cfg, "--no-progress", "--galaxies", str(folder),
                 "--out", str(tmp_path / "edf.h5"), "--index", str(tmp_path / "i.csv"),
                 "--report", str(tmp_path / "r.json")]) == 0
    table = read_edf_table(tmp_path / "edf.h5", stars=False)
    assert table.n_galaxies == 4  # the 3-star galaxy is dropped by min_stars
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["galaxies_dropped_min_stars"][0]["galaxy_id"] == "999"
