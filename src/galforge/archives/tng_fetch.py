"""The web-API route to IllustrisTNG galaxies: cutouts cached by subhalo id, sharded, resumable.

:class:`ApiTNG` serves the same :class:`~galforge.archives.tng_galaxy.Galaxy` objects as
:class:`~galforge.archives.tng_local.LocalTNG`, from the TNG web API (``TNG_API_KEY``)
through :class:`~galforge.archives.tng.TNGClient` and the shared download layer:

* each subhalo's ``cutout.hdf5`` with exactly the fields asked for, and its JSON record
  (SubhaloPos and SubhaloVel), cached under ``<cache_dir>/tng/<sim>/snap_SSS/`` by
  subhalo id (``cutouts/<field set>/<id>.hdf5``, ``subhalos/<id>.json``) and never
  fetched twice;
* at most 4 downloads at once (the API's limit), retries with backoff on 429 and 5xx,
  ``.part`` files resumed with ``Range`` on the next attempt or run, atomic renames;
* work split over download jobs by ``subhalo id mod n_shards`` (:func:`shard_ids`);
* the StellarAssembly ``stars_SSS.hdf5`` fetched once (checked against the API's
  checksums where it lists them) for the in-situ join by ParticleID;
* single group-catalog fields for every subhalo (``files/groupcat-SS/?Subhalo=...``)
  and subhalo searches, page by page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from galforge.archives.download import download_many
from galforge.archives.tng import TNGClient, cutout_params
from galforge.archives.tng_galaxy import (
    DEFAULT_FIELDS,
    Galaxy,
    InSituIndex,
    field_request,
    make_galaxy,
)
from galforge.archives.tng_local import _open, read_particles
from galforge.io import InputError, write_json

__all__ = ["MAX_WORKERS", "ApiTNG", "field_set_name", "load_cutout", "shard_ids"]

#: Most concurrent requests to the TNG API.
MAX_WORKERS = 4


def shard_ids(subhalo_ids: Iterable[int], n_shards: int, shard: int) -> np.ndarray:
    """The sorted unique ids of shard ``shard`` (``id mod n_shards == shard``).

    Raises
    ------
    InputError
        For ``n_shards < 1`` or a shard outside ``0..n_shards-1``.
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise InputError(f"n_shards = {n_shards!r} must be a positive integer")
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < n_shards:
        raise InputError(f"shard {shard!r} must be in 0..{n_shards - 1}")
    ids = np.unique(np.asarray(list(subhalo_ids), dtype=np.int64))
    if ids.size and ids[0] < 0:
        raise InputError(f"subhalo id {int(ids[0])} is negative")
    return ids[ids % n_shards == shard]


def field_set_name(req: Mapping[str, Sequence[str]]) -> str:
    """Cache folder of a field request: ``default`` for the studies' fields, else a hash."""
    if {k: tuple(v) for k, v in req.items()} == field_request(DEFAULT_FIELDS):
        return "default"
    text = json.dumps({k: sorted(v) for k, v in sorted(req.items())}, sort_keys=True)
    return "f" + hashlib.sha256(text.encode()).hexdigest()[:12]


def load_cutout(path: str | Path, subhalo_id: int, snapshot: int, pos: np.ndarray,
                vel: np.ndarray, fields: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
                in_situ: InSituIndex | None = None) -> Galaxy:
    """A :class:`Galaxy` from a cutout file and the subhalo's SubhaloPos / SubhaloVel.

    Raises
    ------
    InputError
        When the cutout lacks a requested field, or the in-situ join needs ParticleIDs the
        cutout does not hold.
    """
    req = field_request(fields)
    raw, attrs, header = {}, {}, {}
    for ptype, names in req.items():
        raw[ptype], attrs[ptype], header = read_particles(path, ptype, names)
    return make_galaxy(subhalo_id, snapshot, header, pos, vel, raw, attrs, in_situ,
                       where=f"cutout {path}")


class ApiTNG:
    """One snapshot of a simulation through the web API, cached under ``cache_dir``.

    Parameters
    ----------
    client : TNGClient
        API client (its base URL, key variable and download options are used).
    sim : str
        Simulation, e.g. ``"TNG100-1"``.
    snapshot : int
        Snapshot number.
    cache_dir : path
        The run's download cache (``cache_dir`` of the configuration).
    max_workers : int
        Concurrent downloads, at most :data:`MAX_WORKERS`.
    """

    def __init__(self, client: TNGClient, sim: str, snapshot: int, cache_dir: str | Path, *,
                 max_workers: int = MAX_WORKERS) -> None:
        from galforge.archives.tng import subhalo_path

        subhalo_path(sim, snapshot, 0)  # validates the names
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or \
                not 1 <= max_workers <= MAX_WORKERS:
            raise InputError(f"max_workers = {max_workers!r}: the TNG API allows 1 to "
                             f"{MAX_WORKERS} concurrent requests")
        self.client, self.sim, self.snap = client, sim, int(snapshot)
        self.max_workers = max_workers
        self.root = Path(cache_dir) / "tng" / sim
        self.snap_dir = self.root / f"snap_{self.snap:03d}"
        self._index: InSituIndex | None = None

    # -- cache paths ---------------------------------------------------------------------------
    def cutout_path(self, subhalo_id: int, fields: Mapping[str, Sequence[str]] | None = None
                    ) -> Path:
        """Where the cutout of ``subhalo_id`` with ``fields`` is cached."""
        return (self.snap_dir / "cutouts" / field_set_name(field_request(fields))
                / f"{int(subhalo_id)}.hdf5")

    def meta_path(self, subhalo_id: int) -> Path:
        return self.snap_dir / "subhalos" / f"{int(subhalo_id)}.json"

    # -- subhalo records --------------------------------------------------------------------------
    def subhalo_meta(self, subhalo_id: int) -> dict[str, Any]:
        """The subhalo's API record (cached as JSON)."""
        path = self.meta_path(subhalo_id)
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                path.unlink()  # a damaged cache entry is fetched again
        meta = self.client.subhalo(self.sim, self.snap, int(subhalo_id))
        for key in ("pos_x", "pos_y", "pos_z", "vel_x", "vel_y", "vel_z"):
            if key not in meta:
                raise InputError(f"{self.client.url(self.sim)}: subhalo {subhalo_id} record has "
                                 f"no {key}")
        write_json(meta, path)
        return meta

    @staticmethod
    def pos_vel(meta: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        pos = np.array([meta["pos_x"], meta["pos_y"], meta["pos_z"]], dtype=np.float64)
        vel = np.array([meta["vel_x"], meta["vel_y"], meta["vel_z"]], dtype=np.float64)
        return pos, vel

    # -- cutouts --------------------------------------------------------------------------------
    def fetch(self, subhalo_ids: Iterable[int], fields: Mapping[str, Sequence[str]] |
              Sequence[str] | None = None) -> list[Path]:
        """Cutouts (and records) of ``subhalo_ids``: cached ones kept, the rest downloaded with
        at most ``max_workers`` at a time. Returns the cutout paths in the order given."""
        ids = [int(i) for i in subhalo_ids]
        req = field_request(fields)
        params = cutout_params(req)
        with ThreadPoolExecutor(self.max_workers) as pool:
            list(pool.map(self.subhalo_meta, [i for i in ids if not self.meta_path(i).is_file()]))
        todo = []
        for i in dict.fromkeys(ids):
            dest = self.cutout_path(i, req)
            if not dest.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                todo.append(self.client.cutout_request(self.sim, self.snap, i, dest, params))
        if todo:
            download_many(todo, max_workers=self.max_workers, options=self.client.options)
        return [self.cutout_path(i, req) for i in ids]

    def fetch_shard(self, subhalo_ids: Iterable[int], n_shards: int, shard: int,
                    fields: Mapping[str, Sequence[str]] | Sequence[str] | None = None
                    ) -> list[Path]:
        """:meth:`fetch` for the ids of one shard (``id mod n_shards == shard``)."""
        return self.fetch(shard_ids(subhalo_ids, n_shards, shard).tolist(), fields)

    # -- stellar assembly, group catalog, search ------------------------------------------------
    def stellar_assembly(self, kind: str = "stars") -> Path:
        """The StellarAssembly file of this snapshot (fetched once, checksum-checked)."""
        dest = self.root / "postprocessing" / "StellarAssembly" / f"{kind}_{self.snap:03d}.hdf5"
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.client.download(self.client.stellar_assembly_request(self.sim, self.snap, kind,
                                                                      dest))
        return dest

    def in_situ_index(self) -> InSituIndex:
        """ParticleID -> InSitu of every star of the snapshot (read once)."""
        if self._index is None:
            path = self.stellar_assembly("stars")
            with _open(path, "stellar assembly catalog") as f:
                for key in ("ParticleID", "InSitu"):
                    if key not in f:
                        raise InputError(f"{path}: no {key} dataset; the API route joins the "
                                         "InSitu flag by ParticleID")
                self._index = InSituIndex(f["ParticleID"][()], f["InSitu"][()], str(path))
        return self._index

    def groupcat_field(self, group: str, field: str) -> np.ndarray:
        """One group-catalog field of every object (``?Subhalo=<field>``), cached."""
        dest = self.root / f"groupcat-{self.snap:03d}" / f"{group}.{field}.hdf5"
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.client.download(self.client.groupcat_field_request(self.sim, self.snap, group,
                                                                    field, dest))
        with _open(dest, "group-catalog field file") as f:
            key = f"{group}/{field}"
            if key not in f:
                raise InputError(f"{dest}: {key} missing from the API's answer")
            return f[key][()]

    def search(self, filters: Mapping[str, float] | None = None, **kwargs: Any) -> np.ndarray:
        """Ids of the subhaloes matching ``filters`` (all result pages)."""
        results = self.client.search_subhalos(self.sim, self.snap, filters, **kwargs)
        return np.array([int(r["id"]) for r in results], dtype=np.int64)

    # -- galaxies -------------------------------------------------------------------------------
    def load_galaxy(self, subhalo_id: int, fields: Mapping[str, Sequence[str]] | Sequence[str] |
                    None = None, *, in_situ: bool = True) -> Galaxy:
        """One subhalo's particles in physical units, as :meth:`LocalTNG.load_galaxy` gives them."""
        req = field_request(fields)
        if in_situ and "stars" in req and "ParticleIDs" not in req["stars"]:
            raise InputError(f"{self.sim}: in-situ flags are joined by ParticleID: request stars "
                             "ParticleIDs (or in_situ=False)")
        if isinstance(subhalo_id, bool) or not isinstance(subhalo_id, (int, np.integer)) or \
                subhalo_id < 0:
            raise InputError(f"subhalo id {subhalo_id!r} must be a non-negative integer")
        path = self.fetch([int(subhalo_id)], req)[0]
        pos, vel = self.pos_vel(self.subhalo_meta(int(subhalo_id)))
        index = self.in_situ_index() if in_situ and "stars" in req else None
        return load_cutout(path, int(subhalo_id), self.snap, pos, vel, req, index)

    def iter_galaxies(self, subhalo_ids: Iterable[int], fields: Mapping[str, Sequence[str]] |
                      Sequence[str] | None = None, *, in_situ: bool = True) -> Iterable[Galaxy]:
        """Galaxies of ``subhalo_ids`` in ascending id (all cutouts fetched first)."""
        ids = sorted({int(i) for i in subhalo_ids})
        self.fetch(ids, fields)
        for i in ids:
            yield self.load_galaxy(i, fields, in_situ=in_situ)
