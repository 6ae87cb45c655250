"""Planted truth at demo scale (seed 42): the mock's measured shapes give a w_g+ within 1σ
(jackknife) of the planted expectation in at least 80 % of the r_p bins."""

import json

import numpy as np
import pytest

from galforge.alignment import steps
from galforge.alignment.presets import PRESETS
from galforge.alignment.settings import AlignmentSettings
from galforge.mock.tng import write_mock_tng


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("al-demo")
    mock = write_mock_tng(root / "TNG100-1", "demo", seed=42)
    # the tidal mesh does not enter w_g+: a coarse one keeps the test short
    s = AlignmentSettings.from_dict({**PRESETS["demo"], "tidal": {"mesh": 32}})
    steps.catalog(mock.base_path, root / "catalog.h5", root / "catalog.json",
                  catalog=s.catalog, shapes=s.shapes, tidal=s.tidal, progress=False)
    return root, mock, s


def test_measured_wgp_recovers_the_planted_expectation(demo):
    """Measured on seed 42: 8 of 8 bins within 1σ (890 shapes, 3027 density galaxies)."""
    root, mock, s = demo
    rep = steps.stats(root / "catalog.h5", root / "wgp.csv", root / "ed_ee.csv",
                      root / "mis.csv", root / "stats.json", settings=s.stats,
                      truth=mock.truth_path, truth_out=root / "truth_recovery.json")
    t = json.loads((root / "truth_recovery.json").read_text())
    assert t == rep["truth"]
    assert t["wgp_fraction_within_1sigma"] >= 0.8 and t["pass_wgp_mock"]
    # satellites were planted pointing at their central: the measured shapes keep it
    assert rep["misalignment_mean_cos2"]["angle_radial_satellites_mean_cos2"] > 0.4


def test_randomly_oriented_galaxies_fail_the_model_checks(demo):
    """The generated-catalog checks (w_g+ within 2σ in ≥ 70 % of bins, satellites' cos² to
    their central within 0.02, axis-ratio KS p > 0.01): the simulation's own shapes pass
    them; the same galaxies randomly oriented fail the alignment ones (their own q, s
    keep the KS check)."""
    from galforge.alignment.catalog import read_catalog
    from galforge.alignment.evaluate import model_checks, random_catalog

    root, _, s = demo
    cols, attrs = read_catalog(root / "catalog.h5")
    ok = np.isfinite(cols["e1"])
    own = {"subhalo_id": cols["subhalo_id"][ok], "frame": cols["star_axes_simple"][ok],
           "q": cols["star_q_simple"][ok], "s": cols["star_s_simple"][ok],
           "e1": cols["e1"][ok], "e2": cols["e2"][ok]}
    assert model_checks(cols, attrs, own, s.stats)["pass"]
    rand = model_checks(cols, attrs, random_catalog(cols, attrs, seed=5), s.stats)
    assert rand["pass_axis_ratios"] and not rand["pass_cos2_satellites"]
    assert not rand["pass"]
    # a model's w_g+ is the mean over its draws (here the simulation's shapes twice and a
    # random orientation)
    r = random_catalog(cols, attrs, seed=6, draws=2)
    mixed = own | {"e1_draws": np.stack([own["e1"], own["e1"], r["e1_draws"][1]]),
                   "e2_draws": np.stack([own["e2"], own["e2"], r["e2_draws"][1]])}
    m = model_checks(cols, attrs, mixed, s.stats)
    assert m["wgp_model_draws"] == 3 and r["e1_draws"].shape == (2, len(r["e1"]))
    sim, mod = np.array(m["wgp_simulation"]), np.array(m["wgp_model"])
    scatter = np.array(m["wgp_model_draw_scatter"])
    x = 3 * mod - 2 * sim  # the random draw's w_g+
    np.testing.assert_allclose(scatter, np.sqrt(2) / 3 * np.abs(sim - x), rtol=1e-6, atol=1e-9)
