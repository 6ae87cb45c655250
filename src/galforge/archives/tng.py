"""A small client for the IllustrisTNG web API.

See https://www.tng-project.org/data/docs/api/. Every request carries the
``api-key`` header, read from the ``TNG_API_KEY`` environment variable when
the request is made (never stored in files, logs or error messages). Files
(cutouts, merger-tree branches) go through :mod:`galforge.archives.download`,
so they are resumed, retried, verified and written atomically.

Beyond single requests the client searches subhaloes page by page
(:meth:`TNGClient.search_subhalos`, following the answers' ``next`` links), fetches one
group-catalog field for every object (:meth:`TNGClient.groupcat_field_request`:
``files/groupcat-99/?Subhalo=SubhaloMassType``), finds the files of a file listing and
its ``checksums/`` where one exists (:meth:`TNGClient.listing`, :meth:`TNGClient.checksums`),
and the StellarAssembly catalog of a snapshot (:meth:`TNGClient.stellar_assembly_request`,
discovered through ``files/``). :mod:`galforge.archives.tng_fetch` builds the cached,
sharded API route to galaxies on it.

Examples
--------
>>> client = TNGClient()                                      # doctest: +SKIP
>>> client.get_json("TNG100-1/snapshots/99/subhalos/565261/")  # doctest: +SKIP
>>> client.download_cutout("TNG100-1", 99, 565261, "cutout.hdf5",
...                        fields={"stars": "Coordinates,Masses"})  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from galforge.archives.download import (
    DownloadError,
    DownloadOptions,
    DownloadRequest,
    HTTPStatusError,
    download_request,
    get_logger,
    request_with_retries,
)
from galforge.io import InputError

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "PARTICLE_TYPES",
    "TNGClient",
    "parse_checksums",
    "search_params",
    "download_cutout",
    "download_sublink_mpb",
    "get_json",
]

#: Public API root.
DEFAULT_BASE_URL = "https://www.tng-project.org/api/"
#: Environment variable holding the personal API key.
API_KEY_ENV = "TNG_API_KEY"
#: Particle types accepted by ``cutout.hdf5`` query parameters.
PARTICLE_TYPES = frozenset({"gas", "dm", "dmlowres", "tracers", "stars", "bhs"})

LOGGER = get_logger()
_SIM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_]+")
_FILTER = re.compile(r"[a-z][a-z0-9_]*?(__(gt|gte|lt|lte))?")
#: Most subhaloes one search page may ask for.
MAX_PAGE = 10000


def _non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"{what} must be an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an integer, got {value!r}") from None
    if number < 0 or (number != value and not isinstance(value, str)):
        raise InputError(f"{what} must be a non-negative integer, got {value!r}")
    return number


def subhalo_path(sim: str, snap: int, subhalo_id: int) -> str:
    """API path of a subhalo, e.g. ``TNG100-1/snapshots/99/subhalos/565261/``.

    Raises
    ------
    InputError
        For a malformed simulation name or a negative / non-integer number.
    """
    if not isinstance(sim, str) or not _SIM_NAME.fullmatch(sim):
        raise InputError(f"simulation name {sim!r} is not valid (e.g. 'TNG100-1')")
    snap_n = _non_negative_int(snap, "snapshot number")
    sub_n = _non_negative_int(subhalo_id, "subhalo id")
    return f"{sim}/snapshots/{snap_n}/subhalos/{sub_n}/"


def cutout_params(fields: Mapping[str, str | Sequence[str]] | None) -> dict[str, str]:
    """Query parameters of ``cutout.hdf5`` from ``{"stars": "Coordinates,Masses"}``.

    Values may be a comma-separated string or a sequence of field names
    (``"all"`` is allowed). ``None`` or ``{}`` asks for the default cutout.

    Raises
    ------
    InputError
        For an unknown particle type or a malformed field name.
    """
    params: dict[str, str] = {}
    for ptype, value in (fields or {}).items():
        if ptype not in PARTICLE_TYPES:
            raise InputError(
                f"unknown particle type {ptype!r}; expected one of {sorted(PARTICLE_TYPES)}"
            )
        names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value)]
        if not names or not all(_FIELD_NAME.fullmatch(n) for n in names):
            raise InputError(
                f"bad field list {value!r} for {ptype!r}: use names like 'Coordinates,Masses'"
            )
        params[ptype] = ",".join(names)
    return params


def search_params(filters: Mapping[str, float] | None, limit: int = 100,
                  order_by: str | None = None) -> dict[str, Any]:
    """Query parameters of a subhalo search, e.g. ``{"mass_stars__gt": 1.0}`` (1e10 Msun/h).

    Raises
    ------
    InputError
        For a malformed filter name, a non-numeric value or a bad page size.
    """
    params: dict[str, Any] = {}
    for key, value in (filters or {}).items():
        if not isinstance(key, str) or not _FILTER.fullmatch(key) or key in ("limit", "offset"):
            raise InputError(f"search filter {key!r}: use <field>[__gt|__gte|__lt|__lte], "
                             "e.g. mass_stars__gt")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"search filter {key} = {value!r} must be a number")
        params[key] = value
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InputError(f"search page size {limit!r} must be an integer in 1..{MAX_PAGE}")
    params["limit"] = limit
    params["offset"] = 0
    if order_by is not None:
        if not _FILTER.fullmatch(order_by.lstrip("-")):
            raise InputError(f"order_by {order_by!r}: a field name, '-' for descending")
        params["order_by"] = order_by
    return params


def parse_checksums(text: str, source: str = "checksums") -> dict[str, str]:
    """``md5sum``-style lines (``<hex>  <file name>``) as ``{name: "md5:<hex>"}``.

    A 64-digit digest is taken as SHA-256. Blank lines and ``#`` comments are skipped.

    Raises
    ------
    DownloadError
        For a line that is not of that form.
    """
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        algo = {32: "md5", 64: "sha256"}.get(len(digest))
        if algo is None or not re.fullmatch(r"[0-9a-fA-F]+", digest) or not name:
            raise DownloadError(f"{source} line {n}: not '<md5 or sha256 hex>  <file name>': "
                                f"{line[:80]!r}")
        out[name.rsplit("/", 1)[-1]] = f"{algo}:{digest.lower()}"
    return out


class TNGClient:
    """Client for the IllustrisTNG web API.

    Parameters
    ----------
    base_url : str
        API root; tests point it at a local :class:`~galforge.archives.testserver.FaultServer`.
    api_key_env : str
        Environment variable holding the API key (read at each request).
    options : DownloadOptions, optional
        Retry, timeout and progress settings for every request.
    session : requests.Session, optional
        Session for JSON requests (file downloads use their own).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key_env: str = API_KEY_ENV,
        options: DownloadOptions | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise InputError(f"TNG base URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.api_key_env = api_key_env
        self.options = options if options is not None else DownloadOptions()
        self.session = session

    @property
    def headers_env(self) -> dict[str, str]:
        """The credential header of every request: ``{"api-key": <env var name>}``."""
        return {"api-key": self.api_key_env}

    def url(self, path: str) -> str:
        """Absolute URL of an API path, or of an absolute URL found in an API answer.

        Absolute URLs must point at the API host (the API returns ``http://``
        links; they are rewritten to the scheme of ``base_url``), so the key
        is never sent elsewhere.

        Raises
        ------
        InputError
            For an absolute URL on another host.
        """
        parts = urlsplit(path)
        if not parts.scheme:
            return urljoin(self.base_url, path.lstrip("/"))
        base = urlsplit(self.base_url)
        if parts.hostname != base.hostname or (parts.port or None) != (base.port or None):
            raise InputError(
                f"refusing to send the TNG API key to {parts.hostname}: not the API host {base.hostname}"
            )
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    # -- JSON ---------------------------------------------------------------
    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET an API path and return the decoded JSON.

        Parameters
        ----------
        path : str
            E.g. ``"TNG100-1/snapshots/99/subhalos/565261/"`` or an absolute
            API URL taken from an earlier answer.
        params : mapping, optional
            Query parameters (e.g. ``{"limit": 100, "order_by": "-mass_stars"}``).

        Raises
        ------
        CredentialError
            When ``TNG_API_KEY`` is unset.
        HTTPStatusError, OfflineError, DownloadError
            See :func:`~galforge.archives.download.request_with_retries`.
        """
        url = self.url(path)
        resp = request_with_retries(
            "GET",
            url,
            params=params,
            headers={"Accept": "application/json"},
            headers_env=self.headers_env,
            options=self.options,
            session=self.session,
        )
        try:
            return resp.json()
        except ValueError:
            ctype = resp.headers.get("Content-Type", "?")
            raise DownloadError(
                f"{url} did not return JSON (Content-Type {ctype})", url=url
            ) from None

    def subhalo(self, sim: str, snap: int, subhalo_id: int) -> dict[str, Any]:
        """Metadata of one subhalo (``.../subhalos/<id>/``)."""
        return dict(self.get_json(subhalo_path(sim, snap, subhalo_id)))

    def search_subhalos(self, sim: str, snap: int, filters: Mapping[str, float] | None = None,
                        *, limit: int = 100, order_by: str | None = None,
                        max_pages: int = 100_000) -> list[dict[str, Any]]:
        """Every subhalo matching ``filters``, page by page (``?mass_stars__gt=...&limit=``).

        Follows each answer's ``next`` link until it is null and checks that the pages
        hold ``count`` results in all.

        Returns
        -------
        list of dict
            The search results (``id``, ``url``, ... as the API gives them), in order.

        Raises
        ------
        DownloadError
            When an answer is not a search page, or the pages do not add up to ``count``.
        """
        path = subhalo_path(sim, snap, 0).rsplit("/0/", 1)[0] + "/"
        page = self.get_json(path, search_params(filters, limit, order_by))
        results: list[dict[str, Any]] = []
        for _ in range(max_pages):
            if not isinstance(page, dict) or not isinstance(page.get("results"), list) or \
                    "count" not in page:
                raise DownloadError(f"{self.url(path)}: not a subhalo search answer "
                                    "(no count/results)", url=self.url(path))
            results.extend(page["results"])
            nxt = page.get("next")
            if not nxt:
                break
            page = self.get_json(nxt)
        else:
            raise DownloadError(f"{self.url(path)}: more than {max_pages} result pages",
                                url=self.url(path))
        if len(results) != int(page["count"]):
            raise DownloadError(f"{self.url(path)}: the pages hold {len(results)} results, the "
                                f"answer says count = {page['count']}", url=self.url(path))
        return results

    def listing(self, path: str) -> dict[str, Any]:
        """A file listing of the API (``{sim}/files/``, ``files/groupcat-99/``, ...) as JSON."""
        data = self.get_json(path)
        if not isinstance(data, dict):
            raise DownloadError(f"{self.url(path)}: not a file listing", url=self.url(path))
        return data

    def checksums(self, listing: Mapping[str, Any]) -> dict[str, str]:
        """The ``checksums`` of a file listing as ``{file name: "md5:<hex>"}``; ``{}`` where
        the listing has none or its checksums endpoint does not exist (HTTP 404)."""
        url = listing.get("checksums")
        if not url:
            return {}
        try:
            resp = request_with_retries("GET", self.url(url), headers={"Accept": "text/plain"},
                                        headers_env=self.headers_env, options=self.options,
                                        session=self.session)
        except HTTPStatusError as exc:
            if exc.status == 404:
                return {}
            raise
        return parse_checksums(resp.text, source=self.url(url))

    def groupcat_field_request(self, sim: str, snap: int, group: str, field: str,
                               dest: str | os.PathLike[str], *, checksum: str | None = None
                               ) -> DownloadRequest:
        """One group-catalog field for every object: ``files/groupcat-SS/?Subhalo=<field>``."""
        if group not in ("Group", "Subhalo") or not _FIELD_NAME.fullmatch(str(field)):
            raise InputError(f"group-catalog field {group}/{field}: group 'Group' or 'Subhalo' "
                             "and a field name like SubhaloMassType")
        subhalo_path(sim, snap, 0)  # validates sim and snap
        return self.file_request(f"{sim}/files/groupcat-{int(snap)}/", dest,
                                 params={group: field}, checksum=checksum)

    def stellar_assembly_request(self, sim: str, snap: int, kind: str,
                                 dest: str | os.PathLike[str]) -> DownloadRequest:
        """The StellarAssembly ``stars_SSS.hdf5`` or ``galaxies_SSS.hdf5`` of a snapshot.

        Found through the simulation's ``files/`` listing (its ``stellar_assembly`` entry
        and that listing's files), with the listing's checksum when it has one.

        Raises
        ------
        DownloadError
            When the API lists no stellar assembly catalog or not this file.
        """
        subhalo_path(sim, snap, 0)
        if kind not in ("stars", "galaxies"):
            raise InputError(f"stellar assembly file {kind!r}: 'stars' or 'galaxies'")
        files = self.listing(f"{sim}/files/")
        if "stellar_assembly" not in files:
            raise DownloadError(f"{self.url(sim + '/files/')}: no stellar_assembly catalog "
                                f"listed for {sim}")
        listing = self.listing(files["stellar_assembly"])
        name = f"{kind}_{int(snap):03d}.hdf5"
        urls = [u for u in listing.get("files", []) if str(u).rstrip("/").endswith("/" + name)]
        if not urls:
            raise DownloadError(f"{self.url(files['stellar_assembly'])}: {name} not listed")
        return self.file_request(urls[0], dest, checksum=self.checksums(listing).get(name))

    # -- files ----------------------------------------------------------------
    def file_request(
        self,
        path: str,
        dest: str | os.PathLike[str],
        *,
        params: Mapping[str, Any] | None = None,
        checksum: str | None = None,
        size: int | None = None,
    ) -> DownloadRequest:
        """A :class:`DownloadRequest` for an API file, carrying the key header."""
        return DownloadRequest(
            url=self.url(path),
            dest=dest,
            checksum=checksum,
            size=size,
            headers_env=self.headers_env,
            params=dict(params) if params else None,
        )

    def cutout_request(
        self,
        sim: str,
        snap: int,
        subhalo_id: int,
        dest: str | os.PathLike[str],
        fields: Mapping[str, str | Sequence[str]] | None = None,
        *,
        checksum: str | None = None,
    ) -> DownloadRequest:
        """The :class:`DownloadRequest` of :meth:`download_cutout` (for ``download_many``)."""
        path = subhalo_path(sim, snap, subhalo_id) + "cutout.hdf5"
        return self.file_request(path, dest, params=cutout_params(fields), checksum=checksum)

    def sublink_mpb_request(
        self,
        sim: str,
        snap: int,
        subhalo_id: int,
        dest: str | os.PathLike[str],
        *,
        checksum: str | None = None,
    ) -> DownloadRequest:
        """The :class:`DownloadRequest` of :meth:`download_sublink_mpb`."""
        path = subhalo_path(sim, snap, subhalo_id) + "sublink/mpb.hdf5"
        return self.file_request(path, dest, checksum=checksum)

    def download(self, request: DownloadRequest) -> Path:
        """Download a request built by this client with the client's options."""
        return download_request(request, options=self.options)

    def download_cutout(
        self,
        sim: str,
        snap: int,
        subhalo_id: int,
        dest: str | os.PathLike[str],
        fields: Mapping[str, str | Sequence[str]] | None = None,
        *,
        checksum: str | None = None,
    ) -> Path:
        """Download the particle cutout of a subhalo (``.../cutout.hdf5``).

        Parameters
        ----------
        sim : str
            Simulation, e.g. ``"TNG100-1"``.
        snap : int
            Snapshot number (99 is z = 0).
        subhalo_id : int
            Subhalo id in that snapshot.
        dest : str or os.PathLike
            Output file, or a folder (the server's file name, sanitised, is used).
        fields : mapping, optional
            Particle type -> fields, e.g. ``{"stars": "Coordinates,Masses"}``.
        checksum : str, optional
            ``"md5:<hex>"`` or ``"sha256:<hex>"`` when known.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        return self.download(
            self.cutout_request(sim, snap, subhalo_id, dest, fields, checksum=checksum)
        )

    def download_sublink_mpb(
        self,
        sim: str,
        snap: int,
        subhalo_id: int,
        dest: str | os.PathLike[str],
        *,
        checksum: str | None = None,
    ) -> Path:
        """Download the SubLink main progenitor branch of a subhalo (``.../sublink/mpb.hdf5``)."""
        return self.download(
            self.sublink_mpb_request(sim, snap, subhalo_id, dest, checksum=checksum)
        )


def get_json(
    path: str,
    params: Mapping[str, Any] | None = None,
    *,
    base_url: str = DEFAULT_BASE_URL,
    options: DownloadOptions | None = None,
) -> Any:
    """Module-level shortcut for :meth:`TNGClient.get_json`."""
    return TNGClient(base_url, options=options).get_json(path, params)


def download_cutout(
    sim: str,
    snap: int,
    subhalo_id: int,
    dest: str | os.PathLike[str],
    fields: Mapping[str, str | Sequence[str]] | None = None,
    *,
    checksum: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    options: DownloadOptions | None = None,
) -> Path:
    """Module-level shortcut for :meth:`TNGClient.download_cutout`."""
    return TNGClient(base_url, options=options).download_cutout(
        sim, snap, subhalo_id, dest, fields, checksum=checksum
    )


def download_sublink_mpb(
    sim: str,
    snap: int,
    subhalo_id: int,
    dest: str | os.PathLike[str],
    *,
    checksum: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    options: DownloadOptions | None = None,
) -> Path:
    """Module-level shortcut for :meth:`TNGClient.download_sublink_mpb`."""
    return TNGClient(base_url, options=options).download_sublink_mpb(
        sim, snap, subhalo_id, dest, checksum=checksum
    )
