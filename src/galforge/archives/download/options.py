"""What to download (:class:`DownloadRequest`) and how (:class:`DownloadOptions`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from galforge import __version__
from galforge.archives.download.checksums import parse_checksum
from galforge.archives.download.redact import redact
from galforge.archives.retry import Backoff
from galforge.io import InputError

__all__ = ["DownloadOptions", "DownloadRequest"]


@dataclass
class DownloadRequest:
    """One file to download.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` URL (without credentials in it).
    dest : str or os.PathLike
        Destination file, or an existing folder (or a path ending in ``/``),
        in which case the name comes from the server (sanitised).
    checksum : str, optional
        ``"md5:<hex>"``, ``"sha256:<hex>"``, ... of the whole file.
    size : int, optional
        Expected size in bytes.
    headers_env : mapping of str to str, optional
        Header name -> environment variable holding its value, e.g.
        ``{"api-key": "TNG_API_KEY"}``; read at request time.
    params : mapping, optional
        Query parameters added to the URL.
    headers : mapping of str to str, optional
        Extra, non-secret request headers.
    """

    url: str
    dest: str | os.PathLike[str]
    checksum: str | None = None
    size: int | None = None
    headers_env: Mapping[str, str] | None = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise InputError(
                f"download URL {redact(self.url)!r} must start with http:// or https://"
            )
        if self.checksum is not None:
            parse_checksum(self.checksum)
        if self.size is not None and (isinstance(self.size, bool) or int(self.size) < 0):
            raise InputError(f"size {self.size!r} must be a non-negative integer")


@dataclass(frozen=True)
class DownloadOptions:
    """Tunable behaviour of the download layer.

    Parameters
    ----------
    retries : int
        Extra attempts after a transient failure (timeout, connection error,
        dropped connection, 5xx, 429). Default 4.
    checksum_retries : int
        Extra full downloads after a checksum or size mismatch. Default 1.
    backoff_base : float
        First retry delay in seconds; doubles each retry. Default 1.0.
    backoff_max : float
        Cap on one delay, also on a server's ``Retry-After``. Default 30.
    jitter : float
        Random extra fraction of each delay (0.1 = up to +10 %).
    connect_timeout, read_timeout : float
        Timeouts in seconds for connecting and for each read.
    chunk_size : int
        Bytes per read when streaming to disk.
    progress : bool or None
        Show a tqdm bar; None shows it only when stderr is a terminal.
    overwrite : bool
        Download even when the destination exists.
    max_redirects : int
        Redirects followed before giving up.
    user_agent : str
        ``User-Agent`` header.
    """

    retries: int = 4
    checksum_retries: int = 1
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 0.1
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    chunk_size: int = 1 << 16
    progress: bool | None = None
    overwrite: bool = False
    max_redirects: int = 10
    user_agent: str = f"galforge/{__version__} (python-requests)"

    def __post_init__(self) -> None:
        if self.retries < 0 or self.checksum_retries < 0:
            raise InputError("retries and checksum_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.jitter < 0:
            raise InputError("backoff_base, backoff_max and jitter must be >= 0")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise InputError("connect_timeout and read_timeout must be > 0")
        if self.chunk_size <= 0:
            raise InputError("chunk_size must be > 0")

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeouts as requests takes them."""
        return (self.connect_timeout, self.read_timeout)

    @property
    def backoff(self) -> Backoff:
        """The delays between attempts (:class:`galforge.archives.retry.Backoff`)."""
        return Backoff(base=self.backoff_base, cap=self.backoff_max, jitter=self.jitter)


def merged_options(options: DownloadOptions | None, overrides: Mapping[str, Any]) -> DownloadOptions:
    base = options if options is not None else DownloadOptions()
    return dataclasses.replace(base, **overrides) if overrides else base

