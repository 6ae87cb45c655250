"""The mock TNG universe: illustris_python reads it and gets what was planted; its files copy
the real files' layout; the stellar-assembly invariants hold exactly; same seed, same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import illustris_python as il
import numpy as np
import pytest
from scipy import integrate

from conftest import shared_data_path
from galforge.archives import tng_layout as lay
from galforge.io import InputError
from galforge.mock.tng import write_mock_tng
from galforge.mock.tng.alignment import (
    PairSums,
    expected_wgp,
    pair_sums,
    projected_ellipticity,
    wgp,
)
from galforge.mock.tng.model import dimroth_watson, draw_universe
from galforge.mock.tng.settings import SIZES, mock_tng_settings
from galforge.settings import SettingsError

SNAPS = (91, 99)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory):
    return write_mock_tng(tmp_path_factory.mktemp("tng") / "TNG100-1", "tiny", seed=42,
                          snapshots=SNAPS)


@pytest.fixture(scope="module")
def truth(mock) -> dict[str, np.ndarray]:
    with h5py.File(mock.truth_path) as f:
        return {k: f["galaxies"][k][()] for k in f["galaxies"]}


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# illustris_python reads the mock and returns what was planted
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap", SNAPS)
def test_illustris_python_reads_the_whole_catalog(mock, truth, snap: int) -> None:
    base = str(mock.base_path)
    subs = il.groupcat.loadSubhalos(base, snap)  # fields=None: every field, over >= 2 chunks
    halos = il.groupcat.loadHalos(base, snap)
    header = il.groupcat.loadHeader(base, snap)
    assert set(subs) - {"count"} == set(lay.SUBHALO_FIELDS)
    assert set(halos) - {"count"} == set(lay.GROUP_FIELDS)
    assert subs["count"] == mock.n_galaxies == len(truth["mstar"])
    assert halos["count"] == mock.n_halos
    assert header["NumFiles"] >= 3 and header["Nsubgroups_Total"] == mock.n_galaxies
    sub = truth[f"SubfindID_{snap:03d}"]
    assert sorted(sub) == list(range(mock.n_galaxies))
    # the planted galaxies, through the catalog: satellites sit in their central's group
    central_of_halo = np.flatnonzero(truth["central"])[np.argsort(truth["halo"][truth["central"]])]
    grnr = subs["SubhaloGrNr"][sub]
    assert np.array_equal(grnr, grnr[central_of_halo[truth["halo"]]])
    assert len(np.unique(grnr[truth["central"]])) == mock.n_halos
    first = halos["GroupFirstSub"][grnr]
    assert np.array_equal(first == sub, truth["central"])
    if snap == 99:
        np.testing.assert_allclose(subs["SubhaloPos"][sub], truth["pos"], atol=0.01)
        assert np.array_equal(subs["SubhaloLenType"][sub, 4], truth["n_star"] + truth["n_wind"])
    # all star particles of a galaxy have one mass: M*/N planted
    mpart = truth["mstar"] / truth["n_star"] * lay.HEADER_TNG100["HubbleParam"] / 1e10
    np.testing.assert_allclose(subs["SubhaloMassType"][sub, 4],
                               mpart * subs["SubhaloLenType"][sub, 4], rtol=1e-6)
    assert np.all(subs["SubhaloLenType"][sub, 4] <= truth["n_star"] + truth["n_wind"])


@pytest.mark.parametrize("snap", SNAPS)
def test_loadsubhalo_returns_each_subhalos_particles(mock, snap: int) -> None:
    base = str(mock.base_path)
    subs = il.groupcat.loadSubhalos(base, snap, fields=["SubhaloLenType", "SubhaloMassType"])
    seen = []
    for i in range(mock.n_galaxies):
        stars = il.snapshot.loadSubhalo(base, snap, i, "stars", fields=["Masses", "ParticleIDs"])
        assert stars["count"] == subs["SubhaloLenType"][i, 4]
        if stars["count"]:
            # masses are multiples of 2^-16: float32 sums are exact in any order
            assert stars["Masses"].sum(dtype=np.float32) == subs["SubhaloMassType"][i, 4]
            seen.append(stars["ParticleIDs"])
        dm = il.snapshot.loadSubhalo(base, snap, i, "dm", fields=["ParticleIDs"])
        n_dm = len(dm) if isinstance(dm, np.ndarray) else dm["count"]
        assert n_dm == subs["SubhaloLenType"][i, 1]
    ids = np.concatenate(seen)
    assert len(np.unique(ids)) == len(ids)
    all_stars = il.snapshot.loadSubset(base, snap, "stars", fields=["ParticleIDs"])
    assert np.array_equal(np.sort(ids), np.sort(all_stars))  # every star is in a subhalo
    halos = il.groupcat.loadHalos(base, snap, fields=["GroupLenType"])
    for g in range(min(mock.n_halos, 5)):
        assert len(il.snapshot.loadHalo(base, snap, g, "dm", fields=["Coordinates"])) == \
            halos[g, 1]


def test_file_edge_cases_are_present(mock) -> None:
    """An empty group-catalog chunk, a snapshot chunk without stars, a subhalo across chunks."""
    base = mock.base_path
    with h5py.File(lay.groupcat_path(base, 99, 1)) as f:
        assert f["Header"].attrs["Ngroups_ThisFile"] == 0
        assert f["Header"].attrs["Nsubgroups_ThisFile"] == 0
        assert len(f["Group"]) == 0 and len(f["Subhalo"]) == 0
    last = lay.snapshot_path(base, 99, 2)
    with h5py.File(last) as f:
        assert "PartType4" not in f and f["Header"].attrs["NumPart_ThisFile"][4] == 0
    with h5py.File(lay.offsets_path(base, 99)) as f:
        starts = f["FileOffsets/SnapByType"][:, 4]
        sub_off = f["Subhalo/SnapByType"][:, 4]
    lens = il.groupcat.loadSubhalos(str(base), 99, fields=["SubhaloLenType"])[:, 4]
    straddle = [(o < b < o + n) for o, n in zip(sub_off, lens, strict=True) for b in starts[1:]]
    assert any(straddle)


def test_stellar_assembly_invariants_hold_exactly(mock, truth) -> None:
    for snap in SNAPS:
        with h5py.File(lay.stellar_assembly_path(mock.base_path, snap, "galaxies")) as f:
            g = {k: f[k][()] for k in f}
        ex = g["StellarMassExSitu"]
        assert np.array_equal(g["StellarMassInSitu"] + ex, g["StellarMassTotal"])
        assert np.array_equal(g["StellarMassBeforeInfall"] + g["StellarMassAfterInfall"]
                              + g["StellarMassFormedOutsideGalaxies"], ex)
        assert np.array_equal(g["StellarMassFromCompletedMergers"] + g["StellarMassFromOngoingMergers"]
                              + g["StellarMassFromFlybys"] + g["StellarMassFormedOutsideGalaxies"], ex)
        assert np.all(g["StellarMassFromCompletedMergersMajor"]
                      <= g["StellarMassFromCompletedMergersMajorMinor"])
        with h5py.File(lay.stellar_assembly_path(mock.base_path, snap, "stars")) as f:
            sa = {k: f[k][()] for k in f}
        ids = il.snapshot.loadSubset(str(mock.base_path), snap, "stars", fields=["ParticleIDs"])
        assert np.array_equal(sa["ParticleID"], ids)  # rows in snapshot order
        assert set(np.unique(sa["InSitu"])) <= {-1, 0, 1}
        form = il.snapshot.loadSubset(str(mock.base_path), snap, "stars",
                                      fields=["GFM_StellarFormationTime"])
        assert np.array_equal(sa["InSitu"] == -1, form <= 0)  # the winds
        if snap == 99:
            sub = truth["SubfindID_099"]
            # the planted (realised) ex-situ fraction is StellarMassExSitu / StellarMassTotal
            assert np.array_equal(truth["fex"], ex[sub].astype(np.float64)
                                  / g["StellarMassTotal"][sub].astype(np.float64))
            assert np.abs(truth["fex"] - truth["fex_drawn"]).max() <= 0.5 / truth["n_star"].min() + 1e-12


def test_sublink_tree_links_the_snapshots(mock, truth) -> None:
    base = str(mock.base_path)
    cen = np.flatnonzero(truth["log_mstar"] >= SIZES["tiny"]["tree_min_log_mstar"])
    checked = 0
    for g in cen[:20]:
        sid99 = truth["SubfindID_099"][g]
        mpb = il.sublink.loadTree(base, 99, int(sid99), onlyMPB=True,
                                  fields=["SnapNum", "SubfindID", "SubhaloMassType"])
        assert mpb is not None
        assert list(mpb["SnapNum"][:9]) == list(range(99, 90, -1))
        assert mpb["SubfindID"][0] == sid99
        assert mpb["SubfindID"][8] == truth["SubfindID_091"][g]  # the same galaxy at 91
        full = il.sublink.loadTree(base, 99, int(sid99))
        assert full["count"] >= mpb["count"]
        assert il.sublink.numMergers(full) >= 0
        checked += 1
    assert checked > 0
    # a galaxy below the tree's mass limit is not in it
    low = np.flatnonzero(truth["log_mstar"] < SIZES["tiny"]["tree_min_log_mstar"])
    if low.size:
        assert il.sublink.loadTree(base, 99, int(truth["SubfindID_099"][low[0]])) is None


# ---------------------------------------------------------------------------------------------
# Planted physics
# ---------------------------------------------------------------------------------------------


def _galaxy(mock, sid: int) -> dict[str, np.ndarray]:
    base = str(mock.base_path)
    st = il.snapshot.loadSubhalo(base, 99, sid, "stars",
                                 fields=["Coordinates", "Velocities", "GFM_StellarFormationTime",
                                         "GFM_Metallicity", "ParticleIDs"])
    with h5py.File(lay.offsets_path(mock.base_path, 99)) as f:
        off = f["Subhalo/SnapByType"][sid, 4]
    with h5py.File(lay.stellar_assembly_path(mock.base_path, 99, "stars")) as f:
        st["InSitu"] = f["InSitu"][off: off + st["count"]]
    return st


def test_in_situ_disk_and_ex_situ_spheroid_differ_as_planted(mock, truth) -> None:
    pos = il.groupcat.loadSubhalos(str(mock.base_path), 99, fields=["SubhaloPos"])
    big = np.argsort(truth["n_exsitu"])[::-1][:8]
    wins = {"extended": 0, "older": 0, "metal-poor": 0, "rotation": 0}
    for g in big:
        sid = int(truth["SubfindID_099"][g])
        st = _galaxy(mock, sid)
        ins, ex = st["InSitu"] == 1, st["InSitu"] == 0
        assert ins.sum() == truth["n_star"][g] - truth["n_exsitu"][g]
        assert ex.sum() == truth["n_exsitu"][g]
        d = st["Coordinates"] - pos[sid]
        r = np.linalg.norm(d, axis=1)
        form = st["GFM_StellarFormationTime"]
        v = st["Velocities"] - st["Velocities"].mean(axis=0)
        lz = np.cross(d, v) @ truth["minor_axis"][g] / np.maximum(r, 1e-9)
        wins["extended"] += np.median(r[ex]) > np.median(r[ins])
        wins["older"] += form[ex].mean() < form[ins].mean()
        wins["metal-poor"] += np.median(st["GFM_Metallicity"][ex]) < np.median(
            st["GFM_Metallicity"][ins])
        # in-situ stars rotate about the planted minor axis; ex-situ stars barely
        wins["rotation"] += lz[ins].mean() > 3 * abs(lz[ex].mean())
    # each planted difference shows in (nearly) every galaxy despite its few particles
    assert wins["older"] == wins["metal-poor"] == wins["rotation"] == len(big)
    assert wins["extended"] >= len(big) - 2


def test_stellar_shapes_follow_the_planted_axes(mock, truth) -> None:
    """The reduced inertia tensor of a galaxy's star particles recovers its planted major axis."""
    pos = il.groupcat.loadSubhalos(str(mock.base_path), 99, fields=["SubhaloPos"])
    chosen = np.flatnonzero((truth["n_star"] >= 100) & (truth["q"] <= 0.8))
    cosines = []
    for g in chosen:
        sid = int(truth["SubfindID_099"][g])
        st = _galaxy(mock, sid)
        keep = st["GFM_StellarFormationTime"] > 0
        d = st["Coordinates"][keep] - pos[sid]
        w = 1.0 / np.maximum((d * d).sum(axis=1), 1e-6)
        _, vecs = np.linalg.eigh((d * w[:, None]).T @ d)
        cosines.append(abs(vecs[:, 2] @ truth["major_axis"][g]))
    assert len(cosines) >= 8
    assert np.median(cosines) > 0.9


def test_planted_alignment_concentrations() -> None:
    """Satellites' and centrals' major axes follow the stated Dimroth-Watson laws."""
    s = mock_tng_settings("demo")
    u = draw_universe(s, 7)
    cos2 = np.einsum("ni,ni->n", u.gal_frame[:, :, 0], u.gal_ref_axis) ** 2

    def expected(k: float) -> float:
        return (integrate.quad(lambda t: t * t * np.exp(k * t * t), 0, 1)[0]
                / integrate.quad(lambda t: np.exp(k * t * t), 0, 1)[0])

    want = np.array([expected(k) for k in u.gal_kappa])
    for sel in (u.gal_central, ~u.gal_central):
        n = sel.sum()
        # mean cos^2 about the reference axis: planted expectation within 4 standard errors
        assert abs(cos2[sel].mean() - want[sel].mean()) < 4 * cos2[sel].std() / np.sqrt(n)
    assert cos2.mean() > 0.5  # far from isotropic (1/3)


def test_dimroth_watson_sampler_moments() -> None:
    rng = np.random.default_rng(3)
    axis = np.tile([0.0, 0.6, 0.8], (100_000, 1))
    for kappa in (0.0, 2.0, 10.0):
        v = dimroth_watson(axis, kappa, rng)
        t2 = (v @ axis[0]) ** 2
        num = integrate.quad(lambda t, k=kappa: t * t * np.exp(k * t * t), 0, 1)[0]
        den = integrate.quad(lambda t, k=kappa: np.exp(k * t * t), 0, 1)[0]
        assert abs(t2.mean() - num / den) < 5 * t2.std() / np.sqrt(len(t2))
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)


def test_wgp_estimator_sign_and_null() -> None:
    """e+ > 0 for a major axis pointing at the neighbour; isotropic shapes give w_g+ ~ 0."""
    box = 100.0
    shape = np.array([[50.0, 50.0, 50.0]])
    dens = np.array([[52.0, 50.0, 50.0], [50.0, 53.0, 50.0]])
    pairs = pair_sums(shape, dens, box, np.array([1.0, 2.5, 4.0]), 5.0)
    assert pairs.n_pairs.tolist() == [1, 1]
    assert wgp(pairs, np.array([1.0]), np.array([0.0]))[0] > 0  # along x towards (52, 50)
    assert wgp(pairs, np.array([1.0]), np.array([0.0]))[1] < 0  # tangential to (50, 53)
    rng = np.random.default_rng(5)
    pos = rng.random((3000, 3)) * box
    ps = pair_sums(pos[:500], pos, box, np.geomspace(1, 10, 4), 10.0, np.arange(500),
                   np.arange(3000))
    frames = np.stack([np.linalg.qr(rng.standard_normal((3, 3)))[0] for _ in range(500)])
    e1, e2 = projected_ellipticity(frames, np.full(500, 0.5), np.full(500, 0.3))
    w = wgp(ps, e1, e2)
    scale = np.sqrt(np.mean(e1**2 + e2**2) / 2 * ps.n_pairs) / ps.rr
    assert np.all(np.abs(w) < 4 * scale)
    assert isinstance(ps, PairSums)


def test_truth_holds_the_expected_wgp(mock) -> None:
    with h5py.File(mock.truth_path) as f:
        w = {k: f["wgp"][k][()] for k in f["wgp"]}
        attrs = dict(f["wgp"].attrs)
    assert attrs["line_of_sight"] == "z" and attrs["n_shape"] > 10
    assert len(w["expected"]) == SIZES["tiny"]["wgp_bins"]
    assert np.all(w["expected_sem"] > 0)
    np.testing.assert_allclose(w["expected_sem"],
                               w["realisation_std"] / np.sqrt(attrs["realisations"]))
    # the written orientations are one realisation of the planted model
    z = (w["realised"] - w["expected"]) / w["realisation_std"]
    assert np.all(np.abs(z) < 5)
    # satellites point at their central: a strong one-halo signal below 1 h^-1 Mpc
    small = w["rp_centres"] < 1.0
    assert w["expected"][small].sum() > 3 * np.sqrt((w["expected_sem"][small] ** 2).sum())


def test_large_scale_wgp_comes_from_the_planted_tidal_alignment() -> None:
    """Haloes along the tidal field and centrals along their haloes give w_g+ > 0 at
    3-10 h^-1 Mpc; with both switched off (kappa = 0) it vanishes."""
    s = mock_tng_settings("demo")
    u = draw_universe(s, 3)
    mstar = u.gal_mstar
    dens = np.flatnonzero(mstar >= 10.0**s.log_mstar_min)
    shape = np.flatnonzero(mstar >= 1e10)
    pairs = pair_sums(u.gal_pos[shape] / 1e3, u.gal_pos[dens] / 1e3, s.box_size,
                      np.geomspace(3.4, 10.0, 3), s.wgp_pi_max, shape, dens)
    planted = expected_wgp(u, shape, dens, pairs, 20, 1)
    u.kappa_halo = 0.0
    u.gal_kappa[u.gal_central] = 0.0
    null = expected_wgp(u, shape, dens, pairs, 20, 1)
    assert np.all(planted["expected"] > 3 * planted["expected_sem"])
    assert np.all(np.abs(null["expected"]) < 3 * null["expected_sem"])


# ---------------------------------------------------------------------------------------------
# Files: the real layout, reproducibility, bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.archive
def test_groupcat_layout_copies_the_real_chunks(mock) -> None:
    real = shared_data_path("tng/fof_subhalo_tab_099.88.hdf5")
    empty = shared_data_path("tng/fof_subhalo_tab_099.1.hdf5")
    with h5py.File(real) as r, h5py.File(lay.groupcat_path(mock.base_path, 99, 0)) as m:
        assert lay.attribute_kinds(m["Header"].attrs) == lay.attribute_kinds(r["Header"].attrs)
        for g in ("Group", "Subhalo"):
            want = {k: (r[g][k].dtype.str, r[g][k].shape[1:]) for k in r[g]}
            got = {k: (m[g][k].dtype.str, m[g][k].shape[1:]) for k in m[g]}
            assert got == want
            assert all(len(m[g][k].attrs) == 0 for k in m[g])  # no unit attributes, as real
        for k in ("HubbleParam", "Omega0", "OmegaLambda", "Git_commit", "Git_date"):
            assert m["Header"].attrs[k] == r["Header"].attrs[k]
        assert set(m) == set(r)
    with h5py.File(empty) as r, h5py.File(lay.groupcat_path(mock.base_path, 99, 1)) as m:
        assert set(m) == set(r)
        for g in ("Group", "Subhalo"):
            assert len(m[g]) == len(r[g]) == 0


@pytest.mark.archive
def test_snapshot_layout_copies_the_real_chunk(mock) -> None:
    real = shared_data_path("tng/snap_2332.5.hdf5")
    with h5py.File(real) as r, h5py.File(lay.snapshot_path(mock.base_path, 99, 0)) as m:
        assert lay.attribute_kinds(m["Header"].attrs) == lay.attribute_kinds(r["Header"].attrs)
        for t in ("PartType1", "PartType4"):
            assert set(m[t]) <= set(r[t])
            for k in m[t]:
                assert m[t][k].dtype == r[t][k].dtype, (t, k)
                assert m[t][k].shape[1:] == r[t][k].shape[1:], (t, k)
                assert dict(m[t][k].attrs) == dict(r[t][k].attrs), (t, k)
        for k in ("HubbleParam", "Omega0", "OmegaBaryon", "OmegaLambda", "UnitLength_in_cm",
                  "UnitMass_in_g", "UnitVelocity_in_cm_per_s"):
            assert m["Header"].attrs[k] == r["Header"].attrs[k]


@pytest.mark.archive
def test_sublink_dtypes_copy_the_real_branch(mock) -> None:
    real = shared_data_path("tng/sublink_mpb_565261.hdf5")
    with h5py.File(real) as r, h5py.File(lay.sublink_path(mock.base_path)) as m:
        assert set(m) <= set(r)
        for k in m:
            assert (m[k].dtype, m[k].shape[1:]) == (r[k].dtype, r[k].shape[1:]), k


def test_same_seed_same_bytes(mock, tmp_path: Path) -> None:
    again = write_mock_tng(tmp_path / "again", "tiny", seed=42, snapshots=SNAPS)
    assert _files(again.root) == _files(mock.root)
    other = write_mock_tng(tmp_path / "other", "tiny", seed=43, snapshots=(99,))
    a, b = _files(other.root), _files(mock.root)
    assert a["truth.hdf5"] != b["truth.hdf5"]


def test_bad_requests_leave_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="size"):
        mock_tng_settings("huge")
    with pytest.raises(SettingsError, match="wgp_pi_max"):
        mock_tng_settings("tiny", {"wgp_pi_max": 9.0})
    with pytest.raises(InputError, match="merger_snap_min"):
        write_mock_tng(tmp_path / "a", "tiny", snapshots=(50, 99))
    with pytest.raises(SettingsError, match="snapshots"):
        write_mock_tng(tmp_path / "a", "tiny", snapshots=(100,))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not an empty folder"):
        write_mock_tng(tmp_path / "full", "tiny")
    import galforge.mock.tng.writers as writers

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writers, "write_sublink", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_mock_tng(tmp_path / "b", "tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no partial output


def test_cli_writes_the_mock_of_the_runs_scale_and_seed(mock, tmp_path: Path, capsys) -> None:
    from galforge.cli import main

    out = tmp_path / "sim"
    cfg = '{"scale": "tiny", "seed": 42, "tng": {"snapshots": [91, 99]}}'
    assert main(["mock-tng", "--config", cfg, "--out", str(out)]) == 0
    assert _files(out) == _files(mock.root)
    assert f"{mock.n_galaxies} galaxies in {mock.n_halos} haloes" in capsys.readouterr().out
    assert main(["mock-tng", "--config", cfg, "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
