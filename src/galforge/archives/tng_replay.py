"""A local replay of the TNG web API serving a simulation copy (the mock), for offline tests.

:class:`TNGReplay` runs a :class:`~galforge.archives.testserver.FaultServer` on
127.0.0.1 whose routes answer as the TNG API does, from a local copy read with
:class:`~galforge.archives.tng_local.LocalTNG`::

    /api/                                       simulations
    /api/<sim>/                                 the simulation (snapshots, files links)
    /api/<sim>/snapshots/<S>/                   one snapshot
    /api/<sim>/snapshots/<S>/subhalos/          search: ?mass_stars__gt=..&limit=&offset=
                                                &order_by=; JSON with count/next/previous
    /api/<sim>/snapshots/<S>/subhalos/<id>/     one subhalo (pos_x, vel_x, mass_stars, ...)
    .../subhalos/<id>/cutout.hdf5?stars=..&dm=..  the requested fields only, with a
                                                Content-Disposition file name
    .../subhalos/<id>/sublink/mpb.hdf5          the main progenitor branch
    /api/<sim>/files/                           file listings
    /api/<sim>/files/groupcat-<S>/              chunk list (+ checksums/); ?Subhalo=<field>
                                                or ?Group=<field>: that field, every object
    /api/<sim>/files/groupcat-<S>.<N>.hdf5      one chunk
    /api/<sim>/files/stellar_assembly/          stars_SSS / galaxies_SSS (+ checksums/)

Every request needs the ``api-key`` header (missing: 401, wrong: 403, answered without
echoing it). Scripted faults: :meth:`TNGReplay.fail` answers a path with an error status
(500, 429 with Retry-After, ...) for its next N requests; :meth:`TNGReplay.drop_cutout`
serves one cutout that breaks off after K bytes (resumable with ``Range``).
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import h5py
import numpy as np

from galforge.archives.testserver import FaultServer, RecordedRequest, Reply
from galforge.archives.tng_layout import (
    CUTOUT_HEADER,
    HEADER_TNG100,
    PARTICLE_TYPE_NUMBERS,
    groupcat_path,
    stellar_assembly_path,
)
from galforge.archives.tng_local import LocalTNG, _h5

__all__ = ["TNGReplay"]

#: Search fields of the replay: API name -> (catalog field, column or None, scale).
SEARCH_FIELDS: dict[str, tuple[str, int | None]] = {
    "mass": ("SubhaloMass", None), "mass_gas": ("SubhaloMassType", 0),
    "mass_dm": ("SubhaloMassType", 1), "mass_stars": ("SubhaloMassType", 4),
    "mass_bhs": ("SubhaloMassType", 5), "sfr": ("SubhaloSFR", None),
    "len": ("SubhaloLen", None), "len_stars": ("SubhaloLenType", 4),
    "len_dm": ("SubhaloLenType", 1), "halfmassrad": ("SubhaloHalfmassRad", None),
    "halfmassrad_stars": ("SubhaloHalfmassRadType", 4), "grnr": ("SubhaloGrNr", None),
    "vmax": ("SubhaloVmax", None),
}
_OPS = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}


class TNGReplay:
    """The TNG API for the local copy ``base_path`` (``<sim>/output``), at ``/api/``.

    Parameters
    ----------
    base_path : path
        The copy's ``output/`` folder (e.g. a mock's ``MockTNG.base_path``).
    snapshots : sequence of int
        Snapshots served.
    key : str
        The API key every request must carry.
    sim : str
        Simulation name in the URLs.
    """

    def __init__(self, base_path: str | Path, snapshots: Sequence[int], key: str,
                 sim: str = "TNG100-1") -> None:
        self.base = Path(base_path)
        self.sim = sim
        self.key = key
        self.local = {s: LocalTNG(self.base, s) for s in snapshots}
        self.server = FaultServer()
        self._faults: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._catalog: dict[int, dict[str, np.ndarray]] = {}
        self._halos: dict[tuple[str, int], np.ndarray] = {}
        self.server.add_handler("/api/", self._dispatch, methods=("GET", "HEAD"), prefix=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> TNGReplay:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def api_url(self) -> str:
        """The API root, ``http://127.0.0.1:<port>/api/``."""
        return self.server.url("/api/")

    def url(self, path: str) -> str:
        return self.server.url("/api/" + path.lstrip("/"))

    # -- faults ---------------------------------------------------------------------------------
    def fail(self, path: str, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer ``path`` (e.g. ``TNG100-1/snapshots/99/subhalos/3/``) with ``status`` for its
        next ``times`` requests (``Retry-After`` header when given)."""
        with self._lock:
            self._faults["/api/" + path.lstrip("/")] = [status, times, retry_after]

    def drop_cutout(self, snap: int, subhalo_id: int, fields: Mapping[str, Sequence[str]],
                    after: int, times: int | None = 1) -> bytes:
        """Serve this cutout as a fixed file that breaks off after ``after`` bytes on its
        next ``times`` requests (Range requests resume it); returns the whole file."""
        data = self.cutout_bytes(snap, subhalo_id, {k: list(v) for k, v in fields.items()})
        path = f"/api/{self.sim}/snapshots/{snap}/subhalos/{subhalo_id}/cutout.hdf5"
        self.server.add(path, data, drop_after=after, drop_times=times,
                        require_headers={"api-key": self.key}, auth_status=401,
                        content_disposition=f"attachment; filename=cutout_{subhalo_id}.hdf5")
        return data

    # -- routing ----------------------------------------------------------------------------------
    def _dispatch(self, req: RecordedRequest) -> Reply:
        got = req.header("api-key")
        if got is None:
            return Reply.json({"detail": "Authentication credentials were not provided."}, 401)
        if got != self.key:
            return Reply.json({"detail": "Invalid API key."}, 403)
        with self._lock:
            fault = self._faults.get(req.path)
            if fault and fault[1] > 0:
                fault[1] -= 1
                headers = {"Retry-After": fault[2]} if fault[2] else {}
                return Reply(fault[0], f"scripted failure {fault[0]}\n".encode(),
                             {"Content-Type": "text/plain", **headers})
        parts = [p for p in req.path[len("/api/"):].split("/") if p]
        try:
            return self._route(parts, req)
        except _NotFound as exc:
            return Reply.json({"detail": f"Not found: {exc}"}, 404)

    def _route(self, parts: list[str], req: RecordedRequest) -> Reply:
        q = {k: v[-1] for k, v in req.query.items()}
        if not parts:
            return Reply.json({"simulations": [{"name": self.sim, "url": self.url(self.sim + "/")}]})
        if parts[0] != self.sim:
            raise _NotFound(parts[0])
        rest = parts[1:]
        if not rest:
            return Reply.json(self._simulation())
        if rest[0] == "snapshots" and len(rest) >= 2:
            snap = _int(rest[1])
            if snap not in self.local:
                raise _NotFound(f"snapshot {rest[1]}")
            if len(rest) == 2:
                return Reply.json(self._snapshot(snap))
            if rest[2] == "subhalos" and len(rest) == 3:
                return Reply.json(self._search(snap, q, req))
            if rest[2] == "subhalos" and len(rest) >= 4:
                return self._subhalo(snap, _int(rest[3]), rest[4:], req)
        if rest[0] == "files":
            return self._files(rest[1:], q)
        raise _NotFound("/".join(parts))

    # -- JSON ---------------------------------------------------------------------------------
    def _simulation(self) -> dict[str, Any]:
        any_snap = next(iter(self.local.values()))
        return {"name": self.sim, "num_snapshots": 100, "boxsize": any_snap.header["BoxSize"],
                "hubble": any_snap.h, "omega_0": any_snap.header["Omega0"],
                "num_files_groupcat": any_snap.n_groupcat_files,
                "num_files_snapshot": any_snap.n_snapshot_files,
                "snapshots": self.url(f"{self.sim}/snapshots/"),
                "files": self.url(f"{self.sim}/files/")}

    def _snapshot(self, snap: int) -> dict[str, Any]:
        t = self.local[snap]
        return {"number": snap, "redshift": float(t.snap_header["Redshift"]),
                "num_subhalos": t.n_subhalos,
                "num_groups_subfind": int(t.header["Ngroups_Total"]),
                "subhalos": self.url(f"{self.sim}/snapshots/{snap}/subhalos/"),
                "files": {"groupcat": self.url(f"{self.sim}/files/groupcat-{snap}/")}}

    def catalog(self, snap: int) -> dict[str, np.ndarray]:
        if snap not in self._catalog:
            names = sorted({f for f, _ in SEARCH_FIELDS.values()} | {"SubhaloPos", "SubhaloVel",
                                                                   "SubhaloFlag"})
            self._catalog[snap] = self.local[snap].subhalos(names)
        return self._catalog[snap]

    def _first_sub(self, snap: int) -> np.ndarray:
        key = ("GroupFirstSub", snap)
        if key not in self._halos:
            self._halos[key] = self.local[snap].halos(["GroupFirstSub"])["GroupFirstSub"]
        return self._halos[key]

    def _value(self, snap: int, name: str) -> np.ndarray:
        field, col = SEARCH_FIELDS[name]
        v = self.catalog(snap)[field]
        return v[:, col] if col is not None else v

    def _search(self, snap: int, q: Mapping[str, str], req: RecordedRequest) -> dict[str, Any]:
        n = self.local[snap].n_subhalos
        keep = np.ones(n, dtype=bool)
        for key, value in q.items():
            if key in ("limit", "offset", "order_by", "format"):
                continue
            name, _, op = key.partition("__")
            if name not in SEARCH_FIELDS or (op and op not in _OPS):
                raise _NotFound(f"filter {key}")
            x = float(value)
            keep &= _OPS[op](self._value(snap, name), x) if op else self._value(snap, name) == x
        ids = np.flatnonzero(keep)
        order = q.get("order_by")
        if order:
            v = self._value(snap, order.lstrip("-"))[ids]
            ids = ids[np.argsort(-v if order.startswith("-") else v, kind="stable")]
        limit, offset = int(q.get("limit", 100)), int(q.get("offset", 0))
        page = ids[offset: offset + limit]
        h = self.local[snap].h

        def link(off: int) -> str:
            return self.url(f"{self.sim}/snapshots/{snap}/subhalos/") + "?" + urlencode(
                {**q, "offset": off, "limit": limit})

        mass = self.catalog(snap)["SubhaloMass"]
        return {
            "count": len(ids),
            "next": link(offset + limit) if offset + limit < len(ids) else None,
            "previous": link(max(offset - limit, 0)) if offset > 0 else None,
            "results": [{"id": int(i), "sfr": float(self.catalog(snap)["SubhaloSFR"][i]),
                         "mass_log_msun": math.log10(max(float(mass[i]) * 1e10 / h, 1e-30)),
                         "url": self.url(f"{self.sim}/snapshots/{snap}/subhalos/{int(i)}/")}
                        for i in page],
        }

    def _subhalo(self, snap: int, sid: int, rest: list[str], req: RecordedRequest) -> Reply:
        t = self.local[snap]
        if not 0 <= sid < t.n_subhalos:
            raise _NotFound(f"subhalo {sid}")
        base = self.url(f"{self.sim}/snapshots/{snap}/subhalos/{sid}/")
        if not rest:
            c = self.catalog(snap)
            doc = {"id": sid, "snap": snap, "url": base,
                   "cutouts": {"subhalo": base + "cutout.hdf5"},
                   "trees": {"sublink_mpb": base + "sublink/mpb.hdf5"},
                   "primary_flag": int(self._first_sub(snap)[c["SubhaloGrNr"][sid]] == sid)}
            for name in SEARCH_FIELDS:
                doc[name] = self._value(snap, name)[sid].item()
            for i, axis in enumerate("xyz"):
                doc[f"pos_{axis}"] = float(c["SubhaloPos"][sid, i])
                doc[f"vel_{axis}"] = float(c["SubhaloVel"][sid, i])
            return Reply.json(doc)
        if rest == ["cutout.hdf5"]:
            fields: dict[str, list[str] | None] = {}
            for ptype, values in req.query.items():
                if ptype in PARTICLE_TYPE_NUMBERS:
                    fields[ptype] = None if values[-1] == "all" else values[-1].split(",")
            data = self.cutout_bytes(snap, sid, fields or {"stars": None, "dm": None})
            return _file_reply(data, f"cutout_{sid}.hdf5")
        if rest == ["sublink", "mpb.hdf5"]:
            return _file_reply(self._mpb_bytes(snap, sid), f"sublink_mpb_{sid}.hdf5")
        raise _NotFound("/".join(rest))

    # -- files ------------------------------------------------------------------------------------
    def _files(self, rest: list[str], q: Mapping[str, str]) -> Reply:
        if not rest:
            out = {f"groupcat-{s}": self.url(f"{self.sim}/files/groupcat-{s}/")
                   for s in self.local}
            out["stellar_assembly"] = self.url(f"{self.sim}/files/stellar_assembly/")
            return Reply.json(out)
        name = rest[0]
        if name.startswith("groupcat-"):
            head, _, chunk = name[len("groupcat-"):].partition(".")
            snap = _int(head)
            if snap not in self.local:
                raise _NotFound(name)
            paths = [groupcat_path(self.base, snap, k)
                     for k in range(self.local[snap].n_groupcat_files)]
            if chunk:  # groupcat-99.3.hdf5
                k = _int(chunk.removesuffix(".hdf5"))
                if not 0 <= k < len(paths):
                    raise _NotFound(name)
                return _file_reply(paths[k].read_bytes(), paths[k].name)
            if rest[1:] == ["checksums"]:
                return _checksums(paths)
            group = next((g for g in ("Subhalo", "Group") if g in q), None)
            if group:
                return self._field_file(snap, group, q[group])
            return Reply.json({
                "files": [self.url(f"{self.sim}/files/groupcat-{snap}.{k}.hdf5")
                          for k in range(len(paths))],
                "checksums": self.url(f"{self.sim}/files/groupcat-{snap}/checksums/")})
        if name == "stellar_assembly":
            paths = [stellar_assembly_path(self.base, s, kind) for s in self.local
                     for kind in ("stars", "galaxies")]
            if len(rest) == 1:
                return Reply.json({
                    "files": [self.url(f"{self.sim}/files/stellar_assembly/{p.name}")
                              for p in paths],
                    "checksums": self.url(f"{self.sim}/files/stellar_assembly/checksums/")})
            if rest[1:] == ["checksums"]:
                return _checksums(paths)
            match = [p for p in paths if p.name == rest[1]]
            if not match:
                raise _NotFound(rest[1])
            return _file_reply(match[0].read_bytes(), match[0].name)
        raise _NotFound(name)

    def _field_file(self, snap: int, group: str, field: str) -> Reply:
        loaded = self.local[snap].subhalos([field]) if group == "Subhalo" else \
            self.local[snap].halos([field])
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            for k, v in self.local[snap].header.items():
                f.require_group("Header").attrs[k] = v
            f.create_dataset(f"{group}/{field}", data=loaded[field])
        return _file_reply(buf.getvalue(), f"fof_subhalo_tab_{snap:03d}.{group}.{field}.hdf5")

    # -- cutouts ---------------------------------------------------------------------------------
    def cutout_bytes(self, snap: int, sid: int, fields: Mapping[str, Sequence[str] | None]
                     ) -> bytes:
        """The ``cutout.hdf5`` of subhalo ``sid``: the requested fields of each type."""
        import illustris_python as il

        t = self.local[snap]
        h = t.snap_header
        request = "+".join(f"PartType{PARTICLE_TYPE_NUMBERS[p]}=" + ",".join(v or ["all"])
                           for p, v in fields.items())
        counts = np.zeros(6, dtype=np.int32)
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            groups = {}
            for ptype, names in fields.items():
                num = PARTICLE_TYPE_NUMBERS[ptype]
                got = il.snapshot.loadSubhalo(str(self.base), snap, sid, ptype,
                                              fields=list(names) if names else None)
                n = int(got["count"]) if isinstance(got, dict) else len(got)
                if isinstance(got, np.ndarray):
                    got = {names[0]: got}
                if n == 0:
                    continue
                counts[num] = n
                attrs = _dataset_attrs(self.base, snap, t.n_snapshot_files, num)
                grp = f.create_group(f"PartType{num}")
                for name, values in got.items():
                    if name == "count":
                        continue
                    ds = grp.create_dataset(name, data=values)
                    for k, v in attrs.get(name, {}).items():
                        ds.attrs[k] = v
                groups[ptype] = grp
            header = {
                "BoxSize": h["BoxSize"], "CutoutID": np.int64(sid), "CutoutRequest": request,
                "CutoutType": "subhalo", "Git_commit": np.bytes_(HEADER_TNG100["Git_commit"]),
                "Git_date": np.bytes_(HEADER_TNG100["Git_date"]), "HubbleParam": h["HubbleParam"],
                "MassTable": np.asarray(h["MassTable"], dtype=np.float64),
                "NumFilesPerSnapshot": np.int64(1), "NumPart_ThisFile": counts,
                "Omega0": h["Omega0"], "OmegaBaryon": h["OmegaBaryon"],
                "OmegaLambda": h["OmegaLambda"], "Redshift": h["Redshift"],
                "SimulationName": str(HEADER_TNG100["SimulationName"]),
                "SnapshotNumber": np.int64(snap), "Time": h["Time"],
                "UnitLength_in_cm": h["UnitLength_in_cm"], "UnitMass_in_g": h["UnitMass_in_g"],
                "UnitVelocity_in_cm_per_s": h["UnitVelocity_in_cm_per_s"]}
            hdr = f.create_group("Header")
            for k in CUTOUT_HEADER:
                hdr.attrs[k] = header[k]
        return buf.getvalue()

    def _mpb_bytes(self, snap: int, sid: int) -> bytes:
        import illustris_python as il

        tree = il.sublink.loadTree(str(self.base), snap, sid, onlyMPB=True)
        if tree is None:
            raise _NotFound(f"subhalo {sid} has no SubLink tree")
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            for k, v in tree.items():
                if k != "count":
                    f.create_dataset(k, data=v)
        return buf.getvalue()


_ATTRS: dict[tuple[Path, int, int], dict[str, dict[str, Any]]] = {}
_ATTRS_LOCK = threading.Lock()


def _dataset_attrs(base: Path, snap: int, n_files: int, num: int) -> dict[str, dict[str, Any]]:
    """The unit attributes of PartType``num``'s datasets (from the first chunk holding it)."""
    from galforge.archives.tng_layout import snapshot_path

    key = (base, snap, num)
    with _ATTRS_LOCK:  # the server answers requests in threads
        if key not in _ATTRS:
            found: dict[str, dict[str, Any]] = {}
            for k in range(n_files):
                with _h5(snapshot_path(base, snap, k), "snapshot chunk") as f:
                    if f"PartType{num}" in f:
                        found = {n: dict(d.attrs) for n, d in f[f"PartType{num}"].items()}
                        break
            _ATTRS[key] = found
        return _ATTRS[key]


class _NotFound(Exception):
    pass


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _NotFound(text) from None


def _file_reply(data: bytes, name: str) -> Reply:
    return Reply(200, data, {"Content-Type": "application/x-hdf5",
                             "Content-Disposition": f"attachment; filename={name}"})


def _checksums(paths: Sequence[Path]) -> Reply:
    lines = [f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.name}"  # noqa: S324 - a checksum
             for p in paths]
    return Reply.text("\n".join(lines) + "\n")
