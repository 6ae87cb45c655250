"""The mock scale presets (``tiny``/``demo``/``paper``) the tests build settings from.

The presets belong to each study's ``presets`` module (``PRESETS[scale]["mock"]``);
until those modules exist, the overrides below (the former ``PRESETS`` of
``galforge.mock.environment`` and ``galforge.mock.spectra``) stand in for them.
"""

from __future__ import annotations

from typing import Any

_ENVIRONMENT_FALLBACK: dict[str, dict[str, Any]] = {
    "tiny": {"ra_min": 150.0, "ra_max": 165.0, "dec_min": 0.0, "dec_max": 8.0, "cell_size": 2.0},
    "demo": {"ra_min": 140.0, "ra_max": 170.0, "dec_min": 0.0, "dec_max": 24.0, "cell_size": 1.0},
    "paper": {"ra_min": 125.0, "ra_max": 240.0, "dec_min": 0.0, "dec_max": 43.0, "cell_size": 1.0},
}
_SPECTRA_FALLBACK: dict[str, dict[str, Any]] = {
    "tiny": {"n_spectra": 200, "fibers_per_plate": 50},
    "demo": {"n_spectra": 3000},
    "paper": {"n_spectra": 30000},
}


def _mock_presets(module: str, fallback: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    try:
        presets = __import__(module, fromlist=["PRESETS"]).PRESETS
    except ImportError:
        return fallback
    return {scale: dict(p["mock"]) for scale, p in presets.items()}


#: scale -> overrides of :class:`galforge.mock.settings.MockEnvironmentSettings`.
ENVIRONMENT_MOCK = _mock_presets("galforge.environment.presets", _ENVIRONMENT_FALLBACK)
#: scale -> overrides of :class:`galforge.mock.settings.MockSpectraSettings`.
SPECTRA_MOCK = _mock_presets("galforge.spectra.presets", _SPECTRA_FALLBACK)
