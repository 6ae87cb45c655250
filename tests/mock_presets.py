"""The mock scale presets (``tiny``/``demo``/``paper``) the tests build mock settings from.

They are each study's ``PRESETS[scale]["mock"]`` (``galforge.<study>.presets``).
"""

from __future__ import annotations

from galforge.edf.presets import PRESETS as _EDF
from galforge.environment.presets import PRESETS as _ENVIRONMENT
from galforge.spectra.presets import PRESETS as _SPECTRA

#: scale -> overrides of :class:`galforge.mock.settings.MockEnvironmentSettings`.
ENVIRONMENT_MOCK = {scale: dict(p["mock"]) for scale, p in _ENVIRONMENT.items()}
#: scale -> overrides of :class:`galforge.mock.settings.MockSpectraSettings`.
SPECTRA_MOCK = {scale: dict(p["mock"]) for scale, p in _SPECTRA.items()}
#: scale -> overrides of :class:`galforge.mock.edf_settings.MockEdfSettings`.
EDF_MOCK = {scale: dict(p["mock"]) for scale, p in _EDF.items()}
