"""Neighbour-count maps: the fast path equals an independent brute force, exactly."""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from galforge.cosmology import C_KMS, Cosmology
from galforge.environment import maps as M
from galforge.environment.footprint import Footprint, select_targets
from galforge.environment.maps import (
    Catalog,
    MapSettings,
    brute_force_map,
    compute_maps,
    read_maps,
    search_radius,
    write_maps,
)
from galforge.io import InputError
from galforge.settings import SettingsError
from mock_presets import ENVIRONMENT_MOCK

COSMO = Cosmology(0.3)
REPO = Path(__file__).resolve().parents[2]
DR7 = "sdss/vollim_dr7_cbp_102709.fits"


# --------------------------------------------------------------------------- helpers


def shared_data_path(relpath: str) -> Path:
    """A real data sample under ``$GALFORGE_SHARED_DATA`` or ``../shared/data``.

    Skips with the reason when absent; fails instead when ``CI=true``.
    """
    env = os.environ.get("GALFORGE_SHARED_DATA")
    bases = ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]
    for base in bases:
        if (base / relpath).exists():
            return base / relpath
    msg = f"shared data {relpath!r} not found under {', '.join(str(b) for b in bases)}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + " (CI=true: real-data tests must not skip)")
    pytest.skip(msg)


def load_dr7(zlo: float = 0.0, zhi: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from astropy.table import Table

    t = Table.read(shared_data_path(DR7))
    ra, dec, z = (np.asarray(t[c], dtype=np.float64) for c in ("ra", "dec", "z"))
    sel = (z >= zlo) & (z <= zhi)
    return ra[sel], dec[sel], z[sel]


def clustered_catalog(
    seed: int = 3,
    n_field: int = 3000,
    n_clumps: int = 120,
    ra_range: tuple[float, float] = (150.0, 180.0),
    dec_range: tuple[float, float] = (0.0, 25.0),
    z_range: tuple[float, float] = (0.01, 0.08),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform field galaxies plus Gaussian clumps (σ 0.3-2 h⁻¹Mpc, 5-150 members) in 3D."""
    rng = np.random.default_rng(seed)
    chi_lo, chi_hi = COSMO.comoving_distance(np.array(z_range))

    def uniform(n: int) -> np.ndarray:
        ra = np.radians(rng.uniform(*ra_range, n))
        sd = rng.uniform(*np.sin(np.radians(dec_range)), n)
        chi = rng.uniform(chi_lo**3, chi_hi**3, n) ** (1 / 3)
        cd = np.sqrt(1 - sd**2)
        return np.column_stack([chi * cd * np.cos(ra), chi * cd * np.sin(ra), chi * sd])

    centres = uniform(n_clumps)
    sizes = np.round(np.exp(rng.uniform(np.log(5), np.log(150), n_clumps))).astype(int)
    sig = rng.uniform(0.3, 2.0, n_clumps)
    members = [c + s * rng.standard_normal((k, 3)) for c, s, k in zip(centres, sig, sizes, strict=True)]
    pos = np.concatenate([uniform(n_field)] + members)
    chi = np.linalg.norm(pos, axis=1)
    ra = np.degrees(np.arctan2(pos[:, 1], pos[:, 0])) % 360
    dec = np.degrees(np.arcsin(pos[:, 2] / chi))
    z = COSMO.z_at_distance(chi)
    keep = (z > z_range[0]) & (z < z_range[1])
    return ra[keep], dec[keep], z[keep]


def collect(it) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(it)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def assert_equal_to_brute(ra, dec, z, rows, settings=None) -> int:
    settings = settings or MapSettings()
    mask = np.zeros(ra.size, dtype=bool)
    mask[rows] = True
    ids, maps = collect(compute_maps(ra, dec, z, targets=mask, settings=settings,
                                     cosmology=COSMO, progress=False))
    order = np.sort(rows)
    assert np.array_equal(ids, order)
    assert maps.dtype == np.uint16 and maps.shape == (order.size, settings.npix, settings.npix)
    bad = [
        int(i) for k, i in enumerate(order)
        if not np.array_equal(maps[k], brute_force_map(i, ra, dec, z, settings, COSMO))
    ]
    assert bad == [], f"{len(bad)} maps differ from brute force, rows {bad[:10]}"
    return int(maps.sum())


# --------------------------------------------------------------------------- settings


def test_settings_defaults_and_validation():
    s = MapSettings()
    assert (s.size_mpc, s.npix, s.dv_kms) == (10.0, 64, 1000.0)
    assert s.pixel_mpc == 10.0 / 64
    assert MapSettings.from_dict({"size_mpc": 8, "npix": 32}).size_mpc == 8.0
    assert MapSettings.from_dict(None) == s
    with pytest.raises(SettingsError, match="pixels: unknown key"):
        MapSettings.from_dict({"pixels": 64})
    for bad in ({"npix": 0}, {"npix": 6.5}, {"size_mpc": -1}, {"dv_kms": float("nan")},
                {"compression": "zstd"}, {"chunk": True}):
        key = next(iter(bad))
        with pytest.raises(SettingsError, match=key):
            MapSettings.from_dict(bad)


# --------------------------------------------------------------------------- exactness


@pytest.mark.archive
def test_fast_equals_brute_force_dr7():
    # catalogue restricted to 0.02 <= z <= 0.08 for speed; targets drawn among
    # those passing the redshift-edge and footprint cuts, plus arbitrary ones
    ra, dec, z = load_dr7(0.02, 0.08)
    fp = Footprint.from_catalog(ra, dec)
    ok, report = select_targets(ra, dec, z, fp, MapSettings(), COSMO, zmin=0.02, zmax=0.08)
    assert report["kept"] > 5000
    rng = np.random.default_rng(20240601)
    rows = rng.choice(np.flatnonzero(ok), 520, replace=False)
    extra = rng.choice(np.flatnonzero(~ok), 100, replace=False)
    total = assert_equal_to_brute(ra, dec, z, np.concatenate([rows, extra]))
    assert total > 10 * 620  # the maps are not trivially empty


def test_fast_equals_brute_force_clustered():
    ra, dec, z = clustered_catalog()
    rng = np.random.default_rng(7)
    rows = rng.choice(ra.size, 400, replace=False)
    total = assert_equal_to_brute(ra, dec, z, rows)
    assert total > 4000


def test_fast_equals_brute_force_other_settings():
    ra, dec, z = clustered_catalog(seed=11)
    rng = np.random.default_rng(8)
    rows = rng.choice(ra.size, 150, replace=False)
    s = MapSettings(size_mpc=7.3, npix=30, dv_kms=600.0, chunk=17)
    assert_equal_to_brute(ra, dec, z, rows, s)


def test_exact_ties_equal_ra_dec_and_duplicates():
    # neighbours with exactly the target's RA (ξ = 0: a bin edge), its Dec, and
    # exact duplicates of its position: both paths must bin them identically
    rng = np.random.default_rng(5)
    t_ra = np.round(rng.uniform(150, 200, 40), 4)
    t_dec = np.round(rng.uniform(-5, 60, 40), 4)
    t_z = rng.uniform(0.02, 0.07, 40)
    ra, dec, z = [t_ra], [t_dec], [t_z]
    for dra, ddec in ((0.0, 0.3), (0.0, -0.7), (0.4, 0.0), (-1.1, 0.0), (0.0, 0.0), (1e-9, 0.0)):
        ra.append(t_ra + dra)
        dec.append(t_dec + ddec)
        z.append(t_z + rng.uniform(-0.002, 0.002, 40))
    ra, dec, z = (np.concatenate(a) for a in (ra, dec, z))
    assert_equal_to_brute(ra, dec, z, np.arange(40))
    ids, maps = collect(compute_maps(ra, dec, z, targets=np.arange(40), progress=False))
    half = 32
    assert np.all(maps[:, :, half].sum(axis=1) >= 1)  # equal-RA neighbours sit at x = 0 -> ix 32


def test_mock_tiny_fast_equals_brute_force(tmp_path):
    mock = pytest.importorskip("galforge.mock.environment")
    if not hasattr(mock, "write_environment_mock"):
        pytest.skip("galforge.mock.environment.write_environment_mock not available yet")
    from astropy.io import fits

    cat = tmp_path / "mock.fits"
    settings = mock.MockEnvironmentSettings.from_dict(ENVIRONMENT_MOCK["tiny"])
    mock.write_environment_mock(settings, COSMO, 123, cat, tmp_path / "truth.parquet")
    with fits.open(cat) as hdul:
        data = hdul[1].data
        ra, dec, z = (np.asarray(data[c], dtype=np.float64) for c in ("ra", "dec", "z"))
    fp = Footprint.from_catalog(ra, dec, nside=64)
    ok, _ = select_targets(ra, dec, z, fp, MapSettings(), COSMO, zmin=float(z.min()),
                           zmax=float(z.max()), candidates=(z > 0.02) & (z < 0.07))
    cand = np.flatnonzero(ok) if ok.sum() >= 300 else np.flatnonzero((z > 0.02) & (z < 0.07))
    rows = np.random.default_rng(3).choice(cand, min(500, cand.size), replace=False)
    total = assert_equal_to_brute(ra, dec, z, rows)
    assert total > rows.size


@pytest.mark.archive
def test_search_radius_bounds_every_neighbour():
    # the rigorous 3D ball radius contains every in-map neighbour (checked
    # against the brute-force membership, independent of the tree)
    ra, dec, z = load_dr7(0.02, 0.05)
    cat = Catalog.from_arrays(ra, dec, z, cosmology=COSMO)
    rng = np.random.default_rng(1)
    rows = rng.choice(ra.size, 200, replace=False)
    s = MapSettings()
    radii = search_radius(cat, rows, s.half_diagonal_mpc, s.dv_kms)
    for r, rad in zip(rows, radii, strict=True):
        a, d = np.radians(ra), np.radians(dec)
        cos_c = (np.sin(d[r]) * np.sin(d) + np.cos(d[r]) * np.cos(d) * np.cos(a - a[r]))
        xi = np.cos(d) * np.sin(a - a[r]) / cos_c
        eta = (np.cos(d[r]) * np.sin(d) - np.sin(d[r]) * np.cos(d) * np.cos(a - a[r])) / cos_c
        dv = C_KMS * np.abs(z - z[r]) / (1 + z[r])
        inside = (dv <= s.dv_kms) & (cos_c > 0) & (np.abs(xi) * cat.chi[r] <= 5) & (
            np.abs(eta) * cat.chi[r] <= 5)
        d3 = np.linalg.norm(cat.xyz[inside] - cat.xyz[r], axis=1)
        assert d3.size == 0 or d3.max() <= rad
        # and the bound is not wastefully loose
        assert rad < 1.5 * math.sqrt(10.0**2 + 50.0)


# --------------------------------------------------------------------------- geometry


def _offset(ra0, dec0, x, y, dist):
    """Sky position at gnomonic offset (x east, y north) h^-1 Mpc from (ra0, dec0)."""
    xi, eta = x / dist, y / dist
    a0, d0 = math.radians(ra0), math.radians(dec0)
    rho = math.hypot(xi, eta)
    c = math.atan(rho)
    if rho == 0:
        return ra0, dec0
    dec = math.asin(math.cos(c) * math.sin(d0) + eta * math.sin(c) * math.cos(d0) / rho)
    if xi == 0:
        return ra0, math.degrees(dec)  # keep the RA bit-identical: x = 0 exactly
    ra = a0 + math.atan2(xi * math.sin(c), rho * math.cos(d0) * math.cos(c)
                         - eta * math.sin(d0) * math.sin(c))
    return math.degrees(ra), math.degrees(dec)


@pytest.mark.parametrize("dec0", [0.0, 35.0, -20.0, 75.0])
def test_orientation_east_columns_north_rows(dec0):
    z0 = 0.05
    dist = float(COSMO.comoving_distance(z0))
    ra0 = 200.0
    pts = [(1.0, 0.07), (0.07, 2.0), (-3.0, -4.0), (4.9, 4.9), (0.0, 1.0)]  # (x east, y north)
    ra = [ra0] + [_offset(ra0, dec0, x, y, dist)[0] for x, y in pts]
    dec = [dec0] + [_offset(ra0, dec0, x, y, dist)[1] for x, y in pts]
    z = [z0] * (len(pts) + 1)
    ids, maps = collect(compute_maps(ra, dec, z, targets=[0], progress=False))
    m = maps[0]
    pix = 10.0 / 64
    for x, y in pts:
        iy, ix = int((y + 5) // pix), int((x + 5) // pix)
        assert m[iy, ix] == 1, (x, y)
    assert m.sum() == len(pts)
    # east = RA increasing: the (1, 0) neighbour has the larger RA
    assert ra[1] > ra0


def test_velocity_window_and_square_edges():
    z0 = 0.04
    dist = float(COSMO.comoving_distance(z0))
    dz = 1000.0 * (1 + z0) / C_KMS
    ra, dec, z = [180.0], [20.0], [z0]

    def add(x, y, zz):
        r, d = _offset(180.0, 20.0, x, y, dist)
        ra.append(r)
        dec.append(d)
        z.append(zz)

    add(0.5, 0.5, z0 + dz * (1 - 1e-9))   # inside the window
    add(0.5, 0.5, z0 - dz * (1 - 1e-9))   # inside
    add(0.5, 0.5, z0 + dz * (1 + 1e-7))   # outside
    add(0.5, 0.5, z0 - dz * (1 + 1e-7))   # outside
    add(4.999, 0.01, z0)                  # last column
    add(5.001, 0.01, z0)                  # beyond the square
    add(-4.999, -4.999, z0)               # first row/column
    add(-5.001, 0.01, z0)                 # beyond
    ids, maps = collect(compute_maps(ra, dec, z, targets=[0], progress=False))
    m = maps[0]
    assert m.sum() == 4
    assert m[int(5.5 // (10 / 64)), int(5.5 // (10 / 64))] == 2
    assert m[32, 63] == 1 and m[0, 0] == 1
    assert np.array_equal(m, brute_force_map(0, ra, dec, z, cosmology=COSMO))


def test_target_excluded_duplicates_counted():
    ra = [150.0, 150.0, 150.0]
    dec = [10.0, 10.0, 10.0]
    z = [0.05, 0.05, 0.0501]
    ids, maps = collect(compute_maps(ra, dec, z, ids=[7, 8, 9], targets=[0], progress=False))
    assert ids.tolist() == [7]
    assert maps[0].sum() == 2 and maps[0][32, 32] == 2


# --------------------------------------------------------------------------- API / errors


def test_targets_mask_or_indices_and_chunking():
    ra, dec, z = clustered_catalog(seed=4, n_field=800, n_clumps=30)
    rows = np.array([5, 3, 200, 17, 400])
    ids1, m1 = collect(compute_maps(ra, dec, z, targets=np.sort(rows), progress=False))
    mask = np.zeros(ra.size, bool)
    mask[rows] = True
    ids2, m2 = collect(compute_maps(ra, dec, z, targets=mask, progress=False,
                                    settings=MapSettings(chunk=2)))
    assert np.array_equal(ids1, ids2) and np.array_equal(m1, m2)
    ids3, m3 = collect(compute_maps(ra, dec, z, targets=rows, progress=False))  # given order
    assert ids3.tolist() == rows.tolist()
    assert np.array_equal(m3[np.argsort(rows)], m1)
    ids_all, m_all = collect(compute_maps(ra, dec, z, ids=np.arange(ra.size) + 1000,
                                          progress=False, settings=MapSettings(chunk=100)))
    assert ids_all.tolist() == list(range(1000, 1000 + ra.size))
    assert np.array_equal(m_all[rows], m3)


def test_errors_empty_no_targets_nan():
    with pytest.raises(InputError, match="empty"):
        compute_maps([], [], [], progress=False)
    with pytest.raises(InputError, match="no targets"):
        compute_maps([1.0, 2.0], [0.0, 0.0], [0.05, 0.05], targets=[False, False])
    with pytest.raises(InputError, match=r"row 2 .*dec"):
        compute_maps([1.0, 2.0, 3.0], [0.0, 0.0, np.nan], [0.05, 0.05, 0.05])
    with pytest.raises(InputError, match=r"row 1 \(id 11\).*z"):
        compute_maps([1.0, 2.0], [0.0, 0.0], [0.05, np.inf], ids=[10, 11])
    with pytest.raises(InputError, match="row 0"):
        compute_maps([1.0], [0.0], [0.0])
    with pytest.raises(InputError, match="lengths"):
        compute_maps([1.0, 2.0], [0.0], [0.05, 0.05])
    with pytest.raises(InputError, match="row 1"):
        write_maps("/nonexistent-dir/never.h5", [1.0, 2.0], [0.0, 95.0], [0.05, 0.05])


def test_write_maps_layout(tmp_path):
    ra, dec, z = clustered_catalog(seed=9, n_field=1500, n_clumps=40)
    rng = np.random.default_rng(0)
    mask = np.zeros(ra.size, bool)
    mask[rng.choice(ra.size, 700, replace=False)] = True
    ids = np.arange(ra.size, dtype=np.int64) * 3 + 5
    path = tmp_path / "out" / "maps.h5"
    summary = write_maps(path, ra, dec, z, ids=ids, targets=mask,
                         settings=MapSettings(chunk=300), cosmology=COSMO, progress=False)
    assert summary["n_targets"] == 700
    ref_ids, ref_maps = collect(compute_maps(ra, dec, z, ids=ids, targets=mask,
                                             cosmology=COSMO, progress=False))
    with h5py.File(path) as f:
        d = f["maps"]
        assert d.shape == (700, 64, 64) and d.dtype == np.uint16
        assert d.chunks == (256, 64, 64) and d.compression == "gzip"
        assert f["ids"].dtype == np.int64
        for key in ("L", "npix", "dv_kms", "Om0", "projection", "orientation"):
            assert key in f.attrs
        assert f.attrs["L"] == 10.0 and f.attrs["npix"] == 64 and f.attrs["Om0"] == 0.3
    out = read_maps(path)
    assert np.array_equal(out["ids"], ref_ids) and np.array_equal(out["maps"], ref_maps)
    assert np.array_equal(out["ra"], ra[mask]) and np.array_equal(out["z"], z[mask])
    assert summary["n_neighbours"] == int(ref_maps.sum())
    assert not [p for p in path.parent.iterdir() if p.name != "maps.h5"]
    # reruns give byte-identical files (no timestamps in the HDF5)
    again = tmp_path / "again.h5"
    write_maps(again, ra, dec, z, ids=ids, targets=mask, settings=MapSettings(chunk=300),
               cosmology=COSMO, progress=False)
    assert again.read_bytes() == path.read_bytes()
    # lzf and uncompressed variants hold the same maps
    for comp in ("lzf", None):
        p2 = tmp_path / f"maps_{comp}.h5"
        write_maps(p2, ra, dec, z, ids=ids, targets=mask, cosmology=COSMO, progress=False,
                   settings=MapSettings(compression=comp, h5_chunk_maps=100))
        back = read_maps(p2)
        assert np.array_equal(back["maps"], ref_maps)


def test_write_maps_atomic_on_error(tmp_path, monkeypatch):
    ra, dec, z = clustered_catalog(seed=9, n_field=500, n_clumps=10)
    real = M._iter_maps

    def failing(*args, **kwargs):
        it = real(*args, **kwargs)
        yield next(it)
        raise RuntimeError("boom mid-stream")

    monkeypatch.setattr(M, "_iter_maps", failing)
    path = tmp_path / "maps.h5"
    with pytest.raises(RuntimeError, match="boom"):
        write_maps(path, ra, dec, z, settings=MapSettings(chunk=64), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_uint16_overflow_is_an_error_and_leaves_no_file(tmp_path):
    n = 66_000
    rng = np.random.default_rng(2)
    ra = np.concatenate([[170.0], 170.0 + rng.uniform(0.0001, 0.0002, n)])
    dec = np.concatenate([[10.0], 10.0 + rng.uniform(0.0001, 0.0002, n)])
    z = np.full(n + 1, 0.05)
    with pytest.raises(OverflowError, match="uint16"):
        collect(compute_maps(ra, dec, z, targets=[0], progress=False))
    path = tmp_path / "maps.h5"
    with pytest.raises(OverflowError):
        write_maps(path, ra, dec, z, targets=[0], progress=False)
    assert list(tmp_path.iterdir()) == []
