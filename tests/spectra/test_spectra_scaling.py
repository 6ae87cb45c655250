"""The per-pixel scaling of the spectra models (``spectra.model.pixel_scale``)."""

from __future__ import annotations

import numpy as np
import pytest

from galforge.spectra.settings import SpectraModelSettings
from galforge.spectra.training import SCALE_CAP, SCALE_FLOOR, _pixel_scaling


def spectra(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flux = rng.normal(1.0, 0.2, (50, 8)) * np.linspace(1, 3, 8)
    sigma = np.array([0.1, 0.1, 0.2, 0.05, 0.1, 0.1, 0.3, 0.1])
    weight = np.tile(1 / sigma**2, (50, 1)) * rng.uniform(0.5, 1.5, (50, 8))
    return flux, weight


def test_noise_scale_is_the_median_noise_of_each_pixel():
    flux, weight = spectra()
    weight[:20, 1] = 0.0  # masked in some spectra: only the others count
    mean, scale = _pixel_scaling(flux, weight, "noise")
    np.testing.assert_allclose(mean, flux.mean(axis=0))
    expected = 1 / np.sqrt(np.median(weight[20:, 1]))
    assert scale[1] == pytest.approx(expected)
    np.testing.assert_allclose(scale[[0, 2, 3]], 1 / np.sqrt(np.median(weight[:, [0, 2, 3]], axis=0)))
    assert scale[6] > scale[0] > scale[3]  # noisier pixels get larger scales


def test_an_unobserved_pixel_gets_the_cap_and_the_caps_hold():
    flux, weight = spectra()
    weight[:, 2] = 0.0  # never observed (infilled): the cap
    weight[:, 5] = 1e-6  # observed only at a tiny weight: capped
    _, scale = _pixel_scaling(flux, weight, "noise")
    seen = 1 / np.sqrt(np.median(weight[:, [0, 1, 3, 4, 5, 6, 7]], axis=0))
    cap = SCALE_CAP * np.median(seen)
    assert scale[2] == pytest.approx(cap) and scale[5] == pytest.approx(cap)
    assert (scale >= SCALE_FLOOR * np.median(scale)).all()


def test_spread_is_the_standard_deviation_and_unknown_modes_are_refused():
    flux, weight = spectra()
    _, scale = _pixel_scaling(flux, weight, "spread")
    np.testing.assert_allclose(scale, np.maximum(flux.std(axis=0), SCALE_FLOOR * np.median(flux.std(axis=0))))
    with pytest.raises(ValueError, match="pixel scale"):
        _pixel_scaling(flux, weight, "mad")


def test_the_setting_defaults_to_noise_and_is_not_an_architecture_argument():
    s = SpectraModelSettings()
    assert s.pixel_scale == "noise"
    assert "pixel_scale" not in s.model_kwargs()
    with pytest.raises(ValueError, match="pixel_scale"):
        SpectraModelSettings.from_dict({"pixel_scale": "mad"})
