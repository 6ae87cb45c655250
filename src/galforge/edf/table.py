"""The eDF table (one HDF5 file): every kept star with its galaxy, and every galaxy's row.

Layout of ``edf.h5`` (:func:`write_edf_table`, :func:`read_edf_table`):

``stars``
    (N, 11) float32, :data:`~galforge.archives.zenodo.NIHAO_COLUMNS` in order, after the
    cuts and the rotation into the x-y plane; the stars of galaxy ``i`` are the rows
    ``offset[i] : offset[i] + n_stars[i]``.
``galaxy``
    (N,) int32: each star's galaxy index.
``galaxies/<column>``
    One entry per kept galaxy, in index order (:data:`GALAXY_COLUMNS`): ``galaxy_id``,
    ``m_dm``, ``n_raw`` (particles read), ``n_stars`` (kept), ``offset``, the four
    conditions ``mstar``, ``tau50``, ``tau10``, ``mean_z`` (from the float64 stars),
    ``r_cut``, ``cap_applied``, ``removed_<cut>`` per cut and ``source`` (the file).
``galaxies/rotation``
    (G, 3, 3): the rotation applied to each galaxy.

Attributes record the columns, their units, the order of the galaxies and the cleaning
settings. :func:`write_index` writes the index <-> id table (``galaxies.csv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galforge.archives.zenodo import NIHAO_COLUMNS, NIHAO_UNITS
from galforge.edf.clean import CUTS, CleanedGalaxy
from galforge.edf.readers import RawGalaxy
from galforge.io import InputError, atomic_path

__all__ = ["CONDITION_COLUMNS", "GALAXY_COLUMNS", "EdfTable", "read_edf_table",
           "write_edf_table", "write_index"]

FORMAT = "galforge.edf.table/1"
#: The conditions, physical units (M_sun, Gyr, Gyr, mass fraction).
CONDITION_COLUMNS: tuple[str, ...] = ("mstar", "tau50", "tau10", "mean_z")
GALAXY_COLUMNS: tuple[str, ...] = (
    "galaxy_id", "m_dm", "n_raw", "n_stars", "offset", *CONDITION_COLUMNS, "r_cut",
    "cap_applied", *(f"removed_{c}" for c in CUTS), "source",
)
#: The order of the galaxies, as recorded in the file.
ORDER_NOTE = ("galaxies ordered by id (numerically when every id is an integer); "
              "GalacticFlow used the file system's glob order")


@dataclass
class EdfTable:
    """The contents of ``edf.h5``; ``stars`` is None when read without them."""

    path: Path
    galaxies: pd.DataFrame
    rotation: np.ndarray
    stars: np.ndarray | None
    galaxy: np.ndarray | None
    attrs: dict[str, Any]

    @property
    def n_galaxies(self) -> int:
        return len(self.galaxies)

    def stars_of(self, i: int) -> np.ndarray:
        """The (n, 11) stars of galaxy index ``i`` (a view)."""
        if self.stars is None:
            raise ValueError(f"{self.path} was read without its stars")
        row = self.galaxies.iloc[int(i)]
        o, n = int(row["offset"]), int(row["n_stars"])
        return self.stars[o:o + n]

    def conditions(self) -> np.ndarray:
        """(G, 4) physical conditions in :data:`CONDITION_COLUMNS` order (float64)."""
        return self.galaxies[list(CONDITION_COLUMNS)].to_numpy(dtype=np.float64)

    def index_of(self, galaxy_id: str) -> int:
        """The index of ``galaxy_id`` (KeyError naming the file when absent)."""
        hit = np.flatnonzero(self.galaxies["galaxy_id"].to_numpy() == str(galaxy_id))
        if not len(hit):
            raise KeyError(f"{self.path}: no galaxy {galaxy_id!r}")
        return int(hit[0])


def write_edf_table(path: str | Path, galaxies: Sequence[tuple[RawGalaxy, CleanedGalaxy]], *,
                    attrs: dict[str, Any] | None = None) -> pd.DataFrame:
    """Write the kept galaxies (``cleaned.kept``) of ``galaxies``, in the order given.

    Returns the galaxies' table (:data:`GALAXY_COLUMNS`).
    """
    import h5py

    kept = [(raw, c) for raw, c in galaxies if c.kept]
    if not kept:
        raise InputError("no galaxy is left after the cuts (see the cut report)")
    rows, offset = [], 0
    for raw, c in kept:
        n = len(c.stars)
        rows.append({"galaxy_id": raw.galaxy_id, "m_dm": raw.m_dm, "n_raw": c.n_raw,
                     "n_stars": n, "offset": offset, **c.conditions, "r_cut": c.r_cut,
                     "cap_applied": c.cap_applied,
                     **{f"removed_{k}": c.removed[k] for k in CUTS}, "source": raw.source})
        offset += n
    table = pd.DataFrame(rows, columns=list(GALAXY_COLUMNS))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        ds = h5.create_dataset("stars", shape=(offset, len(NIHAO_COLUMNS)), dtype="f4")
        for (_, c), o in zip(kept, table["offset"], strict=True):
            ds[o:o + len(c.stars)] = c.stars.astype(np.float32)
        h5.create_dataset("galaxy", data=np.repeat(np.arange(len(kept), dtype=np.int32),
                                                   table["n_stars"].to_numpy()))
        g = h5.create_group("galaxies")
        for col in GALAXY_COLUMNS:
            v = table[col].to_numpy()
            if col in ("galaxy_id", "source"):
                g.create_dataset(col, data=np.array([str(x) for x in v], dtype=object),
                                 dtype=h5py.string_dtype())
            else:
                g.create_dataset(col, data=v.astype(np.float64 if v.dtype.kind == "f" else
                                                    np.int64))
        g.create_dataset("rotation", data=np.stack([c.rotation for _, c in kept]))
        h5.attrs["format"] = FORMAT
        h5.attrs["columns"] = list(NIHAO_COLUMNS)
        h5.attrs["units"] = [NIHAO_UNITS[c] for c in NIHAO_COLUMNS]
        h5.attrs["order"] = ORDER_NOTE
        for k, v in (attrs or {}).items():
            h5.attrs[k] = v
    return table


def read_edf_table(path: str | Path, *, stars: bool = True) -> EdfTable:
    """Read ``edf.h5`` (InputError naming the file when it is not one)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise InputError(f"{path}: not a galforge eDF table (format "
                                 f"{h5.attrs.get('format')!r})")
            g = h5["galaxies"]
            cols = {}
            for col in GALAXY_COLUMNS:
                v = g[col][()]
                if col in ("galaxy_id", "source"):
                    v = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v],
                                 dtype=object)
                cols[col] = v
            table = pd.DataFrame(cols)
            table["cap_applied"] = table["cap_applied"].astype(bool)
            rot = g["rotation"][()]
            st = h5["stars"][()] if stars else None
            gal = h5["galaxy"][()] if stars else None
            attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in h5.attrs.items()}
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 eDF table ({exc})") from None
    except KeyError as exc:
        raise InputError(f"{path}: not a galforge eDF table ({exc})") from None
    return EdfTable(path=path, galaxies=table, rotation=rot, stars=st, galaxy=gal, attrs=attrs)


def write_index(table: pd.DataFrame, path: str | Path) -> None:
    """The index <-> id table (CSV): index, galaxy_id, m_dm, n_stars and the conditions."""
    cols = ["galaxy_id", "m_dm", "n_stars", *CONDITION_COLUMNS, "source"]
    out = table[cols].copy()
    out.insert(0, "index", np.arange(len(out)))
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False)
