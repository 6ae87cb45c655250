"""The maps: exact against scipy's binned_statistic_2d, the preprocessing, the views, the file."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binned_statistic_2d

from conftest import shared_data_path
from galforge.exsitu import maps as mp
from galforge.exsitu.settings import VIEW_COUNTS, MapSettings
from galforge.exsitu.views import polyhedron_vertices, projection_basis
from galforge.io import InputError


def _particles(n: int = 3000, seed: int = 1) -> mp.GalaxyParticles:
    rng = np.random.default_rng(seed)
    pos = rng.normal(0.0, 3.0, (n, 3))
    vel = rng.normal(0.0, 120.0, (n, 3)) + 80.0 * np.cross([0, 0, 1.0], pos) / 3.0
    return mp.GalaxyParticles(pos, vel, rng.uniform(1e5, 3e5, n),
                              10 ** rng.normal(-1.9, 0.3, n), rng.uniform(0.5, 13.0, n),
                              (rng.random(n) < 0.3).astype(np.float64))


@pytest.mark.parametrize("n_views", [1, 4, 12])
def test_every_raw_map_equals_binned_statistic_2d(n_views: int) -> None:
    p, npix, half = _particles(), 24, 5.0
    los = polyhedron_vertices(n_views)
    raw, count = mp.raw_maps(p, los, half, npix, z_sun=0.0127)
    edges = np.linspace(-half, half, npix + 1)
    for v, basis in enumerate(projection_basis(los)):
        x, y = p.pos @ basis[0], p.pos @ basis[1]
        vz = p.vel @ basis[2]

        def s(w: np.ndarray, stat: str = "sum", x=x, y=y) -> np.ndarray:
            return binned_statistic_2d(x, y, w, stat, bins=[edges, edges]).statistic

        b = binned_statistic_2d(x, y, None, "count", bins=[edges, edges],
                                expand_binnumbers=True).binnumber - 1
        inside = np.all((b >= 0) & (b < npix), axis=0)

        n = s(p.mass, "count")
        m = s(p.mass)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_v = s(p.mass * vz) / m
            want = [np.log10(m / (edges[1] - edges[0]) ** 2), mean_v,
                    np.sqrt(s(np.where(inside, p.mass * (vz - mean_v[b[0].clip(0, npix - 1),
                                                                      b[1].clip(0, npix - 1)])
                                       ** 2, 0.0)) / m),
                    np.log10(s(p.mass * p.metallicity) / m / 0.0127),
                    s(p.mass * p.age) / m, s(p.mass * p.ex_situ) / m]
        np.testing.assert_array_equal(count[v], n)
        empty = n == 0
        for c, w in enumerate(want):
            w = np.where(empty, np.nan, w)
            np.testing.assert_allclose(raw[v, c], w, rtol=1e-10, atol=1e-9, equal_nan=True,
                                       err_msg=f"view {v} channel {mp.CHANNELS[c]}")


def test_particles_on_the_last_edge_fall_in_the_last_pixel_as_in_scipy() -> None:
    p = mp.GalaxyParticles(np.array([[2.0, -2.0, 0.0], [2.5, 0.0, 0.0]]), np.zeros((2, 3)),
                           np.ones(2), np.full(2, 0.0127), np.ones(2), np.zeros(2))
    _, count = mp.raw_maps(p, np.array([[0.0, 0.0, 1.0]]), 2.0, 4)
    e1, e2 = projection_basis(np.array([[0.0, 0.0, 1.0]]))[0, :2]
    edges = np.linspace(-2, 2, 5)
    want = binned_statistic_2d(p.pos @ e1, p.pos @ e2, None, "count", bins=[edges, edges])
    np.testing.assert_array_equal(count[0], want.statistic)
    assert count.sum() == 1  # the particle at x = 2.5 lies outside


@pytest.mark.parametrize("n", VIEW_COUNTS)
def test_views_are_distinct_unit_vectors_of_a_polyhedron(n: int) -> None:
    v = polyhedron_vertices(n)
    assert v.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    d = np.linalg.norm(v[:, None] - v[None], axis=-1)
    assert np.all(d[~np.eye(n, dtype=bool)] > 1e-6)  # no two identical
    b = projection_basis(v)
    np.testing.assert_allclose(np.einsum("vij,vkj->vik", b, b), np.broadcast_to(np.eye(3),
                                                                                 (n, 3, 3)),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(b), 1.0)
    if n in (4, 6, 8, 12, 20):  # the whole polyhedron: centred
        np.testing.assert_allclose(v.mean(axis=0), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="views"):
        polyhedron_vertices(5)


def test_preprocessing_thresholds_clips_smooths_and_masks() -> None:
    rng = np.random.default_rng(3)
    count = rng.integers(0, 9, (16, 16))
    raw = rng.normal(0.0, 1.0, (6, 16, 16))
    raw[1] = rng.normal(0, 400, (16, 16))
    raw[2] = rng.uniform(0, 500, (16, 16))
    raw[3] = rng.normal(0, 2, (16, 16))
    raw[:, count == 0] = np.nan
    s = MapSettings(npix=16, smooth_sigma=0.0)
    maps, mask = mp.preprocess(raw, count, s)
    thresh = max(np.percentile(count[count > 0], 75), 2)
    np.testing.assert_array_equal(mask, count > thresh)
    assert np.all(maps[:, ~mask] == 0)
    v = raw[1][mask]
    vmax = min(abs(v.min()), abs(v.max()), 250.0)
    np.testing.assert_allclose(maps[1][mask], np.clip(v, -vmax, vmax), rtol=1e-6)
    assert maps[2].max() <= 350 and maps[3].min() >= -1 and maps[3].max() <= 1
    smooth, mask2 = mp.preprocess(raw, count, s.replace(smooth_sigma=0.6))
    np.testing.assert_array_equal(mask, mask2)
    assert not np.allclose(smooth[0][mask], maps[0][mask])  # smoothed ...
    # ... a normalised average of occupied pixels: within their range
    assert smooth[5][mask].min() >= maps[5][mask].min() - 1e-6
    assert smooth[5][mask].max() <= maps[5][mask].max() + 1e-6
    # the sparse presets' rule: at least min_count + 1 particles
    _, m3 = mp.preprocess(raw, count, s.replace(count_percentile=None, min_count=1))
    np.testing.assert_array_equal(m3, count > 1)


def test_maps_file_round_trip_and_bad_file(tmp_path) -> None:
    s = MapSettings(npix=8, h5_chunk=2)
    rng = np.random.default_rng(0)
    items = [{"maps": rng.random((k, 6, 8, 8), dtype=np.float32),
              "masks": rng.random((k, 8, 8)) > 0.5, "galaxy_id": g, "snapshot": 99,
              "subhalo_id": 10 + g, "view": np.arange(k), "n_views": k, "fex": 0.1 * g,
              "log_mstar": 10.5, "r_half_kpc": 3.0, "split": "train" if g else "test"}
             for g, k in ((0, 2), (1, 3))]
    n = mp.write_maps(tmp_path / "m.h5", items, 8, s, {"note": "x"})
    got = mp.read_maps(tmp_path / "m.h5")
    assert n == 5 and got.maps.shape == (5, 6, 8, 8) and got.masks.dtype == bool
    np.testing.assert_array_equal(got.maps[2:], items[1]["maps"])
    assert got.meta["split"].tolist() == ["test"] * 2 + ["train"] * 3
    assert got.meta["view"].tolist() == [0, 1, 0, 1, 2]
    assert got.attrs["channels"] == list(mp.CHANNELS)
    (tmp_path / "bad.h5").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.h5"):
        mp.read_maps(tmp_path / "bad.h5")


@pytest.mark.archive
def test_the_real_cutout_goes_through_the_map_maker() -> None:
    """A real TNG cutout (SimSpin's example, 2,000 stars, snapshot 78; no StellarAssembly
    join: the ex-situ map is NaN) gives plausible maps; the API cutout without velocities
    gives one clear error."""
    from galforge.archives.tng_fetch import load_cutout
    from galforge.archives.tng_local import read_particles

    fields = ["Coordinates", "Velocities", "Masses", "GFM_StellarFormationTime",
              "GFM_Metallicity"]
    path = shared_data_path("tng/SimSpin_example_IllustrisTNG.hdf5")
    stars, _, _ = read_particles(path, "stars", ["Coordinates"])
    gal = load_cutout(path, 9, 78, np.median(stars["Coordinates"], axis=0), np.zeros(3), fields)
    p = mp.particles_of(gal)
    assert np.all(np.isnan(p.ex_situ)) and len(p.mass) > 1900
    r = np.linalg.norm(p.pos, axis=1)
    r_half = float(np.quantile(r, 0.5))
    raw, count = mp.raw_maps(p, polyhedron_vertices(3), 2 * r_half, 16)
    assert count.shape == (3, 16, 16) and np.all(count.sum(axis=(1, 2)) > 0.5 * len(p.mass))
    np.testing.assert_array_equal(np.isnan(raw[:, 5]), np.ones_like(count, bool))
    s = MapSettings(npix=16, count_percentile=None, min_count=1)
    for v in range(3):
        maps, mask = mp.preprocess(raw[v], count[v], s)
        assert mask.sum() > 30
        # plausible: 1e2-1e11 Msun/kpc^2 (a 2,000-star subsample spread over ~100 kpc), ages
        # within the Universe's
        assert 2 < maps[0][mask].min() and maps[0][mask].max() < 11
        assert 0 < maps[4][mask].min() and maps[4][mask].max() < 13.9
        assert np.all(np.abs(maps[1][mask]) <= 250) and np.all(maps[2][mask] <= 350)
        assert 0 < maps[2][mask].mean() < 350
    api = shared_data_path("tng/stars_565261.hdf5")
    with pytest.raises(InputError, match="Velocities"):
        load_cutout(api, 565261, 99, np.zeros(3), np.zeros(3), fields)
