"""GalacticFlow's cleaning, the rotation into the x-y plane and the conditions."""

from __future__ import annotations

import numpy as np
import pytest

from galforge.archives.zenodo import NIHAO_COLUMNS
from galforge.edf.clean import CUTS, angular_momentum, clean_galaxy, conditions_of, rotation_to_z
from galforge.edf.settings import CleanSettings
from galforge.mock.edf import draw_galaxy, galaxy_truths
from galforge.mock.edf_settings import MockEdfSettings

COL = {c: i for i, c in enumerate(NIHAO_COLUMNS)}


def _ball(n: int, radius: float, seed: int = 0) -> np.ndarray:
    """(n, 11) particles at radii uniform in [0, radius], clean chemistry."""
    rng = np.random.default_rng(seed)
    s = np.zeros((n, len(NIHAO_COLUMNS)))
    d = rng.normal(size=(n, 3))
    s[:, 0:3] = d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(0, radius, n)[:, None]
    s[:, 3:6] = rng.normal(0, 50, (n, 3))
    s[:, COL["Z"]] = rng.uniform(0.001, 0.02, n)
    s[:, COL["feh"]] = rng.uniform(-1, 0.3, n)
    s[:, COL["ofe"]] = rng.uniform(0, 0.3, n)
    s[:, COL["mass"]] = 1e5
    s[:, COL["age"]] = rng.uniform(0, 13, n)
    return s


def test_the_radius_cut_is_the_95th_percentile_below_the_cap():
    s = _ball(10_000, 10.0)
    c = clean_galaxy(s, CleanSettings(drop_top_z=0))
    r = np.linalg.norm(s[:, :3], axis=1)
    assert not c.cap_applied and c.r_cut == pytest.approx(np.percentile(r, 95))
    assert c.removed["radius"] == int((r > c.r_cut).sum()) == pytest.approx(500, abs=1)
    assert np.linalg.norm(c.stars[:, :3], axis=1).max() <= c.r_cut + 1e-9


def test_the_cap_applies_then_a_second_percentile_cut():
    s = np.concatenate([_ball(9_000, 10.0), _ball(1_000, 200.0, seed=1)])  # a far structure
    c = clean_galaxy(s, CleanSettings(drop_top_z=0))
    r = np.linalg.norm(s[:, :3], axis=1)
    assert np.percentile(r, 95) > 27.7 and c.cap_applied
    inner = r[r <= 27.7]
    assert c.r_cut == pytest.approx(np.percentile(inner, 95))
    assert len(c.stars) == int((r <= c.r_cut).sum())


def test_each_cut_counts_what_it_removes_in_the_seed_order():
    s = _ball(2_000, 5.0)
    s[:5, COL["Z"]] = 1.0  # among the 10 highest Z
    s[100:103, COL["feh"]] = -9.0
    s[103, COL["feh"]] = -np.inf
    s[104:110, COL["ofe"]] = -1.5
    s[100, COL["ofe"]] = -2.0  # removed by the [Fe/H] cut first
    s[110, COL["Z"]] = 0.0
    s[110, COL["feh"]] = 0.0
    c = clean_galaxy(s, CleanSettings(radius_quantile=1.0))
    assert c.removed == {"radius": 0, "top_z": 10, "feh": 4, "ofe": 6, "z_nonpositive": 1}
    assert len(c.stars) == 2_000 - 21 and set(c.removed) == set(CUTS)
    assert (c.stars[:, COL["feh"]] >= -8).all() and (c.stars[:, COL["ofe"]] >= -1).all()


def test_small_galaxies_are_dropped():
    c = clean_galaxy(_ball(520, 5.0), CleanSettings())
    assert not c.kept and len(c.stars) < 500 and not c.conditions
    assert clean_galaxy(_ball(600, 5.0), CleanSettings()).kept


def test_the_conditions_are_the_seeds():
    s = _ball(1_000, 5.0)
    c = conditions_of(s)
    assert c["mstar"] == pytest.approx(1e8)
    assert c["tau50"] == pytest.approx(np.median(s[:, COL["age"]]))
    assert c["tau10"] == pytest.approx(np.percentile(s[:, COL["age"]], 10))
    assert c["mean_z"] == pytest.approx(s[:, COL["Z"]].mean())


@pytest.mark.parametrize("axis", [(0, 0, 1), (0, 0, -1), (1, 2, 3), (0.3, -0.9, 0.1)])
def test_rotation_to_z_turns_the_vector_onto_z(axis):
    rot = rotation_to_z(np.array(axis, dtype=float))
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    v = rot @ (np.array(axis) / np.linalg.norm(axis))
    np.testing.assert_allclose(v, [0, 0, 1], atol=1e-12)


def test_a_mock_disk_at_a_known_inclination_is_recovered_within_one_degree():
    s = MockEdfSettings(n_galaxies=12, n_stars_min=3000, n_stars_max=6000, n_sparse=0,
                        log_mdm_min=10.8, log_mdm_max=12.3)
    errors = []
    for g in galaxy_truths(s, 11):
        c = clean_galaxy(draw_galaxy(g, 11).T, CleanSettings())
        assert c.kept
        # the rotation turns the planted spin axis onto +z ...
        turned = c.rotation @ np.asarray(g.spin_axis)
        errors.append(np.degrees(np.arccos(np.clip(turned[2], -1, 1))))
        # ... and the disk then spins counter-clockwise in the x-y plane
        assert angular_momentum(c.stars, 0.5)[2] > 0
    assert max(errors) < 1.0, errors
    incl = [g.inclination_deg for g in galaxy_truths(s, 11)]
    assert max(incl) - min(incl) > 60  # the test covers a range of inclinations
