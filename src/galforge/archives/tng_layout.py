"""The on-disk layout of an IllustrisTNG simulation copy, written once for readers and the mock.

What :mod:`galforge.archives.tng_local` reads and :mod:`galforge.mock.tng` writes, in
the layout that ``illustris_python`` (1.1.1) expects under a simulation folder
``<sim>/``::

    <sim>/output/groups_099/fof_subhalo_tab_099.N.hdf5    group catalog chunks
    <sim>/output/snapdir_099/snap_099.N.hdf5              snapshot chunks
    <sim>/postprocessing/offsets/offsets_099.hdf5         chunk and subhalo offsets
    <sim>/postprocessing/StellarAssembly/stars_099.hdf5   per star particle (snapshot order)
    <sim>/postprocessing/StellarAssembly/galaxies_099.hdf5  per subhalo
    <sim>/postprocessing/trees/SubLink/tree_extended.N.hdf5 SubLink merger trees

``tng.base_path`` (the configuration) is ``<sim>/output``, as ``illustris_python``
takes it. The dtypes, header attributes and unit attributes below are those of the
real files in ``../shared/data/tng`` (a TNG100-1 group-catalog chunk, a TNG50-4
snapshot chunk, an API cutout, SubLink branches; ``tests/mock/test_tng_mock.py``
compares them); the stellar-assembly datasets are those the public
``stellar_assembly`` code of Rodriguez-Gomez et al. (2016) writes (no public sample
file exists). The offsets file's datasets are int64 (no public sample either).

This module imports only the standard library and NumPy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = [
    "CUTOUT_HEADER",
    "GALAXIES_FIELDS",
    "GROUPCAT_HEADER",
    "GROUP_FIELDS",
    "HEADER_TNG100",
    "PARTICLE_FIELDS",
    "SNAPSHOT_HEADER",
    "STARS_FIELDS",
    "SUBHALO_FIELDS",
    "SUBLINK_FIELDS",
    "UNIT_ATTRS",
    "groupcat_path",
    "offsets_path",
    "snapshot_path",
    "snapshot_redshift",
    "stellar_assembly_path",
    "sublink_path",
]

# ------------------------------------------------------------------------------------------
# Paths (base = <sim>/output, as illustris_python's basePath)
# ------------------------------------------------------------------------------------------


def groupcat_path(base: str | Path, snap: int, chunk: int) -> Path:
    """``<base>/groups_SSS/fof_subhalo_tab_SSS.N.hdf5``."""
    return Path(base) / f"groups_{snap:03d}" / f"fof_subhalo_tab_{snap:03d}.{chunk}.hdf5"


def snapshot_path(base: str | Path, snap: int, chunk: int) -> Path:
    """``<base>/snapdir_SSS/snap_SSS.N.hdf5``."""
    return Path(base) / f"snapdir_{snap:03d}" / f"snap_{snap:03d}.{chunk}.hdf5"


def offsets_path(base: str | Path, snap: int) -> Path:
    """``<base>/../postprocessing/offsets/offsets_SSS.hdf5`` (illustris_python's ``offsetPath``)."""
    return Path(base).parent / "postprocessing" / "offsets" / f"offsets_{snap:03d}.hdf5"


def stellar_assembly_path(base: str | Path, snap: int, kind: str = "stars") -> Path:
    """``<base>/../postprocessing/StellarAssembly/{stars,galaxies}_SSS.hdf5``."""
    if kind not in ("stars", "galaxies"):
        raise ValueError(f"stellar assembly file kind {kind!r}: 'stars' or 'galaxies'")
    return Path(base).parent / "postprocessing" / "StellarAssembly" / f"{kind}_{snap:03d}.hdf5"


def sublink_path(base: str | Path, chunk: int = 0) -> Path:
    """``<base>/../postprocessing/trees/SubLink/tree_extended.N.hdf5``."""
    return Path(base).parent / "postprocessing" / "trees" / "SubLink" / f"tree_extended.{chunk}.hdf5"


# ------------------------------------------------------------------------------------------
# Constants of TNG100-1 (the headers of the real files)
# ------------------------------------------------------------------------------------------

#: Header values shared by every TNG100-1 file (code units: ckpc/h, 1e10 Msun/h, km/s).
HEADER_TNG100: dict[str, object] = {
    "BoxSize": 75000.0,
    "HubbleParam": 0.6774,
    "Omega0": 0.3089,
    "OmegaLambda": 0.6911,
    "OmegaBaryon": 0.0486,
    "UnitLength_in_cm": 3.085678e21,
    "UnitMass_in_g": 1.989e43,
    "UnitVelocity_in_cm_per_s": 1.0e5,
    "MassTable": (0.0, 5.05574296e-04, 0.0, 4.71972931e-05, 0.0, 0.0),
    "Git_commit": b"d203ec8b07c7e2bdda5f608aa0babea46d603699",
    "Git_date": b"Thu Apr 7 14:14:27 2016 +0200",
    "SimulationName": "L75n1820TNG",
}

#: Redshift of the TNG snapshots the mock writes by default, as in the real headers
#: (99: the z = 0 header value; 91: z = 0.0994; 78: z = 0.2977); the other full snapshots
#: at the tabulated redshift of the TNG documentation.
_FULL_SNAPSHOT_Z: dict[int, float] = {
    2: 12.0, 3: 11.0, 4: 10.0, 6: 9.0, 8: 8.0, 11: 7.0, 13: 6.0, 17: 5.0, 21: 4.0,
    25: 3.0, 33: 2.0, 40: 1.5, 50: 1.0, 59: 0.7, 67: 0.5, 72: 0.4,
    78: 0.2977176845174465, 84: 0.2, 91: 0.09940180263022191, 99: 2.220446049250313e-16,
}


def snapshot_redshift(snap: int) -> float:
    """Redshift of TNG snapshot ``snap`` (0-99).

    The 20 full snapshots are tabulated; a mini snapshot in between gets the redshift
    interpolated linearly in log(scale factor) between its two full neighbours (the
    mock's convention; the real mini snapshots lie within a few per cent of it).
    Snapshots 0 and 1 extrapolate from snapshots 2 and 3.
    """
    if isinstance(snap, bool) or not isinstance(snap, (int, np.integer)) or not 0 <= snap <= 99:
        raise ValueError(f"snapshot {snap!r} must be an integer in 0..99")
    snap = int(snap)
    if snap in _FULL_SNAPSHOT_Z:
        return _FULL_SNAPSHOT_Z[snap]
    known = sorted(_FULL_SNAPSHOT_Z)
    if snap < known[0]:
        lo, hi = known[0], known[1]
    else:
        lo = max(s for s in known if s < snap)
        hi = min(s for s in known if s > snap)
    la = [math.log(1.0 / (1.0 + _FULL_SNAPSHOT_Z[s])) for s in (lo, hi)]
    log_a = la[0] + (la[1] - la[0]) * (snap - lo) / (hi - lo)
    return 1.0 / math.exp(log_a) - 1.0


# ------------------------------------------------------------------------------------------
# Headers: attribute name -> NumPy dtype (arrays: (dtype, length))
# ------------------------------------------------------------------------------------------

#: ``Header`` attributes of a group-catalog chunk (fof_subhalo_tab_099.88.hdf5).
GROUPCAT_HEADER: dict[str, str] = {
    "BoxSize": "f8", "FlagDoubleprecision": "i4", "Git_commit": "S", "Git_date": "S",
    "HubbleParam": "f8", "Ngroups_ThisFile": "i4", "Ngroups_Total": "i4",
    "Nids_ThisFile": "i4", "Nids_Total": "i8", "Nsubgroups_ThisFile": "i4",
    "Nsubgroups_Total": "i4", "NumFiles": "i4", "Omega0": "f8", "OmegaLambda": "f8",
    "Redshift": "f8", "Time": "f8",
}

#: ``Header`` attributes of a snapshot chunk (snap_2332.5.hdf5); arrays have length 6.
SNAPSHOT_HEADER: dict[str, str] = {
    "BoxSize": "f8", "Composition_vector_length": "i4", "Flag_Cooling": "i4",
    "Flag_DoublePrecision": "i4", "Flag_Feedback": "i4", "Flag_Metals": "i4",
    "Flag_Sfr": "i4", "Flag_StellarAge": "i4", "Git_commit": "S", "Git_date": "S",
    "HubbleParam": "f8", "MassTable": "f8[6]", "NumFilesPerSnapshot": "i4",
    "NumPart_ThisFile": "i4[6]", "NumPart_Total": "u4[6]", "NumPart_Total_HighWord": "u4[6]",
    "Omega0": "f8", "OmegaBaryon": "f8", "OmegaLambda": "f8", "Redshift": "f8", "Time": "f8",
    "UnitLength_in_cm": "f8", "UnitMass_in_g": "f8", "UnitVelocity_in_cm_per_s": "f8",
}

#: ``Header`` attributes of an API subhalo cutout (stars_565261.hdf5); ``str`` = a
#: variable-length string attribute.
CUTOUT_HEADER: dict[str, str] = {
    "BoxSize": "f8", "CutoutID": "i8", "CutoutRequest": "str", "CutoutType": "str",
    "Git_commit": "S", "Git_date": "S", "HubbleParam": "f8", "MassTable": "f8[6]",
    "NumFilesPerSnapshot": "i8", "NumPart_ThisFile": "i4[6]", "Omega0": "f8",
    "OmegaBaryon": "f8", "OmegaLambda": "f8", "Redshift": "f8", "SimulationName": "str",
    "SnapshotNumber": "i8", "Time": "f8", "UnitLength_in_cm": "f8", "UnitMass_in_g": "f8",
    "UnitVelocity_in_cm_per_s": "f8",
}

# ------------------------------------------------------------------------------------------
# Group catalog: field -> (dtype, per-row shape), in the files' (alphabetical) order
# ------------------------------------------------------------------------------------------

_F4, _I4 = "<f4", "<i4"

#: ``Group/`` datasets of a group-catalog chunk.
GROUP_FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "GroupBHMass": (_F4, ()), "GroupBHMdot": (_F4, ()), "GroupCM": (_F4, (3,)),
    "GroupFirstSub": (_I4, ()), "GroupGasMetalFractions": (_F4, (10,)),
    "GroupGasMetallicity": (_F4, ()), "GroupLen": (_I4, ()), "GroupLenType": (_I4, (6,)),
    "GroupMass": (_F4, ()), "GroupMassType": (_F4, (6,)), "GroupNsubs": (_I4, ()),
    "GroupPos": (_F4, (3,)), "GroupSFR": (_F4, ()), "GroupStarMetalFractions": (_F4, (10,)),
    "GroupStarMetallicity": (_F4, ()), "GroupVel": (_F4, (3,)), "GroupWindMass": (_F4, ()),
    "Group_M_Crit200": (_F4, ()), "Group_M_Crit500": (_F4, ()), "Group_M_Mean200": (_F4, ()),
    "Group_M_TopHat200": (_F4, ()), "Group_R_Crit200": (_F4, ()), "Group_R_Crit500": (_F4, ()),
    "Group_R_Mean200": (_F4, ()), "Group_R_TopHat200": (_F4, ()),
}

#: ``Subhalo/`` datasets of a group-catalog chunk.
SUBHALO_FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "SubhaloBHMass": (_F4, ()), "SubhaloBHMdot": (_F4, ()), "SubhaloBfldDisk": (_F4, ()),
    "SubhaloBfldHalo": (_F4, ()), "SubhaloCM": (_F4, (3,)), "SubhaloFlag": ("|b1", ()),
    "SubhaloGasMetalFractions": (_F4, (10,)), "SubhaloGasMetalFractionsHalfRad": (_F4, (10,)),
    "SubhaloGasMetalFractionsMaxRad": (_F4, (10,)), "SubhaloGasMetalFractionsSfr": (_F4, (10,)),
    "SubhaloGasMetalFractionsSfrWeighted": (_F4, (10,)), "SubhaloGasMetallicity": (_F4, ()),
    "SubhaloGasMetallicityHalfRad": (_F4, ()), "SubhaloGasMetallicityMaxRad": (_F4, ()),
    "SubhaloGasMetallicitySfr": (_F4, ()), "SubhaloGasMetallicitySfrWeighted": (_F4, ()),
    "SubhaloGrNr": (_I4, ()), "SubhaloHalfmassRad": (_F4, ()),
    "SubhaloHalfmassRadType": (_F4, (6,)), "SubhaloIDMostbound": ("<u8", ()),
    "SubhaloLen": (_I4, ()), "SubhaloLenType": (_I4, (6,)), "SubhaloMass": (_F4, ()),
    "SubhaloMassInHalfRad": (_F4, ()), "SubhaloMassInHalfRadType": (_F4, (6,)),
    "SubhaloMassInMaxRad": (_F4, ()), "SubhaloMassInMaxRadType": (_F4, (6,)),
    "SubhaloMassInRad": (_F4, ()), "SubhaloMassInRadType": (_F4, (6,)),
    "SubhaloMassType": (_F4, (6,)), "SubhaloParent": (_I4, ()), "SubhaloPos": (_F4, (3,)),
    "SubhaloSFR": (_F4, ()), "SubhaloSFRinHalfRad": (_F4, ()), "SubhaloSFRinMaxRad": (_F4, ()),
    "SubhaloSFRinRad": (_F4, ()), "SubhaloSpin": (_F4, (3,)),
    "SubhaloStarMetalFractions": (_F4, (10,)), "SubhaloStarMetalFractionsHalfRad": (_F4, (10,)),
    "SubhaloStarMetalFractionsMaxRad": (_F4, (10,)), "SubhaloStarMetallicity": (_F4, ()),
    "SubhaloStarMetallicityHalfRad": (_F4, ()), "SubhaloStarMetallicityMaxRad": (_F4, ()),
    "SubhaloStellarPhotometrics": (_F4, (8,)), "SubhaloStellarPhotometricsMassInRad": (_F4, ()),
    "SubhaloStellarPhotometricsRad": (_F4, ()), "SubhaloVel": (_F4, (3,)),
    "SubhaloVelDisp": (_F4, ()), "SubhaloVmax": (_F4, ()), "SubhaloVmaxRad": (_F4, ()),
    "SubhaloWindMass": (_F4, ()),
}

# ------------------------------------------------------------------------------------------
# Snapshot particles
# ------------------------------------------------------------------------------------------

#: The six unit attributes of a snapshot dataset, in the files' order.
UNIT_KEYS = ("a_scaling", "h_scaling", "length_scaling", "mass_scaling", "to_cgs",
             "velocity_scaling")


def _units(a: float, h: float, length: float, mass: float, cgs: float, vel: float
           ) -> dict[str, float]:
    return dict(zip(UNIT_KEYS, (a, h, length, mass, cgs, vel), strict=True))


_LENGTH = _units(1.0, -1.0, 1.0, 0.0, 3.085678e21, 0.0)
_VELOCITY = _units(0.5, 0.0, 0.0, 0.0, 1.0e5, 1.0)
_MASS = _units(0.0, -1.0, 0.0, 1.0, 1.989e43, 0.0)
_POTENTIAL = _units(-1.0, 0.0, 0.0, 0.0, 1.0e10, 2.0)
_NONE = _units(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

#: Unit attributes of the snapshot datasets the mock writes (those of snap_2332.5.hdf5).
UNIT_ATTRS: dict[str, dict[str, float]] = {
    "Coordinates": _LENGTH, "BirthPos": _LENGTH, "Velocities": _VELOCITY,
    "BirthVel": _VELOCITY, "Masses": _MASS, "GFM_InitialMass": _MASS,
    "Potential": _POTENTIAL, "ParticleIDs": _NONE, "GFM_Metallicity": _NONE,
    "GFM_Metals": _NONE, "GFM_StellarFormationTime": _NONE, "GFM_StellarPhotometrics": _NONE,
}

#: Datasets of the particle types the mock writes: type -> field -> (dtype, per-row shape).
PARTICLE_FIELDS: dict[int, dict[str, tuple[str, tuple[int, ...]]]] = {
    1: {"Coordinates": ("<f8", (3,)), "ParticleIDs": ("<u8", ()), "Potential": (_F4, ()),
        "Velocities": (_F4, (3,))},
    4: {"BirthPos": (_F4, (3,)), "BirthVel": (_F4, (3,)), "Coordinates": ("<f8", (3,)),
        "GFM_InitialMass": (_F4, ()), "GFM_Metallicity": (_F4, ()), "GFM_Metals": (_F4, (10,)),
        "GFM_StellarFormationTime": (_F4, ()), "GFM_StellarPhotometrics": (_F4, (8,)),
        "Masses": (_F4, ()), "ParticleIDs": ("<u8", ()), "Potential": (_F4, ()),
        "Velocities": (_F4, (3,))},
}

#: The particle-type names of the API (``cutout.hdf5?stars=...``) and their numbers.
PARTICLE_TYPE_NUMBERS: dict[str, int] = {"gas": 0, "dm": 1, "tracers": 3, "stars": 4, "bhs": 5}

# ------------------------------------------------------------------------------------------
# Postprocessing
# ------------------------------------------------------------------------------------------

#: ``stars_SSS.hdf5``: one row per PartType4 particle in snapshot order (the datasets the
#: stellar_assembly code writes; -1 = undefined).
STARS_FIELDS: dict[str, str] = {
    "ParticleID": "<u8", "SubfindID": "<i4", "SubfindIDAtFormation": "<i4",
    "SnapNumAtFormation": "<i2", "InSitu": "|i1", "AfterInfall": "|i1",
    "AccretionOrigin": "|i1", "MergerMassRatio": _F4, "DistanceAtFormation": _F4,
}

#: ``galaxies_SSS.hdf5``: one row per subhalo, masses in 1e10 Msun/h of non-wind star
#: particles. Invariants: InSitu + ExSitu = Total; BeforeInfall + AfterInfall +
#: FormedOutsideGalaxies = ExSitu; FromCompletedMergers + FromOngoingMergers + FromFlybys
#: + FormedOutsideGalaxies = ExSitu.
GALAXIES_FIELDS: tuple[str, ...] = (
    "StellarMassInSitu", "StellarMassExSitu", "StellarMassTotal", "StellarMassBeforeInfall",
    "StellarMassAfterInfall", "StellarMassFormedOutsideGalaxies",
    "StellarMassFromCompletedMergers", "StellarMassFromCompletedMergersMajor",
    "StellarMassFromCompletedMergersMajorMinor", "StellarMassFromOngoingMergers",
    "StellarMassFromOngoingMergersMajor", "StellarMassFromOngoingMergersMajorMinor",
    "StellarMassFromFlybys", "StellarMassFromFlybysMajor", "StellarMassFromFlybysMajorMinor",
)

#: SubLink ``tree_extended`` linkage datasets (dtypes of sublink_mpb_565261.hdf5); the
#: mock's trees carry these and :data:`SUBLINK_CATALOG_FIELDS`.
SUBLINK_FIELDS: dict[str, str] = {
    "DescendantID": "<i8", "FirstProgenitorID": "<i8", "FirstSubhaloInFOFGroupID": "<i8",
    "LastProgenitorID": "<i8", "MainLeafProgenitorID": "<i8", "Mass": _F4,
    "MassHistory": _F4, "NextProgenitorID": "<i8", "NextSubhaloInFOFGroupID": "<i8",
    "NumParticles": "<u4", "RootDescendantID": "<i8", "SnapNum": "<i2", "SubfindID": _I4,
    "SubhaloID": "<i8", "SubhaloIDRaw": "<i8", "TreeID": "<i8",
}

#: Group-catalog fields the mock's SubLink rows carry (same dtype as in the catalog).
SUBLINK_CATALOG_FIELDS: tuple[str, ...] = (
    "SubhaloMassType", "SubhaloMass", "SubhaloLenType", "SubhaloLen", "SubhaloPos",
    "SubhaloVel", "SubhaloHalfmassRadType", "SubhaloGrNr", "SubhaloSFR",
    "Group_M_Crit200", "GroupFirstSub", "GroupMass", "GroupNsubs",
)


def field_spec(name: str) -> tuple[str, tuple[int, ...]]:
    """dtype and per-row shape of a group-catalog field (Group* or Subhalo*)."""
    for table in (SUBHALO_FIELDS, GROUP_FIELDS):
        if name in table:
            return table[name]
    raise KeyError(name)


# ------------------------------------------------------------------------------------------
# Units of the group-catalog fields (the catalog files carry no unit attributes)
# ------------------------------------------------------------------------------------------

#: Group-catalog fields in physical units: field -> (a exponent, h exponent, factor to the
#: physical unit): lengths ckpc/h -> kpc (a, h^-1), masses 1e10 Msun/h -> Msun (h^-1,
#: 1e10), SubhaloVel km/s (already physical), GroupVel km/s/a -> km/s (a^1).
CATALOG_UNITS: dict[str, tuple[float, float, float]] = {
    **{f: (1.0, -1.0, 1.0) for f in (
        "SubhaloPos", "SubhaloCM", "SubhaloHalfmassRad", "SubhaloHalfmassRadType",
        "SubhaloVmaxRad", "SubhaloStellarPhotometricsRad", "GroupPos", "GroupCM",
        "Group_R_Crit200", "Group_R_Crit500", "Group_R_Mean200", "Group_R_TopHat200")},
    **{f: (0.0, -1.0, 1e10) for f in (
        "SubhaloMass", "SubhaloMassType", "SubhaloMassInHalfRad", "SubhaloMassInHalfRadType",
        "SubhaloMassInMaxRad", "SubhaloMassInMaxRadType", "SubhaloMassInRad",
        "SubhaloMassInRadType", "SubhaloWindMass", "SubhaloBHMass",
        "SubhaloStellarPhotometricsMassInRad", "GroupMass", "GroupMassType", "GroupBHMass",
        "GroupWindMass", "Group_M_Crit200", "Group_M_Crit500", "Group_M_Mean200",
        "Group_M_TopHat200")},
    "SubhaloVel": (0.0, 0.0, 1.0),
    "SubhaloVelDisp": (0.0, 0.0, 1.0),
    "SubhaloVmax": (0.0, 0.0, 1.0),
    "GroupVel": (1.0, 0.0, 1.0),
    "SubhaloSpin": (0.0, -1.0, 1.0),
}


# ------------------------------------------------------------------------------------------
# Cosmic time (flat LCDM without radiation, TNG's cosmology by default)
# ------------------------------------------------------------------------------------------

#: 1 / H0 in Gyr for h = 1 (977.792 Gyr / (100 h)).
HUBBLE_TIME_GYR = 9.777922216807891


def cosmic_time(a: np.ndarray | float, h: float = 0.6774, omega_m: float = 0.3089
                ) -> np.ndarray:
    """Age of a flat ΛCDM universe at scale factor ``a`` [Gyr] (radiation neglected).

    ``t(a) = 2 / (3 H0 sqrt(Ω_Λ)) asinh(sqrt(Ω_Λ / Ω_m) a^{3/2})``, Ω_Λ = 1 − Ω_m.
    """
    ol = 1.0 - omega_m
    a = np.asarray(a, dtype=np.float64)
    return (2.0 * HUBBLE_TIME_GYR / (3.0 * h * math.sqrt(ol))
            * np.arcsinh(math.sqrt(ol / omega_m) * np.clip(a, 0.0, None) ** 1.5))


def scale_factor(t: np.ndarray | float, h: float = 0.6774, omega_m: float = 0.3089
                 ) -> np.ndarray:
    """The inverse of :func:`cosmic_time`: scale factor at cosmic time ``t`` [Gyr]."""
    ol = 1.0 - omega_m
    t = np.asarray(t, dtype=np.float64)
    x = np.sinh(1.5 * h * math.sqrt(ol) * np.clip(t, 0.0, None) / HUBBLE_TIME_GYR)
    return (omega_m / ol) ** (1.0 / 3.0) * x ** (2.0 / 3.0)


def attribute_kinds(attrs: object) -> dict[str, str]:
    """An HDF5 attribute set's layout: name -> ``"str"`` (any string) or dtype and shape.

    Two files with the same layout give the same result whatever the values (the tests
    compare the mock's headers with the real files' this way).
    """
    out = {}
    for key, value in dict(attrs).items():  # type: ignore[call-overload]
        a = np.asarray(value)
        out[key] = "str" if a.dtype.kind in "SOU" else f"{a.dtype.str}{list(a.shape)}"
    return out
