"""The NIHAO star-particle release of GalacticFlow (Wolf & Buck) on Zenodo: the REST
client, safe unpacking, and the layout of its files.

**Layout.** Record 10.5281/zenodo.8389554 holds one NumPy file per NIHAO galaxy: an
array of shape (11, N) whose rows are, for each of the N star particles,
:data:`NIHAO_COLUMNS` (:data:`NIHAO_UNITS`), named
``<prefix>_<NIHAO id>_<M_dm in M_sun>.npy`` (:func:`npy_name`, :func:`parse_npy_name`).
The mock (:mod:`galforge.mock.edf`) writes exactly this layout, and a folder of your own
in it runs through the same reader (:mod:`galforge.edf.readers`).

**Client** (:func:`fetch_record`, :func:`download_record`). ``GET
<api>/records/<id>`` (the Zenodo REST API) lists the files with their sizes and
``md5:`` checksums; a *concept* record redirects to its latest version, which is
followed and recorded (the ``id`` of the answer). Every file goes through the shared
download layer (:mod:`galforge.archives.download`: resume, retries, size and md5
checked, atomic rename). Archives (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``) are
unpacked by :func:`safe_unpack`; every ``.npy`` file whose name follows the layout, in
an archive or not, ends up flat in one ``galaxies`` folder, and a manifest records the
request, the resolved version, each file's md5 and what was unpacked.

**Safe unpacking** (:func:`safe_unpack`): a member is refused, and nothing of the
archive is kept, when its name is absolute or has a ``..`` part (it would escape the
target folder), when it is a link (symbolic or hard), a device or a FIFO, or when the
members would unpack to more than ``max_bytes`` in all or number more than
``max_members``; the sizes are counted as bytes are written, so an archive that lies
about them is caught too.

The layout part imports only the standard library (the mock and the reader use it).
"""

from __future__ import annotations

import math
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from galforge.io import InputError

__all__ = [
    "NIHAO_COLUMNS",
    "NIHAO_UNITS",
    "ZENODO_RECORD",
    "UnsafeArchiveError",
    "ZenodoFile",
    "ZenodoRecord",
    "download_record",
    "fetch_record",
    "npy_name",
    "parse_npy_name",
    "safe_unpack",
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


# -- the REST client ----------------------------------------------------------------------


@dataclass(frozen=True)
class ZenodoFile:
    """One file of a record: its name (``key``), size [bytes], ``md5:<hex>`` and URL."""

    key: str
    size: int | None
    checksum: str | None
    url: str


@dataclass(frozen=True)
class ZenodoRecord:
    """A record as the API answered: the id asked for, the version it resolved to."""

    requested: str
    resolved: str
    concept: str | None
    title: str
    doi: str | None
    files: tuple[ZenodoFile, ...] = field(default_factory=tuple)


def _record_files(meta: dict[str, Any], url: str) -> tuple[ZenodoFile, ...]:
    from galforge.archives.download import DownloadError

    raw: Any = meta.get("files")
    if isinstance(raw, dict):  # {"entries": [...]} or {"entries": {key: {...}}}
        raw = raw.get("entries", [])
        raw = list(raw.values()) if isinstance(raw, dict) else raw
    if not isinstance(raw, list) or not raw:
        raise DownloadError(f"{url}: the record lists no files", url=url)
    out = []
    for f in raw:
        try:
            key = str(f["key"])
            links = f.get("links") or {}
            link = links.get("self") or links.get("content") or links.get("download")
            if not link:
                raise KeyError("links.self")
        except (KeyError, TypeError, AttributeError) as exc:
            raise DownloadError(f"{url}: a file entry lacks {exc} ({f!r:.200})", url=url) from None
        checksum = f.get("checksum")
        if checksum and ":" not in str(checksum):
            checksum = f"md5:{checksum}"  # the legacy API gave bare md5 hex
        size = f.get("size", f.get("filesize"))
        out.append(ZenodoFile(key=key, size=None if size is None else int(size),
                              checksum=None if not checksum else str(checksum), url=str(link)))
    return tuple(out)


def fetch_record(record: str | int, *, api_url: str = "https://zenodo.org/api",
                 options: Any = None, **overrides: Any) -> ZenodoRecord:
    """The metadata of a Zenodo record, a concept record resolved to its latest version.

    Raises :class:`~galforge.archives.download.DownloadError` (and its subclasses: HTTP
    status, offline) naming the URL.
    """
    from galforge.archives.download import DownloadError, request_with_retries

    rec = str(record).strip()
    if not rec.isdigit():
        raise DownloadError(f"Zenodo record id {rec!r} must be a number")
    url = f"{api_url.rstrip('/')}/records/{rec}"
    resp = request_with_retries("GET", url, headers={"Accept": "application/json"},
                                options=options, **overrides)
    try:
        meta = resp.json()
    except ValueError:
        raise DownloadError(f"{url}: the answer is not JSON", url=url) from None
    if not isinstance(meta, dict) or "id" not in meta:
        raise DownloadError(f"{url}: the answer is not a Zenodo record", url=url)
    md = meta.get("metadata") or {}
    return ZenodoRecord(
        requested=rec, resolved=str(meta["id"]),
        concept=str(meta["conceptrecid"]) if meta.get("conceptrecid") else None,
        title=str(md.get("title", "")), doi=meta.get("doi") or md.get("doi"),
        files=_record_files(meta, url))


class UnsafeArchiveError(InputError):
    """An archive member that would escape the target folder, a link, or absurd sizes."""


_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _is_archive(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def _member_path(target: Path, name: str, archive: Path) -> Path:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if any(part == ".." for part in p.parts):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would escape the target folder")
    out = (target / Path(*p.parts)).resolve() if p.parts else target.resolve()
    if out != target.resolve() and target.resolve() not in out.parents:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would escape the target folder")
    return out


def _copy_capped(src: IO[bytes], dest: Path, budget: list[int], archive: Path,
                 name: str) -> int:
    n = 0
    with open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            n += len(chunk)
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise UnsafeArchiveError(f"{archive}: member {name!r} unpacks beyond the size "
                                         "limit (an absurd or lying archive)")
            out.write(chunk)
    return n


def _tar_members(tf: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    for m in tf:
        if m.issym() or m.islnk():
            kind = "symbolic" if m.issym() else "hard"
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a {kind} link; links "
                                     "are refused")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or FIFO")
        yield m


def safe_unpack(archive: str | Path, target: str | Path, *, max_bytes: int,
                max_members: int = 100_000) -> list[Path]:
    """Unpack a zip or tar archive into ``target``, refusing unsafe members.

    Everything is written to a temporary folder beside ``target`` and moved in only
    when the whole archive passed; on a refusal nothing is left. Returns the files
    written (paths under ``target``).
    """
    import tempfile

    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".unpack", dir=target.parent))
    budget = [int(max_bytes)]
    written: list[Path] = []
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                if len(infos) > max_members:
                    raise UnsafeArchiveError(f"{archive}: {len(infos)} members exceed "
                                             f"{max_members}")
                declared = sum(i.file_size for i in infos)
                if declared > max_bytes:
                    raise UnsafeArchiveError(f"{archive}: would unpack to {declared} bytes, "
                                             f"more than the limit {max_bytes}")
                for info in infos:
                    mode = info.external_attr >> 16
                    if stat.S_ISLNK(mode):
                        raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a "
                                                 "symbolic link; links are refused")
                    out = _member_path(stage, info.filename, archive)
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src:
                        _copy_capped(src, out, budget, archive, info.filename)
                    written.append(out)
        else:
            with tarfile.open(archive) as tf:
                count = 0
                for m in _tar_members(tf, archive):
                    count += 1
                    if count > max_members:
                        raise UnsafeArchiveError(f"{archive}: more than {max_members} members")
                    if m.size > budget[0]:
                        raise UnsafeArchiveError(f"{archive}: member {m.name!r} declares "
                                                 f"{m.size} bytes, beyond the size limit")
                    out = _member_path(stage, m.name, archive)
                    if m.isdir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(m)
                    assert src is not None
                    with src:
                        _copy_capped(src, out, budget, archive, m.name)
                    written.append(out)
        final = []
        for f in written:
            dest = target / f.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            f.replace(dest)
            final.append(dest)
        return final
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise UnsafeArchiveError(f"{archive}: not a readable archive ({exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def download_record(record: str | int, dest: str | Path, galaxies: str | Path, *,
                    api_url: str = "https://zenodo.org/api", max_bytes: int,
                    options: Any = None, **overrides: Any) -> dict[str, Any]:
    """Download every file of a record into ``dest``, unpack the archives, and gather the
    layout's ``.npy`` files flat in ``galaxies``; returns the manifest (also written as
    ``dest/manifest.json``).

    The galaxies folder is filled in a temporary folder and renamed when complete.
    """
    import hashlib
    import json

    from galforge.archives.download import DownloadRequest, download_request, get_logger
    from galforge.io import atomic_path

    log = get_logger()
    dest, galaxies = Path(dest), Path(galaxies)
    dest.mkdir(parents=True, exist_ok=True)
    rec = fetch_record(record, api_url=api_url, options=options, **overrides)
    log.info("Zenodo record %s resolves to version %s (%d files)", rec.requested,
             rec.resolved, len(rec.files))
    stage = galaxies.with_name(f".{galaxies.name}.part")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    files, skipped = [], []
    budget = int(max_bytes)
    try:
        for f in rec.files:
            path = download_request(DownloadRequest(f.url, dest / _plain_name(f.key),
                                                    checksum=f.checksum, size=f.size),
                                    options=options, **overrides)
            entry = {"key": f.key, "size": path.stat().st_size, "checksum": f.checksum,
                     "path": path.name}
            if _is_archive(f.key):
                unpacked = safe_unpack(path, dest / "unpacked" / path.name, max_bytes=budget)
                budget -= sum(p.stat().st_size for p in unpacked)
                entry["unpacked"] = len(unpacked)
                candidates = unpacked
            else:
                candidates = [path]
            for c in candidates:
                if not c.name.endswith(".npy"):
                    continue
                try:
                    parse_npy_name(c.name)
                except ValueError:
                    skipped.append(c.name)
                    continue
                if (stage / c.name).exists():
                    raise UnsafeArchiveError(f"two files named {c.name!r} in record {rec.resolved}")
                shutil.copyfile(c, stage / c.name)
            files.append(entry)
        n = len(list(stage.glob("*.npy")))
        if not n:
            raise UnsafeArchiveError(f"record {rec.resolved} holds no .npy file named "
                                     "<prefix>_<id>_<M_dm>.npy")
        if galaxies.exists():
            shutil.rmtree(galaxies)
        stage.rename(galaxies)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    digest = hashlib.sha256("".join(sorted(p.name for p in galaxies.glob("*.npy"))).encode())
    manifest = {"record_requested": rec.requested, "record_resolved": rec.resolved,
                "concept": rec.concept, "title": rec.title, "doi": rec.doi,
                "api_url": api_url, "files": files, "galaxies": n,
                "galaxy_names_sha256": digest.hexdigest(), "skipped_npy": sorted(skipped)}
    with atomic_path(dest / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _plain_name(key: str) -> str:
    from galforge.archives.download import safe_filename

    return safe_filename(key)

