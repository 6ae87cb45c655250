"""The maps' dipole and quadrupole moments (galforge.environment.anisotropy), the mock's planted
field moments (galforge.mock.environment.field_moments) and the planted-anisotropy check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galforge.environment.analysis import (
    ANISOTROPY_MIN_ABS_RHO,
    COUNT_MAX_ABS_RHO,
    anisotropy_recovery,
    truth_recovery,
)
from galforge.environment.anisotropy import (
    MOMENT_NAMES,
    latents_vs_moments,
    map_moments,
    moment_frame,
    moment_summary,
)
from galforge.io import InputError
from galforge.mock import lognormal as ln
from galforge.mock.environment import _tangent_basis, azimuthal_moments, field_moments

NPIX = 64
#: Pixel-centre offsets of a map, in units of its side: x east (columns), y north (rows).
_C = (np.arange(NPIX) + 0.5) / NPIX - 0.5
X, Y = np.meshgrid(_C, _C)


def blob(x0: float, y0: float, width: float = 0.06, amp: float = 50.0) -> np.ndarray:
    return amp * np.exp(-((X - x0) ** 2 + (Y - y0) ** 2) / (2 * width**2))


def bar(angle_deg: float, width: float = 0.04, amp: float = 20.0) -> np.ndarray:
    """A bar through the centre along the position angle (east towards north)."""
    a = np.radians(angle_deg)
    across = -X * np.sin(a) + Y * np.cos(a)
    return amp * np.exp(-(across**2) / (2 * width**2))


def moments_of(m: np.ndarray) -> dict[str, float]:
    return dict(zip(MOMENT_NAMES, map_moments(m[None])[0], strict=True))


# --------------------------------------------------------------------------- definition
def test_blob_to_the_east_is_a_positive_cos_dipole_and_to_the_north_a_sin_dipole():
    east = moments_of(blob(0.25, 0.0))
    assert east["dipole_cos"] > 0.9 and abs(east["dipole_sin"]) < 1e-6
    north = moments_of(blob(0.0, 0.25))
    assert north["dipole_sin"] > 0.9 and abs(north["dipole_cos"]) < 1e-6
    # a blob is also elongated along its direction from the centre: the quadrupole follows
    assert east["quad_cos"] > 0.5 and north["quad_cos"] < -0.5


def test_bar_along_east_is_a_positive_cos_quadrupole_and_no_dipole():
    m = moments_of(bar(0.0))
    assert m["quad_cos"] > 0.5 and abs(m["quad_sin"]) < 1e-6
    assert abs(m["dipole_cos"]) < 1e-9 and abs(m["dipole_sin"]) < 1e-9
    diag = moments_of(bar(45.0))
    assert diag["quad_sin"] > 0.5 and abs(diag["quad_cos"]) < 1e-6


def test_rotation_by_90_degrees_flips_the_quadrupole_and_turns_the_dipole():
    rng = np.random.default_rng(4)
    m = rng.poisson(blob(0.2, 0.1) + bar(30.0) + 0.05).astype(np.uint16)
    a = map_moments(m[None])[0]
    # np.rot90 moves pixel [iy, ix] to [n-1-ix, iy]: (x, y) -> (y, -x), a clockwise turn
    b = map_moments(np.rot90(m)[None])[0]
    np.testing.assert_allclose(b, [a[1], -a[0], -a[2], -a[3]], atol=1e-12)


def test_moments_ignore_the_count_and_stay_in_range():
    rng = np.random.default_rng(5)
    m = rng.poisson(blob(-0.2, 0.3, amp=3.0) + 0.2, size=(50, NPIX, NPIX)).astype(np.uint16)
    a = map_moments(m)
    np.testing.assert_allclose(map_moments(7 * m), a, rtol=1e-12)
    assert np.isfinite(a).all() and (np.abs(a) <= 1).all()
    # a field symmetric under a 90-degree turn has none (pixel centres are symmetric too)
    np.testing.assert_allclose(map_moments(np.ones((1, NPIX, NPIX))), 0.0, atol=1e-12)
    # empty map: no orientation
    assert np.isnan(map_moments(np.zeros((1, NPIX, NPIX)))).all()


def test_target_at_the_origin_is_left_out_and_shapes_are_checked():
    w = np.array([[5.0, 1.0, 0.0]])
    got = azimuthal_moments(w, [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(got, [[1.0, 0.0, 1.0, 0.0]])  # the weight 5 at r = 0 ignored
    with pytest.raises(ValueError, match="do not match"):
        azimuthal_moments(w, [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(InputError, match="shape"):
        map_moments(np.zeros((3, 8, 6)))


def test_only_the_inscribed_disc_counts():
    m = np.zeros((1, NPIX, NPIX))
    m[0, -1, -1] = 9  # the north-east corner: outside the disc
    assert np.isnan(map_moments(m)).all()


# --------------------------------------------------------------------------- the planted truth
def _grid_and_field(profile) -> tuple[ln.BoxGrid, np.ndarray]:
    grid = ln.BoxGrid(shape=(64, 64, 64), cell=0.5, origin=(84.0, -16.0, -16.0))
    idx = np.arange(64) + 0.5
    xs = grid.origin[0] + idx * grid.cell
    ys = grid.origin[1] + idx * grid.cell
    zs = grid.origin[2] + idx * grid.cell
    xx, yy, zz = np.meshgrid(xs, ys, zs, indexing="ij")
    return grid, profile(xx, yy, zz).astype(np.float32)


def test_field_moments_share_the_maps_frame():
    """A galaxy at RA 0, Dec 0 (100 h^-1 Mpc away): east is +y, north is +z. An overdensity
    3 h^-1 Mpc to the east gives a positive cos dipole, to the north a positive sin dipole,
    exactly as neighbours there would in its map; a uniform field gives none."""
    pos = np.array([[100.0, 0.0, 0.0]])
    t, e, n = _tangent_basis(pos)
    np.testing.assert_allclose(np.vstack([t, e, n]), np.eye(3), atol=1e-12)
    depth = np.array([10.0])
    kw = dict(radius=5.0, half_depth=depth)
    grid, flat = _grid_and_field(lambda x, y, z: 0.0 * x)
    np.testing.assert_allclose(field_moments(flat, grid, pos, **kw), 0.0, atol=1e-9)
    grid, east = _grid_and_field(lambda x, y, z: 20 * np.exp(-((y - 3) ** 2 + z**2) / 2.0))
    m = field_moments(east, grid, pos, **kw)[0]
    assert m[0] > 0.3 and abs(m[1]) < 1e-6 and m[2] > 0.1
    grid, north = _grid_and_field(lambda x, y, z: 20 * np.exp(-(y**2 + (z - 3) ** 2) / 2.0))
    m = field_moments(north, grid, pos, **kw)[0]
    assert m[1] > 0.3 and abs(m[0]) < 1e-6 and m[2] < -0.1
    # beyond the velocity window along the line of sight: not seen
    grid, behind = _grid_and_field(
        lambda x, y, z: 20 * np.exp(-((x - 113) ** 2 + (y - 3) ** 2 + z**2) / 2.0))
    assert abs(field_moments(behind, grid, pos, **kw)[0, 0]) < 0.01


def _joined(n: int = 3000, seed: int = 0, *, count_leak: float = 0.0) -> pd.DataFrame:
    """Stand-in targets: z1 the count, z2 noise, z3 and z4 the field's cos and sin dipole
    (with noise)."""
    rng = np.random.default_rng(seed)
    field = rng.normal(0, 0.15, (n, 4))
    dens = rng.normal(size=n)
    n_map = rng.poisson(np.exp(3 + 0.5 * dens + count_leak * field[:, 0] / 0.15))
    df = pd.DataFrame({"id": np.arange(n), "n_map": n_map,
                       "z1": -np.log1p(n_map) + 0.1 * rng.normal(size=n),
                       "z2": rng.normal(size=n),
                       "z3": field[:, 0] + 0.08 * rng.normal(size=n),
                       "z4": -field[:, 1] + 0.08 * rng.normal(size=n)})
    for k, name in enumerate(MOMENT_NAMES):
        df[f"field_{name}"] = field[:, k]
        df[name] = field[:, k] + 0.1 * rng.normal(size=n)  # the maps' own, noisier
    return df


def test_anisotropy_check_passes_when_a_later_latent_tracks_what_the_count_does_not():
    out = anisotropy_recovery(_joined())
    c = out["components"]["dipole_cos"]
    assert c["best_latent"] == "z3" and abs(c["rho_best_latent"]) >= ANISOTROPY_MIN_ABS_RHO
    assert all(abs(v["rho_n_map"]) < COUNT_MAX_ABS_RHO for v in out["components"].values())
    assert out["components"]["dipole_sin"]["best_latent"] == "z4"
    assert out["components"]["dipole_sin"]["rho_best_latent"] < -0.5  # the sign is free
    assert out["recovered"] == ["dipole_cos", "dipole_sin"] and out["count_blind"] and out["pass"]
    assert c["rho_map_moment"] > 0.7


def test_anisotropy_check_fails_without_later_latents_or_when_the_count_carries_it():
    no_latent = _joined().drop(columns=["z3", "z4"])
    out = anisotropy_recovery(no_latent)
    assert not out["recovered"] and not out["pass"]
    # one direction only: the cos dipole is tracked, the sin dipole is not
    one = anisotropy_recovery(_joined().drop(columns="z4"))
    assert one["recovered"] == ["dipole_cos"] and not one["pass"]
    # only z1 tracks the moment: z1 does not count
    noise = np.random.default_rng(9).normal(size=3000)
    z1 = _joined().assign(z1=lambda d: d["field_dipole_cos"], z3=noise)
    assert not anisotropy_recovery(z1)["pass"]
    leak = anisotropy_recovery(_joined(count_leak=0.6))
    assert leak["recovered"] and not leak["count_blind"] and not leak["pass"]


def test_truth_recovery_reports_the_anisotropy_flag_and_needs_the_field_moments():
    j = _joined()
    truth = j[["id", *(f"field_{m}" for m in MOMENT_NAMES)]].rename(columns={"id": "objID"})
    truth["log1p_delta_map"] = -j["z1"]
    truth["log1p_delta_true"] = -j["z1"]
    joined = j.drop(columns=[f"field_{m}" for m in MOMENT_NAMES])
    out = truth_recovery(joined, truth, n_latents=3)
    assert out["pass_anisotropy"] is True and out["pass_top_latent"] is True
    assert out["anisotropy"]["components"]["dipole_cos"]["best_latent"] == "z3"
    with pytest.raises(InputError, match="field_dipole_cos"):
        truth_recovery(joined, truth.drop(columns="field_dipole_cos"), n_latents=3)


# --------------------------------------------------------------------------- ranking
def test_latents_are_ranked_per_moment_and_the_count_is_a_separate_row():
    j = _joined()
    table = latents_vs_moments(j)
    assert len(table) == 4 * (4 + 1)
    dc = table[table["moment"] == "dipole_cos"].set_index("variable")
    assert dc.loc["z3", "rank"] == 1 and dc.loc["n_map", "rank"] == 0
    assert dc.loc["n_map", "latent"] == 0 and dc.loc["z3", "latent"] == 3
    assert sorted(dc.loc[["z1", "z2", "z3", "z4"], "rank"]) == [1, 2, 3, 4]
    best = moment_summary(table)
    assert best["dipole_cos"]["latent"] == "z3" and best["dipole_cos"]["rho"] > 0.7
    # z1 is left out of the pick: the best latent after it is named even if z1 is closer
    j2 = j.assign(z1=j["dipole_cos"], z2=j["dipole_cos"] + 0.01 * np.random.default_rng(1)
                  .normal(size=len(j)))
    assert moment_summary(latents_vs_moments(j2))["dipole_cos"]["latent"] == "z2"
    assert moment_summary(latents_vs_moments(j2), exclude_top=False)["dipole_cos"]["latent"] == "z1"
    with pytest.raises(InputError, match="quad_sin"):
        latents_vs_moments(j.drop(columns="quad_sin"))


def test_moment_frame_keeps_ids():
    f = moment_frame([7, 9], np.arange(8.0).reshape(2, 4))
    assert list(f.columns) == ["id", *MOMENT_NAMES] and f["id"].tolist() == [7, 9]


# --------------------------------------------------------------------------- real DR7 maps
#: Real targets drawn from the shared DR7 volume-limited sample (inside the footprint).
N_REAL = 3000


@pytest.mark.archive
def test_moments_of_real_dr7_maps_and_the_ranking_on_them(dr7_vollim):
    """On 3,000 real DR7 targets (~10 s): the maps' moments are finite (a map with a
    neighbour in its disc) and within [-1, 1], and, with no preferred direction on the sky,
    each is centred on 0: measured |mean| <= 0.014 with spread 0.31-0.33 and 49-53 % positive
    over two draws (a standard error of ~0.006, but overlapping maps are not independent),
    so the bounds are |mean| < 0.03 and 45-55 % positive. The map count is blind to them:
    |rho| <= 0.054 measured, bound 0.1. The ranking runs on the real maps with a stand-in
    encoder whose latents are known: z1 the log count, z2 and z7 random projections, z3/z4
    the count-weighted centroid (x, y) of the whole square and z5/z6 the r^2-weighted
    quadrupole of it, each a different weighting of the same orientation (measured |rho|
    0.72-0.83 with the moments); each moment must rank its own latent first."""
    from astropy.table import Table

    from galforge.cosmology import Cosmology
    from galforge.environment import figures as F
    from galforge.environment.footprint import FootprintSettings, build_footprint, select_targets
    from galforge.environment.maps import MapSettings, compute_maps

    cosmo = Cosmology(0.3)
    t = Table.read(dr7_vollim)
    ra, dec, z = (np.asarray(t[c], dtype=np.float64) for c in ("ra", "dec", "z"))
    fp = build_footprint(FootprintSettings(), ra, dec)
    ok, _ = select_targets(ra, dec, z, fp, MapSettings(), cosmo, zmin=0.02, zmax=0.107)
    rows = np.sort(np.random.default_rng(11).choice(np.flatnonzero(ok), N_REAL, replace=False))
    maps = np.concatenate([m for _, m in compute_maps(ra, dec, z, targets=rows,
                                                      cosmology=cosmo, progress=False)])
    mom = map_moments(maps)
    has = np.isfinite(mom).all(axis=1)
    assert has.mean() > 0.98  # a few isolated targets have no neighbour in the disc
    m = mom[has]
    assert (np.abs(m) <= 1).all()
    assert (np.abs(m.mean(axis=0)) < 0.03).all(), m.mean(axis=0)
    assert ((m > 0).mean(axis=0) > 0.45).all() and ((m > 0).mean(axis=0) < 0.55).all()
    assert (m.std(axis=0) > 0.2).all()  # real maps are anisotropic

    flat = maps.reshape(len(maps), -1).astype(float)
    count = flat.sum(axis=1)
    x, y = X.ravel(), Y.ravel()
    w = np.random.default_rng(0).normal(size=(2, flat.shape[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        lat = {"z1": np.log1p(count), "z2": flat @ w[0], "z3": flat @ x / count,
               "z4": flat @ y / count, "z5": flat @ (x * x - y * y) / (flat @ (x * x + y * y)),
               "z6": flat @ (2 * x * y) / (flat @ (x * x + y * y)), "z7": flat @ w[1]}
    joined = pd.DataFrame({**lat, "n_map": count, "id": np.arange(len(flat))})
    joined = joined.merge(moment_frame(joined["id"], mom), on="id")
    table = latents_vs_moments(joined)
    first = table[table["rank"] == 1].set_index("moment")
    assert first["variable"].to_dict() == {"dipole_cos": "z3", "dipole_sin": "z4",
                                           "quad_cos": "z5", "quad_sin": "z6"}
    assert (first["abs_rho"] >= 0.6).all(), first
    count_rho = table[table["variable"] == "n_map"]["abs_rho"]
    assert (count_rho < 0.1).all(), count_rho
    best = moment_summary(table)
    panels = [F.MomentPanel(k, joined[k], joined[b["latent"]], b["latent"], b["rho"],
                            b["rho_n_map"]) for k, b in best.items()]
    fig = F.fig_latents_vs_moments(table, panels)
    assert len(fig.axes) == 7
