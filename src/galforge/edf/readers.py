"""Read star particles: a folder of ``.npy`` files in the archive's layout, or one table.

* **Folder** (the authors' Zenodo files, the mock, or yours): every ``*.npy`` file named
  ``<prefix>_<id>_<M_dm>.npy`` (:func:`galforge.archives.zenodo.parse_npy_name`) holding
  an (11, N) array of :data:`~galforge.archives.zenodo.NIHAO_COLUMNS`.
* **Table** (``.parquet``, ``.csv``): one row per star with those 11 columns and a galaxy
  column (``source.galaxy_column``), optionally a column of M_dm
  (``source.m_dm_column``, constant within a galaxy).

Galaxies are ordered by their id: numerically when every id is an integer, otherwise
as text. (GalacticFlow took the galaxies in the order ``glob`` listed the files, which
depends on the file system; a sorted order makes the index <-> id table, and so the
cross-validation draws, reproducible.)

Checks (an :class:`~galforge.io.InputError` names the file, the column and the first bad
star): the array shape, finite values (``[Fe/H]`` and ``[O/Fe]`` may be ``-inf``,
metal-free particles the cleaning removes), non-negative masses and Z, distinct ids.
Ages are not checked for sign: a galaxy sampled from the flow, which learns the age
linearly as the seed did, may hold a few slightly negative ones and still reads back.
Arrays are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galforge.archives.zenodo import NIHAO_COLUMNS, parse_npy_name
from galforge.io import InputError

__all__ = ["RawGalaxy", "galaxy_order", "read_galaxies", "read_npy_folder", "read_table"]

#: Columns that may hold -inf (metal-free particles).
_MAY_BE_MINUS_INF = ("feh", "ofe")
_NONNEGATIVE = ("Z", "mass")


@dataclass
class RawGalaxy:
    """One galaxy as read: its id, M_dm [M_sun] (NaN when unknown), stars (N, 11), source."""

    galaxy_id: str
    m_dm: float
    stars: np.ndarray
    source: str


def galaxy_order(ids: list[str]) -> list[int]:
    """Indices that sort ``ids``: numerically when all are integers, else as text."""
    if all(i.lstrip("-").isdigit() for i in ids):
        return sorted(range(len(ids)), key=lambda k: int(ids[k]))
    return sorted(range(len(ids)), key=lambda k: ids[k])


def _check_values(stars: np.ndarray, where: str) -> None:
    for j, col in enumerate(NIHAO_COLUMNS):
        v = stars[:, j]
        bad = np.isnan(v) | (np.isposinf(v))
        if col not in _MAY_BE_MINUS_INF:
            bad |= np.isneginf(v)
        if col in _NONNEGATIVE:
            bad |= v < 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{where}: column {col!r} of star {i} is {float(v[i])!r} "
                             f"({int(bad.sum())} bad values in that column)")


def read_npy_folder(folder: str | Path) -> list[RawGalaxy]:
    """Every galaxy of a folder of ``.npy`` files, ordered by id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of .npy files")
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise InputError(f"{folder}: holds no .npy file")
    out = []
    for f in files:
        try:
            _, gid, m_dm = parse_npy_name(f.name)
        except ValueError as exc:
            raise InputError(f"{f}: {exc}") from None
        try:
            arr = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{f}: not a readable NumPy array ({exc})") from None
        if arr.ndim != 2 or arr.shape[0] != len(NIHAO_COLUMNS) or arr.shape[1] < 1:
            raise InputError(f"{f}: array of shape {arr.shape}; expected ({len(NIHAO_COLUMNS)}, "
                             f"N) with rows {', '.join(NIHAO_COLUMNS)}")
        if arr.dtype.kind not in "fiu":
            raise InputError(f"{f}: array of dtype {arr.dtype}; expected numbers")
        stars = np.ascontiguousarray(arr.T, dtype=np.float64)
        _check_values(stars, str(f))
        out.append(RawGalaxy(galaxy_id=gid, m_dm=m_dm, stars=stars, source=f.name))
    return _ordered(out, str(folder))


def read_table(path: str | Path, galaxy_column: str = "galaxy",
               m_dm_column: str | None = None) -> list[RawGalaxy]:
    """Every galaxy of one table of stars (Parquet or CSV), ordered by id."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif path.suffix.lower() == ".csv":
            df = pd.read_csv(path)
        else:
            raise InputError(f"{path}: a table must be .parquet or .csv")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable table ({exc})") from None
    need = [*NIHAO_COLUMNS, galaxy_column] + ([m_dm_column] if m_dm_column else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"{path}: column {missing[0]!r} missing (needs {', '.join(need)})")
    out = []
    for gid, rows in df.groupby(df[galaxy_column].astype(str), sort=False):
        where = f"{path} (galaxy {gid})"
        try:
            stars = rows[list(NIHAO_COLUMNS)].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: non-numeric star columns ({exc})") from None
        _check_values(stars, where)
        m_dm = float("nan")
        if m_dm_column:
            vals = np.unique(rows[m_dm_column].to_numpy(dtype=np.float64))
            if len(vals) != 1 or not (np.isfinite(vals[0]) and vals[0] > 0):
                raise InputError(f"{where}: column {m_dm_column!r} must hold one positive "
                                 f"value per galaxy, got {vals[:3]}")
            m_dm = float(vals[0])
        out.append(RawGalaxy(galaxy_id=str(gid), m_dm=m_dm, stars=stars, source=path.name))
    return _ordered(out, str(path))


def read_galaxies(path: str | Path, galaxy_column: str = "galaxy",
                  m_dm_column: str | None = None) -> list[RawGalaxy]:
    """A folder of ``.npy`` files or one table (by what ``path`` is)."""
    p = Path(path)
    if p.is_dir():
        return read_npy_folder(p)
    if not p.exists():
        raise InputError(f"{p}: no such folder or table")
    return read_table(p, galaxy_column, m_dm_column)


def _ordered(galaxies: list[RawGalaxy], where: str) -> list[RawGalaxy]:
    ids = [g.galaxy_id for g in galaxies]
    seen: dict[str, str] = {}
    for g in galaxies:
        if g.galaxy_id in seen:
            raise InputError(f"{where}: galaxy id {g.galaxy_id!r} appears twice ({seen[g.galaxy_id]}, "
                             f"{g.source})")
        seen[g.galaxy_id] = g.source
    return [galaxies[i] for i in galaxy_order(ids)]
