"""The SDSS ``spPixMask`` bit table (the archive's definition; no imports at all).

Bits 0-15 are per fibre, 16-31 per pixel (idlutils ``sdssMaskbits.par``). Used by
:mod:`galforge.spectra.readers`, :mod:`galforge.spectra.preprocess` and the mock
spectra (:mod:`galforge.mock.spectra`). Reference:
https://www.sdss.org/dr17/algorithms/bitmasks/#SPPIXMASK.
"""

from __future__ import annotations

__all__ = ["PIXMASK_BITS"]

#: SDSS ``spPixMask`` bits (bit number) of ``and_mask``, for downstream masking.
#: ``EMLINE`` marks emission lines and is not a defect.
PIXMASK_BITS: dict[str, int] = {
    "NOPLUG": 0,
    "BADTRACE": 1,
    "BADFLAT": 2,
    "BADARC": 3,
    "MANYBADCOLUMNS": 4,
    "MANYREJECTED": 5,
    "LARGESHIFT": 6,
    "BADSKYFIBER": 7,
    "NEARWHOPPER": 8,
    "WHOPPER": 9,
    "SMEARIMAGE": 10,
    "SMEARHIGHSN": 11,
    "SMEARMEDSN": 12,
    "NEARBADPIXEL": 16,
    "LOWFLAT": 17,
    "FULLREJECT": 18,
    "PARTIALREJECT": 19,
    "SCATTEREDLIGHT": 20,
    "CROSSTALK": 21,
    "NOSKY": 22,
    "BRIGHTSKY": 23,
    "NODATA": 24,
    "COMBINEREJ": 25,
    "BADFLUXFACTOR": 26,
    "BADSKYCHI": 27,
    "REDMONSTER": 28,
    "EMLINE": 30,
}
