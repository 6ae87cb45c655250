"""One file download: ``.part`` file, ``Range`` resume, verification, atomic rename.

See :mod:`galforge.archives.download` for the rules; :func:`download` and
:func:`download_request` are the entry points.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from galforge.archives.download.checksums import check_file, parse_checksum, server_digests
from galforge.archives.download.errors import (
    ChecksumError,
    CorruptError,
    DownloadError,
    TransientError,
)
from galforge.archives.download.names import (
    filename_from_disposition,
    filename_from_url,
    path_in_folder,
    safe_filename,
)
from galforge.archives.download.options import DownloadOptions, DownloadRequest, merged_options
from galforge.archives.download.redact import LOGGER, redact
from galforge.archives.download.transport import (
    RETRY_STATUSES,
    display_url,
    network_errors,
    new_session,
    offline_error,
    resolve_credentials,
    retry_after_seconds,
    send,
    status_error,
)
from galforge.archives.retry import Attempts

__all__ = ["download", "download_request"]


def _existing_ok(path: Path, request: DownloadRequest) -> bool:
    """Whether an existing destination can be kept (it matches the checksum/size given, if any)."""
    checks = [(*parse_checksum(request.checksum), "given")] if request.checksum else []
    sizes = [(int(request.size), "given")] if request.size is not None else []
    problem = check_file(path, checks, sizes)
    if problem:
        LOGGER.warning("%s exists but fails verification (%s); downloading it again", path, problem)
        return False
    return True



@dataclass
class _State:
    part: Path
    dest: Path | None
    folder: Path | None
    total: int | None = None
    digests: dict[str, str] = field(default_factory=dict)
    validator: str | None = None
    skipped: bool = False

    def forget_server(self) -> None:
        self.total, self.digests, self.validator = None, {}, None


def split_dest(dest: str | os.PathLike[str]) -> tuple[Path | None, Path | None]:
    """Return ``(folder, None)`` for a folder destination, ``(None, file)`` otherwise."""
    text = os.fspath(dest)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        return path, None
    return None, path


def _part_path(request: DownloadRequest, folder: Path | None, dest: Path | None) -> Path:
    if dest is not None:
        return dest.with_name(dest.name + ".part")
    assert folder is not None
    key = request.url + "?" + repr(sorted((request.params or {}).items()))
    return folder / f".download-{hashlib.sha256(key.encode()).hexdigest()[:16]}.part"


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _content_length(resp: requests.Response) -> int | None:
    if resp.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
        return None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return int(resp.headers["Content-Length"])
    return None


def progress_enabled(options: DownloadOptions) -> bool:
    if options.progress is not None:
        return options.progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _accept_response(
    resp: requests.Response, state: _State, offset: int, request: DownloadRequest
) -> int:
    """Check the status of a GET for ``state.part``; return the offset to write at.

    Returns -1 when a 416 answer shows the ``.part`` file is already complete.
    """
    status = resp.status_code
    if status == 416:
        _, total = _parse_content_range(resp.headers.get("Content-Range"))
        if offset and total is not None and offset == total:
            state.total = total
            return -1
        state.part.unlink(missing_ok=True)
        state.forget_server()
        raise TransientError(f"HTTP 416 for a resume at byte {offset}; restarting from zero")
    if status in RETRY_STATUSES:
        raise TransientError(
            f"HTTP {status} {resp.reason or ''}".strip(), retry_after=retry_after_seconds(resp)
        )
    if status not in (200, 206):
        raise status_error(resp, "GET", request.url, request.headers_env)
    if status == 206:
        start, total = _parse_content_range(resp.headers.get("Content-Range"))
        if start != offset:
            state.part.unlink(missing_ok=True)
            state.forget_server()
            raise TransientError(
                f"server resumed at byte {start} instead of {offset}; restarting from zero"
            )
        state.total = total if total is not None else state.total
    else:
        if offset:
            LOGGER.info(
                "%s: server ignored the Range request; downloading from the start",
                display_url(request.url),
            )
        state.forget_server()
        state.total = _content_length(resp)
        offset = 0
    state.digests.update(server_digests(resp, status))
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        state.validator = etag
    return offset


def _stream_to_part(
    resp: requests.Response, state: _State, offset: int, options: DownloadOptions
) -> None:
    label = redact(state.dest.name if state.dest is not None else state.part.name)
    mode = "r+b" if offset and state.part.exists() else "wb"
    with (
        state.part.open(mode) as fh,
        tqdm(
            total=state.total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label[:40],
            disable=not progress_enabled(options),
            leave=False,
        ) as bar,
    ):
        fh.seek(offset)
        fh.truncate()
        for chunk in resp.iter_content(chunk_size=options.chunk_size):
            if chunk:
                fh.write(chunk)
                bar.update(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())


def _attempt(
    session: requests.Session,
    request: DownloadRequest,
    headers: Mapping[str, str],
    state: _State,
    options: DownloadOptions,
) -> None:
    """One GET: resume or start the ``.part`` file and stream the body into it."""
    offset = _part_size(state.part)
    hdrs = dict(headers)
    if offset:
        hdrs["Range"] = f"bytes={offset}-"
        if state.validator:
            hdrs["If-Range"] = state.validator
        LOGGER.info("resuming %s at byte %d", display_url(request.url), offset)
    with network_errors(request.url):
        resp = send(
            session,
            "GET",
            request.url,
            headers=hdrs,
            secret_names=list(request.headers_env or {}),
            params=request.params,
            data=None,
            options=options,
            stream=True,
        )
        with resp:
            offset = _accept_response(resp, state, offset, request)
            if offset < 0:
                return
            if state.dest is None:
                assert state.folder is not None
                name = filename_from_disposition(
                    resp.headers.get("Content-Disposition")
                ) or filename_from_url(request.url)
                state.dest = path_in_folder(state.folder, safe_filename(name, seed=request.url))
                if (
                    state.dest.exists()
                    and not options.overwrite
                    and _existing_ok(state.dest, request)
                ):
                    state.skipped = True
                    return
            _stream_to_part(resp, state, offset, options)
    size = _part_size(state.part)
    if state.total is not None and size < state.total:
        raise TransientError(f"connection closed after {size} of {state.total} bytes")


def _verify(state: _State, request: DownloadRequest) -> None:
    checks: list[tuple[str, str, str]] = []
    if request.checksum:
        checks.append((*parse_checksum(request.checksum), "given by the caller"))
    checks.extend(
        (algo, hexdigest, "announced by the server") for algo, hexdigest in state.digests.items()
    )
    sizes: list[tuple[int, str]] = []
    if request.size is not None:
        sizes.append((int(request.size), "given by the caller"))
    if state.total is not None:
        sizes.append((state.total, "announced by the server"))
    problem = check_file(state.part, checks, sizes)
    if problem:
        raise CorruptError(problem)


def download_request(
    request: DownloadRequest,
    *,
    options: DownloadOptions | None = None,
    session: requests.Session | None = None,
    **overrides: Any,
) -> Path:
    """Download one :class:`DownloadRequest`; see :func:`download` for the rules.

    Returns
    -------
    pathlib.Path
        The destination file (inside the folder for a folder destination).
    """
    opts = merged_options(options, overrides)
    folder, dest = split_dest(request.dest)
    if dest is not None and dest.is_file() and not opts.overwrite and _existing_ok(dest, request):
        LOGGER.info("%s already exists; not downloading it again", dest)
        return dest
    headers = {
        "User-Agent": opts.user_agent,
        "Accept-Encoding": "identity",
        **(request.headers or {}),
        **resolve_credentials(request.headers_env, url=request.url),
    }
    target_dir = folder if folder is not None else Path(request.dest).parent
    target_dir.mkdir(parents=True, exist_ok=True)
    state = _State(part=_part_path(request, folder, dest), dest=dest, folder=folder)
    own = session is None
    sess = session if session is not None else new_session()
    LOGGER.info(
        "downloading %s -> %s",
        display_url(request.url),
        dest if dest is not None else f"{folder}/",
    )
    try:
        return _download_loop(sess, request, headers, state, opts)
    finally:
        if own:
            sess.close()


def _download_loop(
    session: requests.Session,
    request: DownloadRequest,
    headers: Mapping[str, str],
    state: _State,
    opts: DownloadOptions,
) -> Path:
    what = f"GET {display_url(request.url)}"
    transient = Attempts(what, opts.retries, opts.backoff, logger=LOGGER)
    corrupt = Attempts(what, opts.checksum_retries, opts.backoff, logger=LOGGER)
    connect_failures = 0
    while True:
        try:
            _attempt(session, request, headers, state, opts)
            assert state.dest is not None
            if state.skipped:
                state.part.unlink(missing_ok=True)
                LOGGER.info("%s already exists; not downloading it again", state.dest)
                return state.dest
            _verify(state, request)
            os.replace(state.part, state.dest)
            LOGGER.info("saved %s (%d bytes)", state.dest, state.dest.stat().st_size)
            return state.dest
        except CorruptError as exc:
            state.part.unlink(missing_ok=True)
            state.forget_server()
            if not corrupt.failed(exc.reason):
                n = corrupt.failures
                target = state.dest if state.dest is not None else state.folder
                raise ChecksumError(
                    f"{what}: {exc.reason}, after {n} download{'s' if n != 1 else ''}; "
                    f"the partial file was deleted and {target} was not written",
                    url=request.url,
                ) from None
        except TransientError as exc:
            connect_failures += exc.connect_failure
            if not transient.failed(exc.reason, exc.retry_after):
                raise _give_up(request, state, exc, transient.failures, connect_failures) from None


def _give_up(
    request: DownloadRequest,
    state: _State,
    exc: TransientError,
    failures: int,
    connect_failures: int,
) -> DownloadError:
    target = state.dest if state.dest is not None else state.folder
    if connect_failures == failures:
        place = f"fetch the file on a machine with network and place it at {target}"
        return offline_error(request.url, exc.reason, failures, place)
    kept = (
        f"; the partial data is kept in {state.part} and a new run resumes from it"
        if state.part.exists()
        else ""
    )
    return DownloadError(
        f"GET {display_url(request.url)} failed after {failures} attempts: {exc.reason}{kept}",
        url=request.url,
    )


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    checksum: str | None = None,
    size: int | None = None,
    headers_env: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    options: DownloadOptions | None = None,
    session: requests.Session | None = None,
    **overrides: Any,
) -> Path:
    """Download ``url`` to ``dest`` with resume, retries, verification and an atomic rename.

    Parameters
    ----------
    url : str
        ``http(s)://`` URL.
    dest : str or os.PathLike
        Destination file, or a folder (existing, or written with a trailing
        ``/``) to take the server's sanitised file name.
    checksum : str, optional
        ``"md5:<hex>"`` or ``"sha256:<hex>"`` of the whole file.
    size : int, optional
        Expected size in bytes.
    headers_env : mapping, optional
        Header name -> environment variable with its value (a secret).
    params : mapping, optional
        Query parameters.
    headers : mapping, optional
        Extra non-secret headers.
    options : DownloadOptions, optional
        Retry, timeout and progress settings.
    session : requests.Session, optional
        Session to reuse (not shared between threads).
    **overrides
        Single :class:`DownloadOptions` fields, e.g. ``progress=False``,
        ``backoff_base=0.01``.

    Returns
    -------
    pathlib.Path
        The verified destination file.

    Raises
    ------
    HTTPStatusError
        On a 4xx answer other than 429 (at once) or a 5xx/429 that persists.
    ChecksumError
        When the size or a checksum does not match after ``checksum_retries``.
    OfflineError
        When the host could not be reached on any attempt.
    CredentialError
        When a variable of ``headers_env`` is unset.
    DownloadError
        For other failures (the base class of all of the above).
    """
    request = DownloadRequest(url, dest, checksum, size, headers_env, params, headers)
    return download_request(request, options=options, session=session, **overrides)

