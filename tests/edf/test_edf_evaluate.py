"""MMDs and the held-out checks: they pass for a sampler that is the truth, and fail for one
given the wrong conditions or one that ignores them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from galforge.edf import steps
from galforge.edf.clean import clean_galaxy
from galforge.edf.evaluate import (
    Instance,
    evaluate_instances,
    inclination_errors,
    load_truth,
    read_samples,
    write_samples,
)
from galforge.edf.mmd import kernel_mmd, linear_mmd, median_bandwidth
from galforge.edf.settings import CleanSettings, EvalSettings
from galforge.edf.table import read_edf_table
from galforge.edf.training import features_of
from galforge.mock.edf import draw_galaxy
from galforge.mock.edf_settings import MockEdfSettings

MOCK = MockEdfSettings(n_galaxies=16, n_stars_min=900, n_stars_max=2500, n_sparse=0,
                       log_mdm_min=10.8, log_mdm_max=12.3)
EVAL = EvalSettings(n_stars=600, repeats=2, table_stars=200, figure_stars=300)
CLEAN = CleanSettings()


def test_mmds_of_same_and_shifted_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 3)), rng.normal(size=(800, 3))
    c = a + np.array([0.5, 0.0, 0.0])
    assert linear_mmd(a, c) == pytest.approx(0.25)
    h = median_bandwidth(a)
    # |x - y|² / 2 is chi² with 3 degrees of freedom for unit normals
    assert h == pytest.approx(np.sqrt(2 * chi2.median(3)), rel=0.03)
    assert kernel_mmd(a, a, h) == pytest.approx(0.0, abs=1e-12)
    same, shifted = kernel_mmd(a, b, h), kernel_mmd(a, c, h)
    assert 0 < same < shifted / 5
    # the V-statistic's noise floor is about 2 (1 - E k(x, x')) / n
    with pytest.raises(ValueError, match="zero bandwidth"):
        median_bandwidth(np.zeros((5, 2)))


@pytest.fixture(scope="module")
def mock_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("edf_eval")
    steps.mock(root / "g", root / "truth.json", settings=MOCK, seed=21)
    steps.table(root / "g", root / "edf.h5", root / "i.csv", root / "r.json", clean=CLEAN,
                progress=False)
    return read_edf_table(root / "edf.h5"), load_truth(root / "truth.json")


def _oracle(table, truth, draw_from: int = 100):
    """A 'perfect flow': at a galaxy's conditions it draws that mock galaxy afresh."""
    cond = table.conditions()
    ids = table.galaxies["galaxy_id"].astype(str).tolist()
    counter = iter(range(draw_from, 10**6))

    def sample(n, c, s):
        i = int(np.argmin(np.abs(np.log10(cond[:, 0]) - np.log10(c[0]))
                          + np.abs(cond[:, 1] - c[1])))
        stars = features_of(clean_galaxy(draw_galaxy(truth["by_id"][ids[i]], truth["seed"],
                                                     draw=next(counter)).T, CLEAN).stars)
        return stars[np.random.default_rng(s).choice(len(stars), n, replace=len(stars) < n)]

    return sample


def _instances(table, sample, heldout=(1, 4, 7, 10, 13)):
    train = np.setdiff1d(np.arange(table.n_galaxies), heldout)
    return [Instance(sample, "cv00", int(i), train) for i in heldout]


def test_a_sampler_that_is_the_truth_passes_every_check(mock_table):
    table, truth = mock_table
    res = evaluate_instances(table, _instances(table, _oracle(table, truth)), settings=EVAL,
                             clean=CLEAN, seed=1, truth=truth, source="mock", n_models=1,
                             progress=False)
    held, checks = res.heldout, res.checks
    assert len(held) == 5 and (held["n"] <= EVAL.n_stars).all() and (held["repeats"] == 2).all()
    # the truth sits at the noise floor, and beats the nearest neighbour in log M*
    assert held["ratio_to_floor"].max() < 2.0, held
    assert checks["fraction_within_floor"] == 1.0 and checks["pass_heldout"], checks
    assert checks["pass_mmd_rises_with_dlogm"] and checks["pass_inclination"]
    assert all(isinstance(v, bool) for k, v in checks.items() if k.startswith("pass_"))
    # the MMD table: every held-out galaxy against every data galaxy, and data vs data
    model_rows = res.mmd_table[res.mmd_table["kind"] == "model"]
    assert len(model_rows) == 5 * table.n_galaxies
    assert (res.mmd_table["kind"] == "data").sum() == table.n_galaxies * (table.n_galaxies - 1)
    self_rows = model_rows[model_rows["galaxy_id"] == model_rows["other_id"]]
    assert (self_rows["mmd_kernel"].to_numpy()
            < model_rows.groupby("galaxy_id")["mmd_kernel"].median().loc[
                self_rows["galaxy_id"]].to_numpy()).all()
    assert set(res.samples) == {f"cv00/{g}" for g in held["galaxy_id"]}


def test_a_sampler_given_wrong_conditions_fails(mock_table):
    table, truth = mock_table
    wrong = table.conditions()[np.roll(np.arange(table.n_galaxies), 5)]
    res = evaluate_instances(table, _instances(table, _oracle(table, truth)), settings=EVAL,
                             clean=CLEAN, seed=1, truth=truth, source="mock", n_models=1,
                             conditions=wrong, progress=False)
    assert res.checks["fraction_within_floor"] <= 0.2 and not res.checks["pass_heldout"]
    assert res.heldout["ratio_to_floor"].median() > 5


def test_a_sampler_that_ignores_the_conditions_fails(mock_table):
    table, truth = mock_table
    oracle = _oracle(table, truth)
    mid = table.conditions()[table.n_galaxies // 2]

    def average_galaxy(n, c, s):
        return oracle(n, mid, s)

    res = evaluate_instances(table, _instances(table, average_galaxy), settings=EVAL,
                             clean=CLEAN, seed=1, truth=truth, source="mock", n_models=1,
                             progress=False)
    assert not res.checks["pass_heldout"]
    assert not res.checks["pass_mmd_rises_with_dlogm"]


def test_without_a_truth_the_floor_comes_from_halves(mock_table):
    table, truth = mock_table
    res = evaluate_instances(table, _instances(table, _oracle(table, truth), (2, 9)),
                             settings=EVAL, clean=CLEAN, seed=1, truth=None, source="file",
                             n_models=1, progress=False)
    assert "halves" in res.checks["floor"] and "pass_inclination" not in res.checks
    n_stars = table.galaxies["n_stars"].to_numpy()
    assert (res.heldout["n"] <= np.minimum(EVAL.n_stars, n_stars[[2, 9]] // 2)).all()


def test_inclination_errors_and_samples_round_trip(mock_table, tmp_path):
    table, truth = mock_table
    err = inclination_errors(table, truth)
    assert set(err) == set(table.galaxies["galaxy_id"]) and max(err.values()) < 1.0
    samples = {"cv00/3": np.ones((4, 10), np.float32), "cv01/17": np.zeros((2, 10), np.float32)}
    write_samples(samples, tmp_path / "s.h5")
    back = read_samples(tmp_path / "s.h5")
    assert set(back) == set(samples) and np.array_equal(back["cv00/3"], samples["cv00/3"])
