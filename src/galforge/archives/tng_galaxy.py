"""Galaxies as particle sets: one interface for the local-copy and the web-API routes.

Both :mod:`galforge.archives.tng_local` (a simulation copy read through its offsets)
and :mod:`galforge.archives.tng_fetch` (cutouts from the web API) hand their raw
particles, with each dataset's unit attributes and the snapshot header, to
:func:`make_galaxy`, which returns a :class:`Galaxy`:

* physical units, as the unit attributes say: ``value × a^a_scaling × h^h_scaling ×
  to_cgs``, then kpc, km/s (the √a of TNG velocities included), M☉, (km/s)² — h and a
  removed; DM masses from the header's ``MassTable``;
* ``Coordinates`` centred on SubhaloPos and unwrapped across the periodic box (the
  nearest image, in comoving code units, before the conversion); ``Velocities`` in the
  galaxy's frame (SubhaloVel, km/s, subtracted);
* wind particles (``GFM_StellarFormationTime <= 0``) dropped;
* ``Age`` [Gyr]: cosmic time at the snapshot minus at the formation scale factor, in
  the header's cosmology (TNG: h = 0.6774, Ωm = 0.3089; flat);
* ``InSitu`` (int8: 1 in-situ, 0 ex-situ) joined from the StellarAssembly catalog by
  ParticleID (:class:`InSituIndex`).

Dimensional fields come out as float64; datasets without unit attributes, or with
``to_cgs = 0`` (dimensionless: metallicities, formation times, IDs), keep their raw
values and dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from galforge.archives.tng_layout import PARTICLE_TYPE_NUMBERS, cosmic_time
from galforge.io import InputError

__all__ = [
    "DEFAULT_FIELDS",
    "Galaxy",
    "InSituIndex",
    "field_request",
    "make_galaxy",
    "physical",
]

#: What the exsitu and alignment studies read of each galaxy (the cutout fields of issue 14).
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "stars": ("Coordinates", "Velocities", "Masses", "GFM_StellarFormationTime",
              "GFM_Metallicity", "GFM_InitialMass", "ParticleIDs", "Potential"),
    "dm": ("Coordinates",),
}

KPC_CM = 3.085678e21
MSUN_G = 1.989e33
KMS_CMS = 1.0e5
#: Physical unit of each (length, mass, velocity) dimension, by name.
_UNIT_NAMES = {(1, 0, 0): "kpc", (0, 1, 0): "Msun", (0, 0, 1): "km/s", (0, 0, 2): "(km/s)^2"}
#: Dimensions of the datasets whose files lack ``length_scaling`` etc. (older cutouts).
_DIMENSIONS = {"Coordinates": (1, 0, 0), "BirthPos": (1, 0, 0), "Velocities": (0, 0, 1),
               "BirthVel": (0, 0, 1), "Masses": (0, 1, 0), "GFM_InitialMass": (0, 1, 0),
               "Potential": (0, 0, 2)}
#: Fields whose conversion must be possible (a clear error otherwise).
_NEEDS_UNITS = ("Coordinates", "Velocities", "Masses", "GFM_InitialMass", "Potential")


def field_request(fields: Mapping[str, Sequence[str] | str] | Sequence[str] | None
                  ) -> dict[str, tuple[str, ...]]:
    """Normalise a field request: ``{"stars": [...], "dm": [...]}``, a list (stars only),
    or None (:data:`DEFAULT_FIELDS`). Stars always include GFM_StellarFormationTime
    (to drop winds).

    Raises
    ------
    InputError
        For a particle type other than stars/dm or a malformed field name.
    """
    if fields is None:
        req = {k: tuple(v) for k, v in DEFAULT_FIELDS.items()}
    elif isinstance(fields, Mapping):
        req = {}
        for ptype, names in fields.items():
            if ptype not in ("stars", "dm"):
                raise InputError(f"particle type {ptype!r}: galaxies hold 'stars' and 'dm'")
            req[ptype] = tuple(names.split(",")) if isinstance(names, str) else tuple(names)
    elif isinstance(fields, str):
        req = {"stars": tuple(fields.split(","))}
    else:
        req = {"stars": tuple(fields)}
    for ptype, names in req.items():
        for n in names:
            if not isinstance(n, str) or not n.replace("_", "").isalnum():
                raise InputError(f"bad field name {n!r} for {ptype}")
    if "stars" in req and "GFM_StellarFormationTime" not in req["stars"]:
        req["stars"] = (*req["stars"], "GFM_StellarFormationTime")
    return req


def _dims(name: str, attrs: Mapping[str, Any]) -> tuple[int, int, int] | None:
    if all(k in attrs for k in ("length_scaling", "mass_scaling", "velocity_scaling")):
        return tuple(int(round(float(np.ravel(attrs[k])[0]))) for k in
                     ("length_scaling", "mass_scaling", "velocity_scaling"))  # type: ignore[return-value]
    return _DIMENSIONS.get(name)


def physical(name: str, raw: np.ndarray, attrs: Mapping[str, Any], a: float, h: float,
             where: str = "") -> tuple[np.ndarray, str]:
    """``raw`` in physical units (kpc, Msun, km/s, (km/s)^2) from its unit attributes.

    Returns the converted array (float64) and the unit's name ("" = dimensionless, raw
    values kept; "raw" = the dataset has no unit attributes).

    Raises
    ------
    InputError
        When a dimensional field (Coordinates, Velocities, Masses, GFM_InitialMass,
        Potential) lacks its unit attributes (``where`` names the file and dataset).
    """
    if not all(k in attrs for k in ("a_scaling", "h_scaling", "to_cgs")):
        if name in _NEEDS_UNITS:
            raise InputError(f"{where or name}: no unit attributes (a_scaling, h_scaling, "
                             "to_cgs); cannot convert to physical units")
        return np.asarray(raw), "raw"
    scalar = {k: float(np.ravel(attrs[k])[0]) for k in ("a_scaling", "h_scaling", "to_cgs")}
    if scalar["to_cgs"] == 0.0:
        return np.asarray(raw), ""
    dims = _dims(name, attrs)
    if dims is None or dims not in _UNIT_NAMES:
        return np.asarray(raw), "raw"
    target = KPC_CM ** dims[0] * MSUN_G ** dims[1] * KMS_CMS ** dims[2]
    factor = a ** scalar["a_scaling"] * h ** scalar["h_scaling"] * scalar["to_cgs"] / target
    return np.asarray(raw, dtype=np.float64) * factor, _UNIT_NAMES[dims]


@dataclass
class Galaxy:
    """One subhalo's star (and DM) particles in physical units (see the module docstring).

    ``stars`` / ``dm`` map field names to arrays (one row per particle); ``units`` maps
    ``"stars/<field>"`` to its unit. ``centre`` is SubhaloPos in comoving ckpc/h (code
    units), ``velocity`` SubhaloVel in km/s.
    """

    subhalo_id: int
    snapshot: int
    redshift: float
    scale_factor: float
    centre: np.ndarray
    velocity: np.ndarray
    stars: dict[str, np.ndarray] = field(default_factory=dict)
    dm: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    n_wind: int = 0

    @property
    def n_stars(self) -> int:
        first = next(iter(self.stars.values()), None)
        return 0 if first is None else len(first)

    def particles_equal(self, other: Galaxy) -> bool:
        """Whether both hold exactly the same particles (same fields, same values, same order)."""
        for mine, theirs in ((self.stars, other.stars), (self.dm, other.dm)):
            if set(mine) != set(theirs):
                return False
            if not all(np.array_equal(mine[k], theirs[k]) for k in mine):
                return False
        return True


class InSituIndex:
    """The StellarAssembly InSitu flag of star particles, looked up by ParticleID.

    Built from the catalog's ``ParticleID`` and ``InSitu`` columns (any subset of rows);
    :meth:`lookup` raises :class:`InputError` for IDs the catalog does not hold.
    """

    def __init__(self, particle_ids: np.ndarray, in_situ: np.ndarray, source: str = "") -> None:
        ids = np.asarray(particle_ids, dtype=np.uint64)
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._flag = np.asarray(in_situ, dtype=np.int8)[order]
        self.source = source

    def __len__(self) -> int:
        return len(self._ids)

    def lookup(self, particle_ids: np.ndarray, where: str = "") -> np.ndarray:
        ids = np.asarray(particle_ids, dtype=np.uint64)
        pos = np.searchsorted(self._ids, ids)
        pos_ok = np.minimum(pos, max(len(self._ids) - 1, 0))
        found = (pos < len(self._ids)) & (self._ids[pos_ok] == ids) if len(self._ids) else \
            np.zeros(len(ids), dtype=bool)
        if not np.all(found):
            missing = ids[~found][:3].tolist()
            raise InputError(f"{where}: {int((~found).sum())} star particle(s) not in the "
                             f"stellar assembly catalog {self.source} (ParticleIDs {missing}...)")
        return self._flag[pos_ok]


def make_galaxy(
    subhalo_id: int,
    snapshot: int,
    header: Mapping[str, Any],
    subhalo_pos: np.ndarray,
    subhalo_vel: np.ndarray,
    raw: Mapping[str, Mapping[str, np.ndarray]],
    attrs: Mapping[str, Mapping[str, Mapping[str, Any]]],
    in_situ: np.ndarray | InSituIndex | None = None,
    where: str = "",
) -> Galaxy:
    """A :class:`Galaxy` from raw particles (code units) of one subhalo.

    Parameters
    ----------
    header : mapping
        ``Time``, ``Redshift``, ``HubbleParam``, ``Omega0``, ``BoxSize``, ``MassTable``.
    subhalo_pos, subhalo_vel : array
        SubhaloPos (ckpc/h) and SubhaloVel (km/s) of the catalog.
    raw : mapping
        ``{"stars": {field: array}, "dm": {field: array}}`` in file order.
    attrs : mapping
        The unit attributes, ``{"stars": {field: attrs}, ...}``.
    in_situ : array or InSituIndex, optional
        The InSitu flag of each raw star particle (row-aligned), or an index to join by
        ParticleID; None: no ``InSitu`` field.
    where : str
        Names the source in error messages.
    """
    a = float(np.ravel(header["Time"])[0])
    h = float(np.ravel(header["HubbleParam"])[0])
    om = float(np.ravel(header.get("Omega0", 0.3089))[0])
    box = float(np.ravel(header["BoxSize"])[0])
    z = float(np.ravel(header.get("Redshift", 1.0 / a - 1.0))[0])
    gal = Galaxy(subhalo_id=int(subhalo_id), snapshot=int(snapshot), redshift=z,
                 scale_factor=a, centre=np.asarray(subhalo_pos, dtype=np.float64),
                 velocity=np.asarray(subhalo_vel, dtype=np.float64))
    t_now = float(cosmic_time(a, h, om))
    for ptype, fields in raw.items():
        out: dict[str, np.ndarray] = {}
        keep = None
        if ptype == "stars":
            if "GFM_StellarFormationTime" not in fields:
                raise InputError(f"{where}: stars without GFM_StellarFormationTime: cannot "
                                 "drop the wind particles")
            keep = np.asarray(fields["GFM_StellarFormationTime"]) > 0
            gal.n_wind = int((~keep).sum())
        for name, values in fields.items():
            v = np.asarray(values)
            if keep is not None:
                v = v[keep]
            if v.size == 0 and name in ("Coordinates", "Velocities", "BirthPos", "BirthVel"):
                v = v.reshape(0, 3)
            a_attr = attrs.get(ptype, {}).get(name, {})
            here = f"{where}: {ptype}/{name}"
            if name == "Coordinates":
                d = v.astype(np.float64) - gal.centre
                d -= box * np.rint(d / box)
                out[name], unit = physical(name, d, a_attr, a, h, here)
            elif name == "Velocities":
                vel, unit = physical(name, v, a_attr, a, h, here)
                out[name] = vel - gal.velocity
            else:
                out[name], unit = physical(name, v, a_attr, a, h, here)
            gal.units[f"{ptype}/{name}"] = unit
        if ptype == "stars":
            form = out["GFM_StellarFormationTime"].astype(np.float64)
            out["Age"] = t_now - cosmic_time(form, h, om)
            gal.units["stars/Age"] = "Gyr"
            if in_situ is not None:
                out["InSitu"] = _in_situ(in_situ, fields, keep, where)
                gal.units["stars/InSitu"] = ""
        if ptype == "dm" and fields:
            n = len(next(iter(fields.values())))
            m_dm = float(np.ravel(header["MassTable"])[PARTICLE_TYPE_NUMBERS["dm"]])
            out["Masses"] = np.full(n, m_dm * 1e10 / h)
            gal.units["dm/Masses"] = "Msun"
        if ptype == "stars":
            gal.stars = out
        else:
            gal.dm = out
    return gal


def _in_situ(in_situ: np.ndarray | InSituIndex, fields: Mapping[str, np.ndarray],
             keep: np.ndarray, where: str) -> np.ndarray:
    if isinstance(in_situ, InSituIndex):
        if "ParticleIDs" not in fields:
            raise InputError(f"{where}: the stars have no ParticleIDs; the in-situ/ex-situ join "
                             "with the stellar assembly catalog needs them (request "
                             "stars=...,ParticleIDs)")
        return in_situ.lookup(np.asarray(fields["ParticleIDs"])[keep], where)
    flags = np.asarray(in_situ, dtype=np.int8)
    if len(flags) != len(keep):
        raise InputError(f"{where}: {len(flags)} stellar assembly rows for {len(keep)} stars")
    return flags[keep]
