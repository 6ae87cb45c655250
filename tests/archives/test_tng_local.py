"""The local-copy route: galaxies in physical units from a TNG copy (the mock, and the real
files in ../shared/data/tng), the bulk path through the offsets, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
import pytest

from conftest import shared_data_path
from galforge.archives import tng_layout as lay
from galforge.archives import tng_local
from galforge.archives.tng_galaxy import InSituIndex, field_request, make_galaxy, physical
from galforge.archives.tng_local import (
    LocalTNG,
    catalog_physical,
    read_groupcat_chunk,
    read_particles,
    read_sublink,
)
from galforge.io import InputError
from galforge.mock.tng import write_mock_tng

H = 0.6774
KPC, MSUN = 3.085678e21, 1.989e33


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory):
    return write_mock_tng(tmp_path_factory.mktemp("tng") / "TNG100-1", "tiny", seed=42,
                          snapshots=(91, 99))


@pytest.fixture(scope="module")
def truth(mock) -> dict[str, np.ndarray]:
    with h5py.File(mock.truth_path) as f:
        return {k: f["galaxies"][k][()] for k in f["galaxies"]}


def _age_astropy(a_form: np.ndarray, a_snap: float) -> np.ndarray:
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=100 * H, Om0=0.3089, Tcmb0=0)
    return (cosmo.age(1 / a_snap - 1).value - cosmo.age(1 / a_form - 1).value)


# ---------------------------------------------------------------------------------------------
# One galaxy, physical units
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap", [91, 99])
def test_load_galaxy_in_physical_units(mock, truth, snap: int) -> None:
    tng = LocalTNG(mock.base_path, snap)
    base = str(mock.base_path)
    a = tng.a
    cat = il.groupcat.loadSubhalos(base, snap, fields=["SubhaloPos", "SubhaloVel"])
    for g in np.argsort(truth["n_star"])[::-1][:6]:
        sid = int(truth[f"SubfindID_{snap:03d}"][g])
        gal = tng.load_galaxy(sid)
        raw = il.snapshot.loadSubhalo(base, snap, sid, "stars")
        star = raw["GFM_StellarFormationTime"] > 0
        assert gal.n_stars == star.sum() and gal.n_wind == (~star).sum()
        if snap == 99:
            assert gal.n_stars == truth["n_star"][g] and gal.n_wind == truth["n_wind"][g]
            assert (gal.stars["InSitu"] == 0).sum() == truth["n_exsitu"][g]
        box = tng.header["BoxSize"]
        d = raw["Coordinates"][star] - cat["SubhaloPos"][sid]
        d -= box * np.round(d / box)
        np.testing.assert_allclose(gal.stars["Coordinates"], d * a / H, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(gal.stars["Velocities"], raw["Velocities"][star] * np.sqrt(a)
                                   - cat["SubhaloVel"][sid], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(gal.stars["Masses"], raw["Masses"][star] * 1e10 / H, rtol=1e-7)
        np.testing.assert_allclose(gal.stars["Potential"], raw["Potential"][star] / a, rtol=1e-6)
        np.testing.assert_allclose(gal.stars["Age"], _age_astropy(
            raw["GFM_StellarFormationTime"][star].astype(float), a), atol=2e-3)
        assert np.all(gal.stars["Age"] >= 0) and np.all(gal.stars["Age"] < 13.9)
        dm = il.snapshot.loadSubhalo(base, snap, sid, "dm", fields=["Coordinates"])
        assert len(gal.dm["Coordinates"]) == len(dm)
        np.testing.assert_allclose(gal.dm["Masses"], 10**10.0 / H)  # tiny: 1e10 Msun/h
        assert gal.units["stars/Coordinates"] == "kpc" and gal.units["stars/Age"] == "Gyr"
        assert gal.units["stars/Velocities"] == "km/s" and gal.units["stars/Masses"] == "Msun"
        # centred: the galaxy's stars surround the origin (within 15 times their median radius)
        r = np.linalg.norm(gal.stars["Coordinates"], axis=1)
        assert np.median(r) < 60 and r.max() < 15 * np.median(r) + 50


def test_unwrapped_across_the_periodic_box() -> None:
    """Particles on both sides of the box edge come out as one compact galaxy."""
    box, h = 1000.0, 0.5
    raw = {"stars": {"Coordinates": np.array([[999.0, 500, 500], [1.0, 500, 500], [0.5, 499.5,
                                                                                     500.0]]),
                     "GFM_StellarFormationTime": np.array([0.5, 0.9, -0.3], dtype=np.float32)}}
    attrs = {"stars": {"Coordinates": lay.UNIT_ATTRS["Coordinates"],
                       "GFM_StellarFormationTime": lay.UNIT_ATTRS["GFM_StellarFormationTime"]}}
    header = {"Time": 0.5, "HubbleParam": h, "Omega0": 0.3, "BoxSize": box, "MassTable":
              np.zeros(6)}
    gal = make_galaxy(1, 50, header, np.array([999.8, 500.0, 500.0]), np.zeros(3), raw, attrs)
    np.testing.assert_allclose(gal.stars["Coordinates"][:, 0], np.array([-0.8, 1.2]) * 0.5 / h)
    assert gal.n_wind == 1


def test_in_situ_join_by_particle_id() -> None:
    index = InSituIndex(np.array([5, 3, 9], dtype=np.uint64), np.array([1, 0, 1]), "cat.hdf5")
    assert index.lookup(np.array([9, 3, 5, 3])).tolist() == [1, 0, 1, 0]
    with pytest.raises(InputError, match="not in the stellar assembly catalog cat.hdf5"):
        index.lookup(np.array([4]))


def test_field_requests() -> None:
    assert field_request(["Masses"]) == {"stars": ("Masses", "GFM_StellarFormationTime")}
    assert field_request({"dm": "Coordinates"}) == {"dm": ("Coordinates",)}
    assert "Potential" in field_request(None)["stars"]
    with pytest.raises(InputError, match="particle type"):
        field_request({"gas": ["Masses"]})
    with pytest.raises(InputError, match="bad field name"):
        field_request(["Masses;rm"])


# ---------------------------------------------------------------------------------------------
# The bulk path
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap", [91, 99])
def test_bulk_path_equals_one_galaxy_at_a_time_and_opens_each_chunk_once(
        mock, snap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    tng = LocalTNG(mock.base_path, snap)
    ids = list(range(tng.n_subhalos))[::-1]
    opened: list[str] = []
    real_h5 = tng_local._h5

    def spy(path, what):
        opened.append(Path(path).name)
        return real_h5(path, what)

    monkeypatch.setattr(tng_local, "_h5", spy)
    bulk = list(tng.iter_galaxies(ids, batch_particles=10**9))
    snaps = [n for n in opened if n.startswith("snap_")]
    assert sorted(snaps) == sorted(set(snaps)) and len(snaps) == tng.n_snapshot_files
    assert [g.subhalo_id for g in bulk] == sorted(ids)
    monkeypatch.setattr(tng_local, "_h5", real_h5)
    for gal in bulk:
        assert gal.particles_equal(tng.load_galaxy(gal.subhalo_id)), gal.subhalo_id
    small = list(tng.iter_galaxies([3, 1, 2], batch_particles=50, max_gap=0))
    assert [g.subhalo_id for g in small] == [1, 2, 3]
    assert all(g.particles_equal(bulk[g.subhalo_id]) for g in small)


# ---------------------------------------------------------------------------------------------
# The real files of ../shared/data/tng through this layer
# ---------------------------------------------------------------------------------------------


@pytest.mark.archive
def test_real_group_catalog_chunks() -> None:
    chunk = shared_data_path("tng/fof_subhalo_tab_099.88.hdf5")
    sub = read_groupcat_chunk(chunk)
    assert len(sub["SubhaloPos"]) == 1247 and sub["SubhaloPos"].dtype == np.float32
    pos = catalog_physical("SubhaloPos", sub["SubhaloPos"], 1.0, H)
    assert np.all((pos >= 0) & (pos <= 75000 / H))
    mstar = catalog_physical("SubhaloMassType", sub["SubhaloMassType"][:, 4], 1.0, H)
    assert mstar.max() > 1e9 and np.all(mstar >= 0)
    grp = read_groupcat_chunk(chunk, "Group", ["GroupFirstSub", "GroupNsubs"])
    assert len(grp["GroupFirstSub"]) == 1
    empty = read_groupcat_chunk(shared_data_path("tng/fof_subhalo_tab_099.1.hdf5"),
                                fields=["SubhaloPos"])
    assert len(empty["SubhaloPos"]) == 0
    header = tng_local.read_header(chunk)
    assert header["NumFiles"] == 448 and header["Nsubgroups_ThisFile"] == 1247


@pytest.mark.archive
def test_real_snapshot_chunk_in_physical_units() -> None:
    path = shared_data_path("tng/snap_2332.5.hdf5")
    names = ["Coordinates", "Velocities", "Masses", "ParticleIDs", "Potential",
             "GFM_StellarFormationTime", "GFM_Metallicity"]
    stars, attrs, header = read_particles(path, "stars", names)
    dm, dm_attrs, _ = read_particles(path, "dm", ["Coordinates", "Velocities"])
    assert len(stars["ParticleIDs"]) == 130 and stars["ParticleIDs"].dtype == np.uint64
    centre = np.median(stars["Coordinates"], axis=0)
    gal = make_galaxy(0, 99, header, centre, np.zeros(3), {"stars": stars, "dm": dm},
                      {"stars": attrs, "dm": dm_attrs})
    a = header["Time"]
    keep = stars["GFM_StellarFormationTime"] > 0
    np.testing.assert_allclose(gal.stars["Coordinates"],
                               (stars["Coordinates"][keep] - centre) * a / H, rtol=1e-12)
    np.testing.assert_allclose(gal.stars["Velocities"],
                               stars["Velocities"][keep] * np.sqrt(a), rtol=1e-6)
    np.testing.assert_allclose(gal.stars["Masses"], stars["Masses"][keep] * 1e10 / H, rtol=1e-6)
    np.testing.assert_allclose(gal.dm["Masses"], header["MassTable"][1] * 1e10 / H)
    assert len(gal.dm["Coordinates"]) == 8814
    assert np.all(gal.stars["Age"] > 0) and np.all(gal.stars["Age"] < 13.9)
    # a unit attribute's conversion, spelled out: Potential (km/s)^2 / a
    pot, unit = physical("Potential", stars["Potential"], attrs["Potential"], 0.5, H)
    np.testing.assert_allclose(pot, stars["Potential"] / 0.5, rtol=1e-6)
    assert unit == "(km/s)^2"


@pytest.mark.archive
def test_real_api_cutout_needs_particle_ids_for_the_in_situ_join() -> None:
    path = shared_data_path("tng/stars_565261.hdf5")
    stars, attrs, header = read_particles(path, "stars")
    assert header["CutoutID"] == 565261 and len(stars["Masses"]) == 517
    centre = np.median(stars["Coordinates"], axis=0)
    index = InSituIndex(np.arange(3), np.zeros(3))
    with pytest.raises(InputError, match="no ParticleIDs; the in-situ/ex-situ join"):
        make_galaxy(565261, 99, header, centre, np.zeros(3), {"stars": stars}, {"stars": attrs},
                    index, where=str(path))
    gal = make_galaxy(565261, 99, header, centre, np.zeros(3), {"stars": stars},
                      {"stars": attrs})
    assert gal.n_stars == 517 and np.all(gal.stars["Age"] > 0)
    assert np.median(np.linalg.norm(gal.stars["Coordinates"], axis=1)) < 20  # kpc


@pytest.mark.archive
def test_old_cutout_attributes_are_read() -> None:
    """The SimSpin cutout: array-valued header, unit attributes without *_scaling dimensions."""
    path = shared_data_path("tng/SimSpin_example_IllustrisTNG.hdf5")
    stars, attrs, header = read_particles(path, "stars")
    assert header["SnapshotNumber"] == 78 and abs(header["Time"] - 0.77058) < 1e-4
    gal = make_galaxy(9, 78, header, np.median(stars["Coordinates"], axis=0), np.zeros(3),
                      {"stars": stars}, {"stars": attrs})
    np.testing.assert_allclose(gal.stars["Velocities"][:3],
                               stars["Velocities"][stars["GFM_StellarFormationTime"] > 0][:3]
                               * np.sqrt(header["Time"]))
    assert gal.units["stars/Coordinates"] == "kpc"


@pytest.mark.archive
@pytest.mark.parametrize("name", ["sublink_mpb_565261.hdf5", "sublink_mpb_1030.hdf5"])
def test_real_sublink_branches(name: str) -> None:
    tree = read_sublink(shared_data_path(f"tng/{name}"))
    ids, first = tree["SubhaloID"], tree["FirstProgenitorID"]
    assert np.all(np.diff(tree["SnapNum"]) < 0)  # a main branch back in time
    assert np.array_equal(first[:-1], ids[1:]) and first[-1] == -1
    assert np.all(tree["MainLeafProgenitorID"] == ids[-1])


def test_the_mocks_main_branches_have_the_real_linkage(mock, truth) -> None:
    g = int(np.argmax(truth["n_star"]))
    branch = il.sublink.loadTree(str(mock.base_path), 99, int(truth["SubfindID_099"][g]),
                                 onlyMPB=True)
    assert np.all(np.diff(branch["SnapNum"]) < 0)
    assert np.array_equal(branch["FirstProgenitorID"][:-1], branch["SubhaloID"][1:])
    assert np.all(branch["MainLeafProgenitorID"] == branch["SubhaloID"][-1])


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error each
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def copy(mock, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(mock.root, dest)
    return dest / "output"


def test_truncated_chunk(copy: Path, truth) -> None:
    bad = lay.snapshot_path(copy, 99, 1)
    with open(bad, "r+b") as f:
        f.truncate(bad.stat().st_size // 2)
    tng = LocalTNG(copy, 99)
    with h5py.File(lay.offsets_path(copy, 99)) as f:
        first_in_1 = f["FileOffsets/SnapByType"][1, 4]
        sub_off = f["Subhalo/SnapByType"][:, 4]
    sid = int(np.searchsorted(sub_off, first_in_1))  # a subhalo whose stars lie in chunk 1
    with pytest.raises(InputError, match=r"snap_099\.1\.hdf5.*truncated"):
        tng.load_galaxy(sid)
    with pytest.raises(InputError, match=r"snap_099\.1\.hdf5.*truncated"):
        list(tng.iter_galaxies(range(tng.n_subhalos)))
    bad_cat = lay.groupcat_path(copy, 99, 2)
    bad_cat.write_bytes(bad_cat.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"fof_subhalo_tab_099\.2\.hdf5"):
        tng.subhalos(["SubhaloPos"])


def test_missing_offsets_file(copy: Path) -> None:
    lay.offsets_path(copy, 99).unlink()
    tng = LocalTNG(copy, 99)
    with pytest.raises(InputError, match=r"offsets_099\.hdf5: offsets file not found"):
        tng.load_galaxy(0)
    with pytest.raises(InputError, match="offsets file not found"):
        list(tng.iter_galaxies([0, 1]))


def test_missing_stellar_assembly(copy: Path) -> None:
    lay.stellar_assembly_path(copy, 99, "stars").unlink()
    tng = LocalTNG(copy, 99)
    with pytest.raises(InputError, match=r"stars_099\.hdf5: stellar assembly catalog not found"):
        tng.load_galaxy(0)
    assert "InSitu" not in tng.load_galaxy(0, in_situ=False).stars
    with pytest.raises(InputError, match="request stars ParticleIDs"):
        LocalTNG(copy, 99).load_galaxy(0, ["Masses"])


def test_subhalo_out_of_range_and_bad_paths(mock, tmp_path: Path) -> None:
    tng = LocalTNG(mock.base_path, 99)
    n = tng.n_subhalos
    for bad in (n, -1, 10**9):
        with pytest.raises(InputError, match=rf"subhalo id {bad} out of range.*{n} subhaloes"):
            tng.load_galaxy(bad)
    with pytest.raises(InputError, match="out of range"):
        list(tng.iter_galaxies([0, n]))
    with pytest.raises(InputError, match="must be an integer"):
        tng.load_galaxy(1.5)
    with pytest.raises(InputError, match="not a folder"):
        LocalTNG(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"fof_subhalo_tab_050\.0\.hdf5: group-catalog chunk "
                                         "not found"):
        LocalTNG(mock.base_path, 50)
