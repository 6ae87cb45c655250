"""The NIHAO star-particle release of GalacticFlow (Wolf & Buck) on Zenodo, and its layout.

Record 10.5281/zenodo.8389554 holds one NumPy file per NIHAO galaxy: an array of
shape (11, N) whose rows are, for each of the N star particles, :data:`NIHAO_COLUMNS`
(:data:`NIHAO_UNITS`), named ``<prefix>_<NIHAO id>_<M_dm in M_sun>.npy``
(:func:`npy_name`, :func:`parse_npy_name`). The mock
(:mod:`galforge.mock.edf`) writes exactly this layout, and a folder of your own in
it runs through the same reader (:mod:`galforge.edf.readers`).

This module imports only the standard library (the layout is read by the
configuration checker's neighbours and by the mock).
"""

from __future__ import annotations

import math
import re

__all__ = [
    "NIHAO_COLUMNS",
    "NIHAO_UNITS",
    "ZENODO_RECORD",
    "npy_name",
    "parse_npy_name",
]

#: The authors' record (a concept record resolves to its latest version).
ZENODO_RECORD = "8389554"

#: Rows of a galaxy's (11, N) array, in order.
NIHAO_COLUMNS: tuple[str, ...] = ("x", "y", "z", "vx", "vy", "vz", "Z", "feh", "ofe", "mass",
                                  "age")
#: Units of :data:`NIHAO_COLUMNS` (Z is the metal mass fraction; [Fe/H], [O/Fe] in dex).
NIHAO_UNITS: dict[str, str] = {
    "x": "kpc", "y": "kpc", "z": "kpc", "vx": "km/s", "vy": "km/s", "vz": "km/s",
    "Z": "mass fraction", "feh": "dex", "ofe": "dex", "mass": "M_sun", "age": "Gyr",
}

_NAME = re.compile(r"^(?P<prefix>.+)_(?P<id>[^_]+)_(?P<mdm>[^_]+)\.npy$")


def npy_name(prefix: str, galaxy_id: str | int, m_dm: float) -> str:
    """``<prefix>_<id>_<M_dm>.npy`` (M_dm written as ``%.4e``, e.g. ``8.2600e+11``)."""
    gid = str(galaxy_id)
    if not prefix or "/" in prefix or not gid or "_" in gid or "/" in gid:
        raise ValueError(f"bad prefix {prefix!r} or galaxy id {gid!r} for a file name")
    if not (math.isfinite(m_dm) and m_dm > 0):
        raise ValueError(f"M_dm must be a positive number, got {m_dm!r}")
    return f"{prefix}_{gid}_{m_dm:.4e}.npy"


def parse_npy_name(name: str) -> tuple[str, str, float]:
    """``(prefix, id, M_dm)`` of a file name in the layout.

    Raises
    ------
    ValueError
        When the name is not ``<prefix>_<id>_<M_dm>.npy`` with a positive, finite M_dm.
    """
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not named <prefix>_<id>_<M_dm>.npy")
    try:
        m_dm = float(m["mdm"])
    except ValueError:
        raise ValueError(f"{name!r}: M_dm {m['mdm']!r} is not a number") from None
    if not (math.isfinite(m_dm) and m_dm > 0):
        raise ValueError(f"{name!r}: M_dm {m['mdm']!r} must be positive")
    return m["prefix"], m["id"], m_dm
