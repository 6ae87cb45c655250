"""The web-API route end to end on 127.0.0.1: a replay of the TNG API serving the mock TNG
universe; both routes give identical galaxies; caching, shards, concurrency, faults."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
import pytest

from conftest import shared_data_path
from galforge.archives.download import (
    ChecksumError,
    CredentialError,
    DownloadError,
    DownloadManyError,
    DownloadOptions,
    HTTPStatusError,
)
from galforge.archives.testserver import FaultServer, Reply
from galforge.archives.tng import TNGClient, parse_checksums, search_params
from galforge.archives.tng_fetch import ApiTNG, field_set_name, shard_ids
from galforge.archives.tng_galaxy import DEFAULT_FIELDS, field_request
from galforge.archives.tng_layout import attribute_kinds
from galforge.archives.tng_local import LocalTNG
from galforge.archives.tng_replay import TNGReplay
from galforge.io import InputError
from galforge.mock.tng import write_mock_tng

KEY = "tng-0123456789abcdef0123456789abcdef"
SIM = "TNG100-1"
SUB = f"{SIM}/snapshots/99/subhalos/"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("TNG_API_KEY", KEY)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory):
    return write_mock_tng(tmp_path_factory.mktemp("tng") / SIM, "tiny", seed=42,
                          snapshots=(91, 99))


@pytest.fixture
def replay(mock):
    with TNGReplay(mock.base_path, (91, 99), KEY, SIM) as rep:
        yield rep


def _client(rep: TNGReplay, retries: int = 3) -> TNGClient:
    # small reads: a connection dropped after K bytes leaves K bytes to resume from
    opts = DownloadOptions(retries=retries, backoff_base=0.001, backoff_max=0.01,
                           read_timeout=5, progress=False, chunk_size=500)
    return TNGClient(rep.api_url, options=opts)


@pytest.fixture
def api(replay: TNGReplay, tmp_path: Path) -> ApiTNG:
    return ApiTNG(_client(replay), SIM, 99, tmp_path / "cache")


def _hits(rep: TNGReplay, suffix: str) -> int:
    return sum(r.path.endswith(suffix) for r in rep.server.requests)


# ---------------------------------------------------------------------------------------------
# The two routes agree
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap", [91, 99])
def test_both_routes_give_identical_particle_sets(mock, replay, tmp_path: Path, snap: int
                                                  ) -> None:
    local = LocalTNG(mock.base_path, snap)
    api = ApiTNG(_client(replay), SIM, snap, tmp_path / "cache")
    ids = sorted(set(range(0, local.n_subhalos, 7)) | set(range(8)))
    by_api = list(api.iter_galaxies(ids))
    for gal, ref in zip(by_api, local.iter_galaxies(ids), strict=True):
        assert gal.subhalo_id == ref.subhalo_id
        assert gal.particles_equal(ref), gal.subhalo_id
        assert gal.n_wind == ref.n_wind and gal.units == ref.units
        assert np.array_equal(gal.centre, ref.centre)
    assert sum(g.n_stars for g in by_api) > 500
    assert any((g.stars["InSitu"] == 0).any() for g in by_api)


def test_search_pages_follow_next_links(mock, replay) -> None:
    client = _client(replay)
    local = LocalTNG(mock.base_path, 99)
    mstar = local.subhalos(["SubhaloMassType"])["SubhaloMassType"][:, 4]
    found = client.search_subhalos(SIM, 99, {"mass_stars__gt": 0.1}, limit=7)
    assert [r["id"] for r in found] == np.flatnonzero(mstar > 0.1).tolist()
    pages = [r for r in replay.server.requests if r.path == "/api/" + SUB]
    assert len(pages) == -(-len(found) // 7) and len(pages) > 2
    assert pages[1].query["offset"] == ["7"] and pages[0].query["mass_stars__gt"] == ["0.1"]
    top = client.search_subhalos(SIM, 99, {"mass_stars__gte": 0.0}, limit=50,
                                 order_by="-mass_stars")
    got = [r["id"] for r in top]
    assert np.all(np.diff(mstar[got]) <= 0) and len(got) == local.n_subhalos
    api = ApiTNG(client, SIM, 99, Path("unused"))
    assert api.search({"mass_stars__lt": 0.05}).tolist() == np.flatnonzero(mstar < 0.05).tolist()


def test_search_answers_are_checked() -> None:
    with FaultServer() as srv:
        srv.add_json("/api/" + SUB, {"count": 5, "next": None, "results": [{"id": 1}]})
        client = TNGClient(srv.url("/api/"), options=DownloadOptions(progress=False))
        with pytest.raises(DownloadError, match="pages hold 1 results, the answer says count = 5"):
            client.search_subhalos(SIM, 99)
        srv.add_json("/api/" + SUB, {"detail": "nothing"})
        with pytest.raises(DownloadError, match="not a subhalo search answer"):
            client.search_subhalos(SIM, 99)
    for bad in ({"mass_stars>": 1}, {"limit": 3}, {"mass_stars__gt": "big"}):
        with pytest.raises(InputError):
            search_params(bad)
    with pytest.raises(InputError, match="page size"):
        search_params(None, limit=0)


def test_groupcat_fields_one_at_a_time(mock, replay, api: ApiTNG) -> None:
    local = LocalTNG(mock.base_path, 99)
    for group, field in (("Subhalo", "SubhaloMassType"), ("Group", "Group_M_Crit200")):
        got = api.groupcat_field(group, field)
        want = (local.subhalos if group == "Subhalo" else local.halos)([field])[field]
        assert np.array_equal(got, want) and got.dtype == want.dtype
    req = [r for r in replay.server.requests if r.path.endswith("/files/groupcat-99/")]
    assert [r.query for r in req] == [{"Subhalo": ["SubhaloMassType"]},
                                      {"Group": ["Group_M_Crit200"]}]
    api.groupcat_field("Subhalo", "SubhaloMassType")  # cached
    assert _hits(replay, "/files/groupcat-99/") == 2


def test_sublink_branch_through_the_api(mock, replay, tmp_path: Path) -> None:
    client = _client(replay)
    out = client.download_sublink_mpb(SIM, 99, 0, tmp_path / "mpb.hdf5")
    ref = il.sublink.loadTree(str(mock.base_path), 99, 0, onlyMPB=True)
    with h5py.File(out) as f:
        assert np.array_equal(f["SubhaloID"][()], ref["SubhaloID"])
        assert np.array_equal(f["SubhaloMassType"][()], ref["SubhaloMassType"])


# ---------------------------------------------------------------------------------------------
# Cutouts: fields, cache, shards, concurrency
# ---------------------------------------------------------------------------------------------


def test_cutouts_hold_exactly_the_fields_asked_for(replay, api: ApiTNG, tmp_path: Path) -> None:
    fields = {"stars": ["Masses", "ParticleIDs"], "dm": ["Coordinates"]}
    path = api.fetch([3], fields)[0]
    with h5py.File(path) as f:
        assert sorted(f["PartType4"]) == ["GFM_StellarFormationTime", "Masses", "ParticleIDs"]
        assert sorted(f["PartType1"]) == ["Coordinates"]
        assert f["Header"].attrs["CutoutID"] == 3
    (req,) = [r for r in replay.server.requests if r.path.endswith("/3/cutout.hdf5")]
    assert req.query == {"stars": ["Masses,ParticleIDs,GFM_StellarFormationTime"],
                         "dm": ["Coordinates"]}
    assert path.parent.name == field_set_name(field_request(fields)) != "default"
    assert api.cutout_path(3).parent.name == "default"
    # into a folder: the server's file name (Content-Disposition), sanitised
    out = _client(replay).download_cutout(SIM, 99, 3, tmp_path, {"stars": "Masses"})
    assert out == tmp_path.resolve() / "cutout_3.hdf5"


def test_cached_by_subhalo_id(replay, api: ApiTNG) -> None:
    api.load_galaxy(5)
    n = len(replay.server.requests)
    again = api.load_galaxy(5)
    assert len(replay.server.requests) == n  # cutout, record and stellar assembly from the cache
    assert again.n_stars > 0
    assert api.meta_path(5).is_file() and api.cutout_path(5).is_file()


def test_shards_split_the_work(replay, api: ApiTNG) -> None:
    ids = list(range(20))
    parts = [shard_ids(ids, 3, k).tolist() for k in range(3)]
    assert sorted(sum(parts, [])) == ids and all(i % 3 == 1 for i in parts[1])
    api.fetch_shard(ids, 3, 1)
    fetched = sorted(int(r.path.split("/")[-2]) for r in replay.server.requests
                     if r.path.endswith("cutout.hdf5"))
    assert fetched == parts[1]
    for bad in ((0, 0), (3, 3), (3, -1)):
        with pytest.raises(InputError):
            shard_ids(ids, *bad)


def test_at_most_four_downloads_at_once(replay, tmp_path: Path) -> None:
    slow = replay.server._match("/api/")  # the replay's handler, wrapped with a delay
    handler = slow.handler

    def delayed(req):
        if req.path.endswith("cutout.hdf5"):
            replay.server._stopping.wait(0.05)
        return handler(req)

    slow.handler = delayed
    api = ApiTNG(_client(replay), SIM, 99, tmp_path / "cache", max_workers=4)
    api.fetch(range(24))
    assert 2 <= replay.server.max_concurrent <= 4
    with pytest.raises(InputError, match="allows 1 to 4 concurrent"):
        ApiTNG(_client(replay), SIM, 99, tmp_path, max_workers=5)


# ---------------------------------------------------------------------------------------------
# Faults: 500, 429, dropped connection (resumed), wrong or missing key, bad checksum
# ---------------------------------------------------------------------------------------------


def test_retries_with_backoff_on_5xx_and_429(replay, api: ApiTNG) -> None:
    replay.fail(SUB + "4/cutout.hdf5", 500, times=2)
    replay.fail(SUB + "4/", 503, times=1)
    replay.fail(f"{SIM}/files/stellar_assembly/stars_099.hdf5", 429, times=1, retry_after="0")
    gal = api.load_galaxy(4)
    assert gal.n_stars > 0 and "InSitu" in gal.stars
    assert _hits(replay, "/4/cutout.hdf5") == 3
    assert _hits(replay, "/subhalos/4/") == 2
    assert _hits(replay, "/stellar_assembly/stars_099.hdf5") == 2
    replay.fail(SUB + "6/cutout.hdf5", 500, times=10)
    with pytest.raises(DownloadManyError, match="HTTP 500"):
        api.fetch([6])
    assert not api.cutout_path(6).exists()


def test_dropped_connection_resumes(mock, replay, tmp_path: Path) -> None:
    whole = replay.drop_cutout(99, 2, field_request(None), after=3000, times=1)
    api = ApiTNG(_client(replay), SIM, 99, tmp_path / "cache")
    gal = api.load_galaxy(2)
    assert api.cutout_path(2).read_bytes() == whole
    reqs = [r for r in replay.server.requests if r.path.endswith("/2/cutout.hdf5")]
    assert len(reqs) == 2 and reqs[1].header("range") == "bytes=3000-"
    assert gal.particles_equal(LocalTNG(mock.base_path, 99).load_galaxy(2))


def test_resumable_across_runs(replay, tmp_path: Path) -> None:
    whole = replay.drop_cutout(99, 9, field_request(None), after=2500, times=1)
    first = ApiTNG(_client(replay, retries=0), SIM, 99, tmp_path / "cache")
    with pytest.raises(DownloadManyError):
        first.fetch([9])
    part = first.cutout_path(9).with_name("9.hdf5.part")
    assert part.stat().st_size == 2500 and not first.cutout_path(9).exists()
    second = ApiTNG(_client(replay), SIM, 99, tmp_path / "cache")
    second.fetch([9])
    assert second.cutout_path(9).read_bytes() == whole and not part.exists()
    last = [r for r in replay.server.requests if r.path.endswith("/9/cutout.hdf5")][-1]
    assert last.header("range") == "bytes=2500-"


def test_wrong_key_is_a_clear_error_naming_no_key(replay, api: ApiTNG, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    wrong = "tng-WRONG-ffffffffffffffffffffffff"
    monkeypatch.setenv("TNG_API_KEY", wrong)
    with caplog.at_level(logging.DEBUG), pytest.raises(HTTPStatusError) as info:
        api.load_galaxy(1)
    err = info.value
    assert err.status == 403 and "TNG_API_KEY" in str(err)
    for text in (str(err), repr(err), "".join(traceback.format_exception(err)), caplog.text):
        assert wrong not in text and KEY not in text
    assert not (tmp_path / "cache").exists() or not any(
        p.is_file() for p in (tmp_path / "cache").rglob("*"))
    monkeypatch.delenv("TNG_API_KEY")
    with pytest.raises(CredentialError, match="TNG_API_KEY is not set"):
        api.load_galaxy(1)


def test_stellar_assembly_checked_against_the_checksums(replay, api: ApiTNG) -> None:
    replay.server.add_handler(f"/api/{SIM}/files/stellar_assembly/checksums/",
                              lambda r: Reply.text("0" * 32 + "  stars_099.hdf5\n"))
    with pytest.raises(ChecksumError):
        api.stellar_assembly("stars")
    dest = api.root / "postprocessing" / "StellarAssembly"
    assert not any(dest.iterdir())  # neither the file nor a .part left


def test_in_situ_join_needs_particle_ids(api: ApiTNG) -> None:
    with pytest.raises(InputError, match="request stars ParticleIDs"):
        api.load_galaxy(1, ["Masses"])
    gal = api.load_galaxy(1, ["Masses"], in_situ=False)
    assert "InSitu" not in gal.stars and gal.n_stars > 0


def test_checksum_lines() -> None:
    text = "d41d8cd98f00b204e9800998ecf8427e  a/b.hdf5\n# comment\n\n" + "a" * 64 + " *c.hdf5\n"
    assert parse_checksums(text) == {"b.hdf5": "md5:d41d8cd98f00b204e9800998ecf8427e",
                                     "c.hdf5": "sha256:" + "a" * 64}
    with pytest.raises(DownloadError, match="line 1"):
        parse_checksums("xyz file\n")


# ---------------------------------------------------------------------------------------------
# The fetch command
# ---------------------------------------------------------------------------------------------


def test_fetch_command_writes_a_manifest_of_one_shard(replay, tmp_path: Path, capsys) -> None:
    from galforge.cli import main

    ids = tmp_path / "ids.txt"
    ids.write_text("0, 1, 2\n3 4 5  # the first six\n6\n")
    cfg = json.dumps({"cache_dir": str(tmp_path / "cache"),
                      "tng": {"api_url": replay.api_url, "n_shards": 2}})
    out = tmp_path / "shard1.json"
    assert main(["fetch-tng", "--config", cfg, "--ids", str(ids), "--shard", "1", "--out",
                 str(out), "--no-progress"]) == 0
    manifest = json.loads(out.read_text())
    assert [f["id"] for f in manifest["files"]] == [1, 3, 5]
    assert all(Path(f["path"]).stat().st_size == f["size"] for f in manifest["files"])
    assert manifest["fields"] == "default" and manifest["n_shards"] == 2
    replay.fail(SUB + "0/cutout.hdf5", 404, times=5)
    bad = tmp_path / "shard0.json"
    assert main(["fetch-tng", "--config", cfg, "--ids", str(ids), "--shard", "0", "--out",
                 str(bad), "--no-progress"]) == 2
    assert not bad.exists() and "HTTP 404" in capsys.readouterr().err
    assert DEFAULT_FIELDS["stars"][0] == "Coordinates"


@pytest.mark.archive
def test_replayed_cutouts_copy_the_real_cutout_header(replay, api: ApiTNG) -> None:
    real = shared_data_path("tng/stars_565261.hdf5")
    path = api.fetch([0])[0]

    with h5py.File(real) as r, h5py.File(path) as m:
        assert attribute_kinds(m["Header"].attrs) == attribute_kinds(r["Header"].attrs)
        for k in m["PartType4"]:
            if k in r["PartType4"]:
                assert m["PartType4"][k].dtype == r["PartType4"][k].dtype, k
                assert dict(m["PartType4"][k].attrs) == dict(r["PartType4"][k].attrs), k


def test_server_file_names_are_sanitised(replay, tmp_path: Path) -> None:
    client = _client(replay)
    replay.server.add(f"/api/{SIM}/files/groupcat-99/", b"\x89HDF\r\n\x1a\n" + b"x" * 100,
                      require_headers={"api-key": KEY},
                      content_disposition='attachment; filename="../../etc/evil.hdf5"')
    folder = tmp_path / "fields"
    folder.mkdir()
    out = client.download(client.groupcat_field_request(SIM, 99, "Subhalo", "SubhaloMass",
                                                        folder))
    assert out == folder.resolve() / "evil.hdf5"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.hdf5", "fields"]
