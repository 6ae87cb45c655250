"""The local-copy route to IllustrisTNG: a simulation's files on disk, read through its offsets.

``tng.base_path`` points at a simulation's ``output/`` folder (what
``illustris_python`` calls basePath; ``postprocessing/`` lies beside it). :class:`LocalTNG`
reads catalogs with ``illustris_python.groupcat`` and one galaxy's particles with
``illustris_python.snapshot.loadSubhalo`` (:meth:`LocalTNG.load_galaxy`), and thousands of
galaxies through the offsets file with each snapshot chunk opened once and each needed
range read once (:meth:`LocalTNG.iter_galaxies`, the bulk path). Both return
:class:`~galforge.archives.tng_galaxy.Galaxy` objects in physical units, with the
StellarAssembly InSitu flag of every star (rows of ``stars_SSS.hdf5`` are in snapshot
order; their ``ParticleID`` column is checked against the snapshot's).

Single files are read too: :func:`read_groupcat_chunk`, :func:`read_particles` (a
snapshot chunk or an API cutout), :func:`read_sublink` (a tree file or an API branch).

Bad input gives one :class:`~galforge.io.InputError` naming the file: a missing or
truncated chunk, a missing offsets or stellar-assembly file, a subhalo id out of range,
stars without ParticleIDs where the in-situ join needs them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from galforge.archives.tng_galaxy import Galaxy, field_request, make_galaxy
from galforge.archives.tng_layout import (
    CATALOG_UNITS,
    PARTICLE_TYPE_NUMBERS,
    groupcat_path,
    offsets_path,
    snapshot_path,
    stellar_assembly_path,
)
from galforge.io import InputError

__all__ = [
    "LocalTNG",
    "catalog_physical",
    "read_groupcat_chunk",
    "read_header",
    "read_particles",
    "read_sublink",
]


# ------------------------------------------------------------------------------------------
# Single files
# ------------------------------------------------------------------------------------------


def _h5(path: str | Path, what: str) -> h5py.File:
    """An HDF5 file open for reading; a clear InputError when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: {what} is not a readable HDF5 file (truncated or corrupt? "
                         f"{exc})") from None


@contextlib.contextmanager
def _open(path: str | Path, what: str) -> Iterator[h5py.File]:
    """:func:`_h5` as a context manager."""
    f = _h5(path, what)
    try:
        yield f
    finally:
        f.close()


def read_header(path: str | Path, what: str = "TNG file") -> dict[str, Any]:
    """The ``Header`` attributes of a group-catalog chunk, snapshot chunk or cutout."""
    with _open(path, what) as f:
        if "Header" not in f:
            raise InputError(f"{path}: {what} has no Header group")
        return {k: _plain(v) for k, v in f["Header"].attrs.items()}


def _plain(v: Any) -> Any:
    """Attribute values as Python scalars / arrays (length-1 arrays of old cutouts unwrapped)."""
    a = np.asarray(v)
    if a.dtype.kind == "O":
        a = a.astype(str)
    if a.dtype.kind in "SU":
        out = a.item() if a.ndim == 0 or a.size == 1 else a
        return out.decode() if isinstance(out, bytes) else out
    if a.ndim == 1 and a.size == 1:
        return a[0].item()
    return a.item() if a.ndim == 0 else a


def read_groupcat_chunk(path: str | Path, group: str = "Subhalo",
                        fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The ``Group/`` or ``Subhalo/`` datasets of one group-catalog chunk, in code units.

    An empty chunk (no datasets) gives zero-length arrays of the requested fields (or an
    empty dict when ``fields`` is None).
    """
    if group not in ("Group", "Subhalo"):
        raise InputError(f"group {group!r}: 'Group' or 'Subhalo'")
    with _open(path, "group-catalog chunk") as f:
        if group not in f:
            raise InputError(f"{path}: not a group-catalog chunk (no {group}/ group)")
        names = list(f[group]) if fields is None else list(fields)
        if not len(f[group]):
            return {n: np.zeros(0) for n in (fields or [])}
        missing = [n for n in names if n not in f[group]]
        if missing:
            raise InputError(f"{path}: {group}/{missing[0]} not in the group catalog")
        return {n: f[group][n][()] for n in names}


def catalog_physical(name: str, values: np.ndarray, a: float, h: float) -> np.ndarray:
    """A group-catalog field in physical units (kpc, Msun, km/s; :data:`CATALOG_UNITS`)."""
    if name not in CATALOG_UNITS:
        raise InputError(f"{name}: no physical unit known for this group-catalog field")
    pa, ph, f = CATALOG_UNITS[name]
    return np.asarray(values, dtype=np.float64) * a**pa * h**ph * f


def read_particles(path: str | Path, ptype: str, fields: Sequence[str] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]], dict[str, Any]]:
    """Particles of one type from a snapshot chunk or an API cutout.

    Returns ``(arrays, unit attributes per field, header)``; a file without that type
    gives zero-length arrays.
    """
    num = _ptype_number(ptype)
    header = read_header(path, "particle file")
    with _open(path, "particle file") as f:
        grp = f.get(f"PartType{num}")
        if grp is None:
            return {n: np.zeros(0) for n in (fields or [])}, {}, header
        names = list(grp) if fields is None else list(fields)
        missing = [n for n in names if n not in grp]
        if missing:
            raise InputError(f"{path}: PartType{num}/{missing[0]} not in the file (it holds "
                             f"{', '.join(sorted(grp))})")
        data = {n: grp[n][()] for n in names}
        attrs = {n: dict(grp[n].attrs) for n in names}
    return data, attrs, header


def read_sublink(path: str | Path, fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """A SubLink table: a ``tree_extended.N.hdf5`` chunk or a branch the API serves."""
    with _open(path, "SubLink tree") as f:
        if "SubhaloID" not in f:
            raise InputError(f"{path}: not a SubLink tree (no SubhaloID dataset)")
        names = list(f) if fields is None else list(fields)
        missing = [n for n in names if n not in f]
        if missing:
            raise InputError(f"{path}: {missing[0]} not in the SubLink tree")
        return {n: f[n][()] for n in names}


def _ptype_number(ptype: str | int) -> int:
    if isinstance(ptype, int) and not isinstance(ptype, bool) and 0 <= ptype <= 5:
        return ptype
    if ptype in PARTICLE_TYPE_NUMBERS:
        return PARTICLE_TYPE_NUMBERS[ptype]  # type: ignore[index]
    raise InputError(f"particle type {ptype!r}: one of {', '.join(PARTICLE_TYPE_NUMBERS)}")


# ------------------------------------------------------------------------------------------
# A simulation copy
# ------------------------------------------------------------------------------------------


class LocalTNG:
    """One snapshot of a local TNG copy (``base_path`` = the simulation's ``output/``).

    Parameters
    ----------
    base_path : path
        The ``output/`` folder (``groups_SSS/``, ``snapdir_SSS/``; ``postprocessing/``
        beside it).
    snapshot : int
        The snapshot (99 is z = 0).

    Raises
    ------
    InputError
        When the folder or the snapshot's first group-catalog and snapshot chunks are
        missing or unreadable.
    """

    def __init__(self, base_path: str | Path, snapshot: int = 99) -> None:
        self.base = Path(base_path)
        if isinstance(snapshot, bool) or not isinstance(snapshot, (int, np.integer)) or \
                not 0 <= snapshot <= 99:
            raise InputError(f"snapshot {snapshot!r} must be an integer in 0..99")
        self.snap = int(snapshot)
        if not self.base.is_dir():
            raise InputError(f"tng.base_path {self.base}: not a folder (it should be a "
                             "simulation's output/ folder)")
        self.header = read_header(groupcat_path(self.base, self.snap, 0), "group-catalog chunk")
        self.snap_header = read_header(snapshot_path(self.base, self.snap, 0), "snapshot chunk")
        self._units: dict[tuple[str, str], dict[str, Any]] = {}
        self._offsets: dict[str, np.ndarray] | None = None

    # -- basics -------------------------------------------------------------------------------
    @property
    def n_subhalos(self) -> int:
        return int(self.header["Nsubgroups_Total"])

    @property
    def n_groupcat_files(self) -> int:
        return int(self.header["NumFiles"])

    @property
    def n_snapshot_files(self) -> int:
        return int(self.snap_header["NumFilesPerSnapshot"])

    @property
    def a(self) -> float:
        return float(self.snap_header["Time"])

    @property
    def h(self) -> float:
        return float(self.snap_header["HubbleParam"])

    def check_subhalo(self, subhalo_id: Any) -> int:
        """``subhalo_id`` as an int, or an InputError when it is not one of this snapshot's."""
        if isinstance(subhalo_id, bool) or not isinstance(subhalo_id, (int, np.integer)):
            raise InputError(f"subhalo id {subhalo_id!r} must be an integer")
        if not 0 <= int(subhalo_id) < self.n_subhalos:
            raise InputError(f"subhalo id {int(subhalo_id)} out of range: snapshot {self.snap} "
                             f"of {self.base} has {self.n_subhalos} subhaloes "
                             f"(0..{self.n_subhalos - 1})")
        return int(subhalo_id)

    def _files(self, kind: str) -> list[Path]:
        if kind == "groupcat":
            return [groupcat_path(self.base, self.snap, k) for k in range(self.n_groupcat_files)]
        return [snapshot_path(self.base, self.snap, k) for k in range(self.n_snapshot_files)]

    def _diagnose(self, kind: str, exc: BaseException) -> InputError:
        """The clearest error for a failed illustris_python read: the first bad file."""
        what = "group-catalog chunk" if kind == "groupcat" else "snapshot chunk"
        for path in self._files(kind):
            try:
                with _open(path, what):
                    pass
            except InputError as err:
                return err
        return InputError(f"{self.base}: reading the {what}s of snapshot {self.snap} failed: "
                          f"{type(exc).__name__}: {exc}")

    # -- catalogs (illustris_python) -----------------------------------------------------------
    def subhalos(self, fields: Sequence[str]) -> dict[str, np.ndarray]:
        """Subhalo fields of the whole catalog (``illustris_python.groupcat.loadSubhalos``)."""
        return self._catalog("Subhalo", fields)

    def halos(self, fields: Sequence[str]) -> dict[str, np.ndarray]:
        """Group fields of the whole catalog (``illustris_python.groupcat.loadHalos``)."""
        return self._catalog("Group", fields)

    def _catalog(self, group: str, fields: Sequence[str]) -> dict[str, np.ndarray]:
        import illustris_python as il

        fields = list(fields)
        load = il.groupcat.loadSubhalos if group == "Subhalo" else il.groupcat.loadHalos
        try:
            out = load(str(self.base), self.snap, fields=fields)
        except Exception as exc:  # noqa: BLE001 - illustris raises bare Exceptions
            if "does not have requested field" in str(exc):
                raise InputError(f"{self.base}: {exc}") from None
            raise self._diagnose("groupcat", exc) from None
        return {fields[0]: out} if len(fields) == 1 else {k: out[k] for k in fields}

    # -- offsets ------------------------------------------------------------------------------
    def offsets(self) -> dict[str, np.ndarray]:
        """The offsets file's FileOffsets and Subhalo/SnapByType (read once)."""
        if self._offsets is None:
            path = offsets_path(self.base, self.snap)
            if not path.is_file():
                raise InputError(f"{path}: offsets file not found; a local TNG copy needs "
                                 f"postprocessing/offsets/offsets_{self.snap:03d}.hdf5 beside "
                                 "output/ (download it with the group catalog)")
            with _open(path, "offsets file") as f:
                need = ("FileOffsets/Subhalo", "FileOffsets/SnapByType", "Subhalo/SnapByType")
                for key in need:
                    if key not in f:
                        raise InputError(f"{path}: {key} missing (not a TNG offsets file)")
                self._offsets = {k: f[k][()] for k in need}
        return self._offsets

    def _unit_attrs(self, ptype: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Unit attributes of ``names`` from the first snapshot chunk holding ``ptype``."""
        want = [n for n in names if (ptype, n) not in self._units]
        if want:
            num = _ptype_number(ptype)
            for path in self._files("snapshot"):
                with _open(path, "snapshot chunk") as f:
                    grp = f.get(f"PartType{num}")
                    if grp is None:
                        continue
                    for n in want:
                        if n not in grp:
                            raise InputError(f"{path}: PartType{num}/{n} not in the snapshot")
                        self._units[ptype, n] = dict(grp[n].attrs)
                    break
        return {n: self._units.get((ptype, n), {}) for n in names}

    def _subhalo_pos_vel(self, subhalo_id: int) -> tuple[np.ndarray, np.ndarray]:
        off = self.offsets()["FileOffsets/Subhalo"]
        chunk = int(np.searchsorted(off, subhalo_id, side="right") - 1)
        local = subhalo_id - int(off[chunk])
        path = groupcat_path(self.base, self.snap, chunk)
        with _open(path, "group-catalog chunk") as f:
            try:
                return f["Subhalo/SubhaloPos"][local], f["Subhalo/SubhaloVel"][local]
            except (KeyError, IndexError, ValueError) as exc:
                raise InputError(f"{path}: subhalo {subhalo_id} (row {local}) not readable: "
                                 f"{exc}; the offsets file does not match the catalog") from None

    # -- one galaxy -----------------------------------------------------------------------------
    def load_galaxy(self, subhalo_id: int, fields: Mapping[str, Sequence[str]] | Sequence[str] |
                    None = None, *, in_situ: bool = True) -> Galaxy:
        """One subhalo's particles in physical units (``illustris_python.snapshot.loadSubhalo``).

        Parameters
        ----------
        subhalo_id : int
            Subfind ID at this snapshot.
        fields : mapping or list, optional
            ``{"stars": [...], "dm": [...]}`` (a list: stars only); default
            :data:`~galforge.archives.tng_galaxy.DEFAULT_FIELDS`.
        in_situ : bool
            Join each star's InSitu flag from ``stars_SSS.hdf5`` (needs ParticleIDs).
        """
        import illustris_python as il

        sid = self.check_subhalo(subhalo_id)
        req = field_request(fields)
        pos, vel = self._subhalo_pos_vel(sid)
        raw: dict[str, dict[str, np.ndarray]] = {}
        for ptype, names in req.items():
            try:
                got = il.snapshot.loadSubhalo(str(self.base), self.snap, sid, ptype,
                                              fields=list(names))
            except Exception as exc:  # noqa: BLE001 - illustris raises bare Exceptions
                raise self._diagnose("snapshot", exc) from None
            if isinstance(got, np.ndarray):
                got = {names[0]: got}
            if not got.get("count", 1):
                got = {n: np.zeros(0) for n in names}
            raw[ptype] = {n: got[n] for n in names}
        flags = None
        if in_situ and "stars" in raw:
            start = int(self.offsets()["Subhalo/SnapByType"][sid, 4])
            ids = raw["stars"].get("ParticleIDs")
            if ids is None:
                raise InputError(f"{self.base}: in-situ flags are joined by ParticleID: request "
                                 "stars ParticleIDs (or in_situ=False)")
            flags = self._assembly_rows(start, len(ids), np.asarray(ids))
        attrs = {p: self._unit_attrs(p, n) for p, n in req.items()}
        return make_galaxy(sid, self.snap, self.snap_header, pos, vel, raw, attrs, flags,
                           where=f"{self.base} snapshot {self.snap} subhalo {sid}")

    def _assembly_rows(self, start: int, n: int, ids: np.ndarray,
                       handle: h5py.File | None = None) -> np.ndarray:
        """InSitu of the PartType4 rows [start, start + n), their ParticleIDs checked."""
        path = stellar_assembly_path(self.base, self.snap, "stars")
        with contextlib.ExitStack() as stack:
            f = handle if handle is not None else stack.enter_context(
                _open(path, "stellar assembly catalog"))
            if "InSitu" not in f:
                raise InputError(f"{path}: no InSitu dataset (not a StellarAssembly stars file)")
            if start + n > f["InSitu"].shape[0]:
                raise InputError(f"{path}: {f['InSitu'].shape[0]} rows, but the snapshot has "
                                 f"star particle {start + n - 1}: catalog and snapshot differ")
            flags = f["InSitu"][start: start + n]
            if "ParticleID" in f and not np.array_equal(f["ParticleID"][start: start + n], ids):
                raise InputError(f"{path}: ParticleIDs of rows {start}..{start + n - 1} differ "
                                 "from the snapshot's: catalog and snapshot do not match")
        return flags

    # -- many galaxies (bulk) ---------------------------------------------------------------------
    def iter_galaxies(self, subhalo_ids: Iterable[int], fields: Mapping[str, Sequence[str]] |
                      Sequence[str] | None = None, *, in_situ: bool = True,
                      batch_particles: int = 4_000_000, max_gap: int = 1_000_000
                      ) -> Iterator[Galaxy]:
        """Galaxies of ``subhalo_ids`` in ascending id, reading each snapshot chunk once.

        The offsets file locates every subhalo's particles; galaxies are taken in batches
        of about ``batch_particles`` particles; each chunk is opened once and each range
        of it that holds requested particles read once (ranges closer than ``max_gap``
        particles are read as one). Values are identical to :meth:`load_galaxy`'s.
        """
        ids = np.unique(np.asarray(list(subhalo_ids), dtype=np.int64))
        for s in ids[:1].tolist() + ids[-1:].tolist():
            self.check_subhalo(s)
        if not ids.size:
            return
        req = field_request(fields)
        off = self.offsets()
        cat = self.subhalos(["SubhaloPos", "SubhaloVel", "SubhaloLenType"])
        types = {p: _ptype_number(p) for p in req}
        file_start = off["FileOffsets/SnapByType"]
        with _ChunkReader(self._files("snapshot"), file_start) as reader, contextlib.ExitStack() as st:
            sa = None
            if in_situ and "stars" in req:
                if "ParticleIDs" not in req["stars"]:
                    raise InputError(f"{self.base}: in-situ flags are joined by ParticleID: "
                                     "request stars ParticleIDs (or in_situ=False)")
                sa = st.enter_context(_open(stellar_assembly_path(self.base, self.snap, "stars"),
                                            "stellar assembly catalog"))
            lens = cat["SubhaloLenType"][ids].astype(np.int64).sum(axis=1)
            for batch in _batches(lens, batch_particles):
                sel = ids[batch]
                raw = reader.read({types[p]: (names,
                                              off["Subhalo/SnapByType"][sel, types[p]]
                                              .astype(np.int64),
                                              cat["SubhaloLenType"][sel, types[p]]
                                              .astype(np.int64)) for p, names in req.items()},
                                  max_gap)
                raw = {p: raw[types[p]] for p in req}
                # unit attributes as the reader met them (else from the first chunk of the type)
                attrs = {p: {n: reader.attrs[types[p], n] if (types[p], n) in reader.attrs
                             else self._unit_attrs(p, [n])[n] for n in names}
                         for p, names in req.items()}
                for k, sid in enumerate(sel.tolist()):
                    one = {p: {n: raw[p][n][k] for n in names} for p, names in req.items()}
                    flags = None
                    if sa is not None:
                        start = int(off["Subhalo/SnapByType"][sid, 4])
                        pid = one["stars"]["ParticleIDs"]
                        flags = self._assembly_rows(start, len(pid), pid, handle=sa)
                    yield make_galaxy(sid, self.snap, self.snap_header, cat["SubhaloPos"][sid],
                                      cat["SubhaloVel"][sid], one, attrs, flags,
                                      where=f"{self.base} snapshot {self.snap} subhalo {sid}")


def _batches(lens: np.ndarray, limit: int) -> Iterator[slice]:
    start, acc = 0, 0
    for i, n in enumerate(lens.tolist()):
        if acc and acc + n > limit:
            yield slice(start, i)
            start, acc = i, 0
        acc += n
    yield slice(start, len(lens))


class _ChunkReader:
    """Reads particle ranges from snapshot chunks, opening each chunk once.

    Batches come in ascending offsets; a chunk stays open until no later batch can need
    it (every type's ranges have moved past it).
    """

    def __init__(self, files: list[Path], file_start: np.ndarray) -> None:
        self.files = files
        self.start = np.asarray(file_start, dtype=np.int64)  # (n_files, 6)
        self.open: dict[int, h5py.File] = {}
        self.attrs: dict[tuple[int, str], dict[str, Any]] = {}  # unit attributes met

    def __enter__(self) -> _ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self.open.values():
            f.close()
        self.open.clear()

    def _file(self, k: int) -> h5py.File:
        if k not in self.open:
            self.open[k] = _h5(self.files[k], "snapshot chunk")
        return self.open[k]

    def _bounds(self, ptype: int) -> np.ndarray:
        return np.append(self.start[:, ptype], np.iinfo(np.int64).max)

    def read(self, requests: Mapping[int, tuple[Sequence[str], np.ndarray, np.ndarray]],
             max_gap: int) -> dict[int, dict[str, list[np.ndarray]]]:
        """Per type, for each (start, len) range (ascending, disjoint) the arrays of its names."""
        out: dict[int, dict[str, list[Any]]] = {}
        filled: dict[int, np.ndarray] = {}
        for t, (names, starts, _) in requests.items():
            out[t] = {n: [None] * len(starts) for n in names}
            filled[t] = np.zeros(len(starts), dtype=np.int64)
        for k in range(len(self.files)):  # chunks outside, types inside: each chunk opened once
            for t, (names, starts, lens) in requests.items():
                bounds = self._bounds(t)
                c0, c1 = int(bounds[k]), int(bounds[k + 1])
                ends = starts + lens
                hit = np.flatnonzero((starts < c1) & (ends > c0) & (lens > 0))
                if hit.size:
                    self._read_chunk(k, t, names, hit, starts, lens, c0, c1, max_gap, out[t],
                                     filled[t])
        for t, (names, starts, lens) in requests.items():
            bad = np.flatnonzero(filled[t] != lens)
            if bad.size:
                g = int(bad[0])
                raise InputError(f"{self.files[0].parent}: particle range {int(starts[g])}"
                                 f"+{int(lens[g])} of PartType{t} runs past the snapshot's "
                                 "chunks (offsets and snapshot differ)")
            for n in names:
                out[t][n] = [np.zeros(0) if v is None else v for v in out[t][n]]
        self._release(requests)
        return out

    def _read_chunk(self, k: int, t: int, names: Sequence[str], hit: np.ndarray,
                    starts: np.ndarray, lens: np.ndarray, c0: int, c1: int, max_gap: int,
                    out: dict[str, list[Any]], filled: np.ndarray) -> None:
        grp = self._file(k).get(f"PartType{t}")
        if grp is None:
            raise InputError(f"{self.files[k]}: PartType{t} missing, but the offsets place "
                             "particles in this chunk")
        missing = [n for n in names if n not in grp]
        if missing:
            raise InputError(f"{self.files[k]}: PartType{t}/{missing[0]} not in the snapshot")
        lo = np.maximum(starts[hit], c0)
        hi = np.minimum(starts[hit] + lens[hit], c1)
        cut = np.flatnonzero(lo[1:] - hi[:-1] > max_gap) + 1
        for w in np.split(np.arange(len(hit)), cut):  # windows of nearby ranges, read once
            w0, w1 = int(lo[w[0]]), int(hi[w[-1]])
            block = {}
            for n in names:
                block[n] = grp[n][w0 - c0: w1 - c0]
                self.attrs.setdefault((t, n), dict(grp[n].attrs))
            for j in w:
                g = int(hit[j])
                a0, a1 = int(lo[j]) - w0, int(hi[j]) - w0
                for n in names:
                    piece = block[n][a0:a1]
                    if out[n][g] is None:
                        out[n][g] = np.empty((int(lens[g]), *piece.shape[1:]), dtype=piece.dtype)
                    out[n][g][filled[g]: filled[g] + len(piece)] = piece
                filled[g] += a1 - a0

    def _release(self, requests: Mapping[int, tuple[Sequence[str], np.ndarray, np.ndarray]]
                 ) -> None:
        """Close the chunks that no later (higher) range of any type can touch."""
        keep_from = len(self.files)
        for t, (_, starts, lens) in requests.items():
            if len(starts):
                last = int(starts[-1] + max(int(lens[-1]), 1) - 1)
                keep_from = min(keep_from, int(np.searchsorted(self.start[:, t], last,
                                                               side="right") - 1))
        for k in [j for j in self.open if j < keep_from]:
            self.open.pop(k).close()
