"""The NIHAO-like mock: the archive's layout and naming, planted truth, fresh draws."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galforge.archives.zenodo import NIHAO_COLUMNS, npy_name, parse_npy_name
from galforge.mock.edf import draw_galaxy, galaxy_truths, read_truth, write_edf_mock
from galforge.mock.edf_settings import MockEdfSettings
from galforge.settings import SettingsError

SMALL = MockEdfSettings(n_galaxies=5, n_stars_min=800, n_stars_max=1600, n_sparse=1,
                        sparse_stars=120, log_mdm_min=10.8, log_mdm_max=12.3)


def test_names_round_trip_and_bad_names_are_refused():
    name = npy_name("g", 66, 8.26e11)
    assert name == "g_66_8.2600e+11.npy"
    assert parse_npy_name(name) == ("g", "66", 8.26e11)
    assert parse_npy_name("my_sim_12_1e10.npy") == ("my_sim", "12", 1e10)
    for bad in ("g_66.npy", "g_66_heavy.npy", "g_66_-1e11.npy", "g_66_1e11.txt"):
        with pytest.raises(ValueError, match="g_66"):
            parse_npy_name(bad)


def test_the_mock_writes_the_archive_layout_and_its_truth(tmp_path):
    summary = write_edf_mock(SMALL, seed=7, folder=tmp_path / "g", truth_path=tmp_path / "t.json")
    files = sorted((tmp_path / "g").glob("*.npy"))
    assert len(files) == summary["galaxies"] == 6
    seed, truths = read_truth(tmp_path / "t.json")
    assert seed == 7 and {g.file for g in truths} == {f.name for f in files}
    for g in truths:
        arr = np.load(tmp_path / "g" / g.file)
        prefix, gid, m_dm = parse_npy_name(g.file)
        assert prefix == "mock" and gid == g.galaxy_id
        assert m_dm == pytest.approx(10**g.log_mdm, rel=1e-4)
        assert arr.shape == (len(NIHAO_COLUMNS), g.n_stars)
        assert np.isfinite(arr).all() and (arr[9] > 0).all() and (arr[10] >= 0).all()
        assert (arr[10] <= 13.5).all() and (arr[6] > 0).all()
        # the planted stellar mass is the sum of the particle masses, to the mass loss
        assert np.log10(arr[9].sum()) == pytest.approx(g.log_mstar, abs=0.15)
    # the ids are not in the order of the masses (the reader must sort by id)
    order_by_id = np.argsort([int(g.galaxy_id) for g in truths[:5]])
    assert list(order_by_id) != list(np.argsort([g.log_mdm for g in truths[:5]]))
    assert json.loads((tmp_path / "t.json").read_text())["settings"]["n_galaxies"] == 5


def test_same_seed_same_bytes_other_seed_other_galaxies(tmp_path):
    for k in ("a", "b"):
        write_edf_mock(SMALL, seed=3, folder=tmp_path / k, truth_path=tmp_path / f"{k}.json")
    for f in (tmp_path / "a").glob("*.npy"):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
    other = galaxy_truths(SMALL, 4)
    assert [g.log_mdm for g in other] != [g.log_mdm for g in galaxy_truths(SMALL, 3)]


def test_the_planted_relations_hold():
    s = MockEdfSettings(n_galaxies=40, n_stars_min=3000, n_stars_max=3000, n_sparse=0)
    truths = galaxy_truths(s, 1)
    lm = np.array([g.log_mdm for g in truths])
    tf = np.array([g.t_form for g in truths])
    assert lm.min() >= s.log_mdm_min and lm.max() <= s.log_mdm_max
    # Latin hypercube: one galaxy per stratum of each parameter
    assert sorted(np.floor((lm - s.log_mdm_min) / (s.log_mdm_max - s.log_mdm_min) * 40)) \
        == list(range(40))
    med_age = np.array([np.median(draw_galaxy(g, 1)[10]) for g in truths])
    # the median age follows the formation time, the stellar mass the halo mass
    assert np.corrcoef(tf, med_age)[0, 1] > 0.9
    log_ms = np.array([np.log10(draw_galaxy(g, 1)[9].sum()) for g in truths])
    assert np.corrcoef(lm, log_ms)[0, 1] > 0.99
    for g in truths:
        assert sum(g.fractions.values()) == pytest.approx(1.0)
        assert 0.0 <= g.inclination_deg <= 180.0


def test_fresh_draws_are_independent_samples_of_the_same_galaxy():
    g = galaxy_truths(SMALL, 5)[2]
    a, b, c = (draw_galaxy(g, 5, draw=d, n=20_000) for d in (0, 1, 2))
    assert not np.array_equal(a, b) and not np.array_equal(b, c)
    for j in range(len(NIHAO_COLUMNS)):
        for other in (b, c):
            # medians of 20k draws agree to a few standard errors (robust to the outliers)
            se = 1.2533 * np.std(a[j]) / np.sqrt(len(a[j]))
            assert abs(np.median(a[j]) - np.median(other[j])) < 8 * se + 1e-9


def test_bad_mock_settings_name_the_key():
    with pytest.raises(SettingsError, match="log_mdm_max"):
        MockEdfSettings(log_mdm_min=12.0, log_mdm_max=11.0)
    with pytest.raises(SettingsError, match="prefix"):
        MockEdfSettings(prefix="a_b")


@pytest.mark.parametrize("scale", ["tiny", "demo", "paper"])
def test_every_scale_preset_builds_a_mock(scale):
    from mock_presets import EDF_MOCK

    s = MockEdfSettings.from_dict(EDF_MOCK[scale])
    truths = galaxy_truths(s, 0)
    assert len(truths) == s.n_galaxies + s.n_sparse
    assert len({g.galaxy_id for g in truths}) == len(truths)
    assert len({g.file for g in truths}) == len(truths)
