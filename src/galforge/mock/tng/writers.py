"""HDF5 writers of the mock TNG universe, in the layout of :mod:`galforge.archives.tng_layout`.

Group-catalog chunks split groups and subhaloes independently (as Subfind's files do),
chunk 1 is empty (0 groups, 0 subhaloes, empty ``Group/`` and ``Subhalo/``, like the real
``fof_subhalo_tab_099.1.hdf5``); snapshot chunks split each particle type in contiguous
ranges, the last chunk holding no stars (its ``PartType4`` group is absent, as in real
chunks without a type). Headers carry the real files' attributes and dtypes; every
snapshot dataset carries its six unit attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from galforge.archives.tng_layout import (
    GALAXIES_FIELDS,
    GROUP_FIELDS,
    HEADER_TNG100,
    PARTICLE_FIELDS,
    STARS_FIELDS,
    SUBHALO_FIELDS,
    UNIT_ATTRS,
    UNIT_KEYS,
    groupcat_path,
    offsets_path,
    snapshot_path,
    stellar_assembly_path,
    sublink_path,
)
from galforge.mock.tng.model import OMEGA_M, H, Universe
from galforge.mock.tng.snapshot import SnapshotData
from galforge.mock.tng.tree import Tree

__all__ = ["chunk_bounds", "write_groupcat", "write_offsets", "write_snapshot",
           "write_stellar_assembly", "write_sublink"]

#: A few entries of the real files' ``Config`` and ``Parameters`` groups (the mock writes
#: these, not all 98 and 151).
CONFIG = {"FOF": b"", "SUBFIND": b"", "GFM": b"", "PERIODIC": b"", "LONGIDS": b"",
          "OUTPUTPOTENTIAL": b"", "GFM_STELLAR_PHOTOMETRICS": b"", "NTYPES": 6.0}


def _parameters(n_files: int, box: float) -> dict[str, object]:
    return {
        "BoxSize": box, "ComovingIntegrationOn": np.int32(1),
        "HubbleParam": H, "NumFilesPerSnapshot": np.int32(n_files), "Omega0": OMEGA_M,
        "OmegaBaryon": float(HEADER_TNG100["OmegaBaryon"]),  # type: ignore[arg-type]
        "OmegaLambda": 1.0 - OMEGA_M, "PeriodicBoundariesOn": np.int32(1),
        "SnapFormat": np.int32(3), "SnapshotFileBase": b"snap",
        "UnitLength_in_cm": HEADER_TNG100["UnitLength_in_cm"],
        "UnitMass_in_g": HEADER_TNG100["UnitMass_in_g"],
        "UnitVelocity_in_cm_per_s": HEADER_TNG100["UnitVelocity_in_cm_per_s"],
    }


def chunk_bounds(n: int, weights: list[float]) -> np.ndarray:
    """Boundaries (len(weights) + 1) splitting ``n`` items into contiguous chunks by weight."""
    w = np.asarray(weights, dtype=float)
    cum = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    return np.rint(cum * n).astype(np.int64)


def _group_weights(n_chunks: int) -> list[float]:
    return [0.0 if k == 1 else 1.0 + 0.3 * (k % 3) for k in range(n_chunks)]


def _subhalo_weights(n_chunks: int) -> list[float]:
    return [0.0 if k == 1 else 1.6 - 0.25 * (k % 4) for k in range(n_chunks)]


def _write_attrs(group: h5py.Group, attrs: Mapping[str, object]) -> None:
    for key, value in attrs.items():
        group.attrs[key] = value


def _cosmo_header(data: SnapshotData, box: float) -> dict[str, object]:
    return {"BoxSize": np.float64(box), "HubbleParam": np.float64(H),
            "Omega0": np.float64(OMEGA_M), "OmegaLambda": np.float64(1.0 - OMEGA_M),
            "Redshift": np.float64(data.redshift), "Time": np.float64(data.a)}


def write_groupcat(base: Path, data: SnapshotData, box: float, n_chunks: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Write ``groups_SSS/fof_subhalo_tab_SSS.N.hdf5``; return the first group and first
    subhalo of each chunk (the offsets file's ``FileOffsets``)."""
    gb = chunk_bounds(data.n_group, _group_weights(n_chunks))
    sb = chunk_bounds(data.n_sub, _subhalo_weights(n_chunks))
    glen = data.group["GroupLen"].astype(np.int64)
    for k in range(n_chunks):
        path = groupcat_path(base, data.snap, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        g0, g1, s0, s1 = gb[k], gb[k + 1], sb[k], sb[k + 1]
        with h5py.File(path, "w") as f:
            header = {**_cosmo_header(data, box),
                      "FlagDoubleprecision": np.int32(0),
                      "Git_commit": np.bytes_(HEADER_TNG100["Git_commit"]),
                      "Git_date": np.bytes_(HEADER_TNG100["Git_date"]),
                      "Ngroups_ThisFile": np.int32(g1 - g0),
                      "Ngroups_Total": np.int32(data.n_group),
                      "Nids_ThisFile": np.int32(glen[g0:g1].sum()),
                      "Nids_Total": np.int64(glen.sum()),
                      "Nsubgroups_ThisFile": np.int32(s1 - s0),
                      "Nsubgroups_Total": np.int32(data.n_sub),
                      "NumFiles": np.int32(n_chunks)}
            _write_attrs(f.create_group("Header"), dict(sorted(header.items())))
            _write_attrs(f.create_group("Config"), CONFIG)
            _write_attrs(f.create_group("Parameters"), _parameters(n_chunks, box))
            f.create_group("IDs")
            grp = f.create_group("Group")
            if g1 > g0:
                for name in GROUP_FIELDS:
                    grp.create_dataset(name, data=data.group[name][g0:g1])
            sub = f.create_group("Subhalo")
            if s1 > s0:
                for name in SUBHALO_FIELDS:
                    sub.create_dataset(name, data=data.subhalo[name][s0:s1])
    return gb[:-1], sb[:-1]


def snapshot_bounds(data: SnapshotData, n_chunks: int) -> dict[int, np.ndarray]:
    """Per particle type, the boundaries of its contiguous ranges in the snapshot chunks."""
    out = {}
    for t, fields in data.parts.items():
        n = len(fields["ParticleIDs"])
        weights = [1.0] * n_chunks if t == 1 else [1.0] * (n_chunks - 1) + [0.0]
        out[t] = chunk_bounds(n, weights)
    return out


def write_snapshot(base: Path, data: SnapshotData, u: Universe, n_chunks: int) -> np.ndarray:
    """Write ``snapdir_SSS/snap_SSS.N.hdf5``; return the first particle of each type in each
    chunk, (n_chunks, 6) (the offsets file's ``FileOffsets/SnapByType``)."""
    bounds = snapshot_bounds(data, n_chunks)
    total = np.zeros(6, dtype=np.uint64)
    for t, b in bounds.items():
        total[t] = b[-1]
    first = np.zeros((n_chunks, 6), dtype=np.int64)
    mass_table = np.array(HEADER_TNG100["MassTable"], dtype=np.float64)
    mass_table[1] = u.m_dm
    for k in range(n_chunks):
        path = snapshot_path(base, data.snap, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        this = np.zeros(6, dtype=np.int32)
        for t, b in bounds.items():
            this[t] = b[k + 1] - b[k]
            first[k, t] = b[k]
        with h5py.File(path, "w") as f:
            header = {**_cosmo_header(data, u.box),
                      "Composition_vector_length": np.int32(0), "Flag_Cooling": np.int32(1),
                      "Flag_DoublePrecision": np.int32(0), "Flag_Feedback": np.int32(1),
                      "Flag_Metals": np.int32(0), "Flag_Sfr": np.int32(1),
                      "Flag_StellarAge": np.int32(0),
                      "Git_commit": np.bytes_(HEADER_TNG100["Git_commit"]),
                      "Git_date": np.bytes_(HEADER_TNG100["Git_date"]),
                      "MassTable": mass_table, "NumFilesPerSnapshot": np.int32(n_chunks),
                      "NumPart_ThisFile": this,
                      "NumPart_Total": (total & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                      "NumPart_Total_HighWord": (total >> np.uint64(32)).astype(np.uint32),
                      "OmegaBaryon": np.float64(HEADER_TNG100["OmegaBaryon"]),
                      "UnitLength_in_cm": np.float64(HEADER_TNG100["UnitLength_in_cm"]),
                      "UnitMass_in_g": np.float64(HEADER_TNG100["UnitMass_in_g"]),
                      "UnitVelocity_in_cm_per_s": np.float64(
                          HEADER_TNG100["UnitVelocity_in_cm_per_s"])}
            _write_attrs(f.create_group("Header"), dict(sorted(header.items())))
            _write_attrs(f.create_group("Config"), CONFIG)
            _write_attrs(f.create_group("Parameters"), _parameters(n_chunks, u.box))
            for t, b in sorted(bounds.items()):
                if this[t] == 0:
                    continue
                grp = f.create_group(f"PartType{t}")
                for name, (dtype, _) in PARTICLE_FIELDS[t].items():
                    ds = grp.create_dataset(name, data=data.parts[t][name][b[k]:b[k + 1]]
                                            .astype(dtype, copy=False))
                    for key in UNIT_KEYS:
                        ds.attrs[key] = np.float64(UNIT_ATTRS[name][key])
    return first


def write_offsets(base: Path, data: SnapshotData, file_groups: np.ndarray,
                  file_subhalos: np.ndarray, file_snap: np.ndarray, tree: Tree) -> Path:
    """Write ``postprocessing/offsets/offsets_SSS.hdf5``."""
    path = offsets_path(base, data.snap)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = tree.main_row.get(data.snap, np.full(len(data.sub_gal), -1))[data.sub_gal]
    ok = rows >= 0
    last = np.full(data.n_sub, -1, dtype=np.int64)
    sid = np.full(data.n_sub, -1, dtype=np.int64)
    last[ok] = tree.fields["LastProgenitorID"][rows[ok]]
    sid[ok] = tree.fields["SubhaloID"][rows[ok]]
    with h5py.File(path, "w") as f:
        f.create_dataset("FileOffsets/Group", data=file_groups.astype(np.int64))
        f.create_dataset("FileOffsets/Subhalo", data=file_subhalos.astype(np.int64))
        f.create_dataset("FileOffsets/SnapByType", data=file_snap.astype(np.int64))
        f.create_dataset("Group/SnapByType", data=data.group_offset.astype(np.int64))
        f.create_dataset("Subhalo/SnapByType", data=data.sub_offset.astype(np.int64))
        f.create_dataset("Subhalo/SubLink/RowNum", data=rows.astype(np.int64))
        f.create_dataset("Subhalo/SubLink/LastProgenitorID", data=last)
        f.create_dataset("Subhalo/SubLink/SubhaloID", data=sid)
    return path


def write_stellar_assembly(base: Path, data: SnapshotData) -> tuple[Path, Path]:
    """Write ``StellarAssembly/stars_SSS.hdf5`` and ``galaxies_SSS.hdf5``."""
    stars = stellar_assembly_path(base, data.snap, "stars")
    stars.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(stars, "w") as f:
        for name, dtype in STARS_FIELDS.items():
            f.create_dataset(name, data=data.assembly_stars[name].astype(dtype))
    gals = stellar_assembly_path(base, data.snap, "galaxies")
    with h5py.File(gals, "w") as f:
        for name in GALAXIES_FIELDS:
            f.create_dataset(name, data=data.assembly_galaxies[name].astype(np.float32))
    return stars, gals


def write_sublink(base: Path, tree: Tree) -> Path:
    """Write ``trees/SubLink/tree_extended.0.hdf5`` (one flat table)."""
    path = sublink_path(base, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, values in tree.fields.items():
            f.create_dataset(name, data=values)
    return path
