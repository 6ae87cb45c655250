"""The exceptions of the download layer (messages redacted on construction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from galforge.archives.download.redact import redact

if TYPE_CHECKING:
    from galforge.archives.download.options import DownloadRequest

__all__ = [
    "ChecksumError",
    "CredentialError",
    "DownloadError",
    "DownloadManyError",
    "HTTPStatusError",
    "OfflineError",
]


class DownloadError(RuntimeError):
    """A download or archive request failed; the message is already redacted.

    Parameters
    ----------
    message : str
        What failed (the URL, the reason, what to do).
    url : str, optional
        The URL concerned (stored redacted).
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(redact(message))
        self.url = redact(url) if url is not None else None


class HTTPStatusError(DownloadError):
    """The server answered with an HTTP error status that is not worth retrying
    (or still failed after the retries).

    Attributes
    ----------
    status : int
        The HTTP status code.
    """

    def __init__(self, message: str, *, url: str | None = None, status: int = 0) -> None:
        super().__init__(message, url=url)
        self.status = status


class ChecksumError(DownloadError):
    """The downloaded file did not match its expected checksum or size."""


class OfflineError(DownloadError):
    """The host could not be reached on any attempt (no network, DNS failure, refused)."""


class CredentialError(DownloadError):
    """A credential environment variable is missing; the message names the variable."""


class DownloadManyError(DownloadError):
    """Some downloads of :func:`download_many` failed.

    Attributes
    ----------
    failures : list of (DownloadRequest, Exception)
        The failed requests with their errors.
    """

    def __init__(
        self, message: str, *, failures: Sequence[tuple[DownloadRequest, BaseException]] = ()
    ) -> None:
        super().__init__(message)
        self.failures = list(failures)


class OfflineManyError(DownloadManyError, OfflineError):
    """Every failure of :func:`download_many` was an :class:`OfflineError`."""


class TransientError(Exception):
    """An attempt failed in a way that a retry may fix."""

    def __init__(
        self, reason: str, *, connect_failure: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect_failure = connect_failure
        self.retry_after = retry_after


class CorruptError(Exception):
    """The complete file failed verification."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
