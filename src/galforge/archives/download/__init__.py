"""The shared download layer of the archive clients.

Every study fetches archive files through this module, so they all get the
same behaviour:

* **resume**: bytes go to a ``.part`` file beside the destination; a later
  attempt (or a later run) continues it with ``Range: bytes=N-``. A server
  that ignores ``Range`` (answers 200) restarts the file from zero; a 416
  answer means the ``.part`` file is already complete, or is discarded.
* **retries** with exponential backoff and jitter on timeouts, connection
  errors (including a connection dropped mid-file), HTTP 5xx and 429
  (``Retry-After`` honoured, capped). Other 4xx answers fail at once with
  :class:`HTTPStatusError`.
* **verification**: the size (``Content-Length``, the ``Content-Range``
  total, or the caller's ``size``) and the checksums (the caller's
  ``"md5:<hex>"`` / ``"sha256:<hex>"``, and the server's ``Content-MD5``,
  ``Digest`` or ``Repr-Digest`` headers). A mismatch deletes the ``.part``
  file and downloads again, up to ``checksum_retries`` times, then raises
  :class:`ChecksumError`; neither the destination nor a ``.part`` file is
  left behind.
* **atomic write**: only a verified, complete file is renamed (``os.replace``)
  to the destination. An existing destination is not fetched again (it is
  checked against the checksum/size when the caller gives them).
* **credentials from the environment**: ``headers_env={"api-key":
  "TNG_API_KEY"}`` reads the header value from ``os.environ`` at request time
  (:class:`CredentialError` names the variable when it is unset). Values are
  registered with :func:`redact`, which every exception message and every
  record of the ``galforge.archives`` logger pass through, and they are not
  forwarded on a redirect to another host.
* **offline**: when every attempt fails to connect, :class:`OfflineError`
  says so and tells how to go on (mock source or a manual copy).
* **safe names**: when the destination is a folder, the file name comes from
  ``Content-Disposition`` or the URL and is cleaned by :func:`safe_filename`;
  the result always lies inside the folder.

A ``.part`` file is kept after transient failures (so a rerun resumes) and
after an interruption (Ctrl-C, a killed job); it is deleted after a checksum
or size mismatch. Two processes must not download the same destination at
the same time (no cross-process lock is taken); :func:`download_many` rejects
duplicate destinations within one call.

Modules
-------
One module per concern; import the public names from this package:

* :mod:`~galforge.archives.download.redact`: secrets, :func:`redact`, the
  redacting logger (:func:`get_logger`);
* :mod:`~galforge.archives.download.errors`: the exceptions;
* :mod:`~galforge.archives.download.names`: :func:`safe_filename`,
  :func:`path_in_folder`;
* :mod:`~galforge.archives.download.checksums`: :func:`parse_checksum`, digest
  headers, file verification;
* :mod:`~galforge.archives.download.options`: :class:`DownloadRequest`,
  :class:`DownloadOptions`;
* :mod:`~galforge.archives.download.transport`: credentials, sending with
  redirects, the meaning of network failures;
* :mod:`~galforge.archives.download.request`: :func:`request_with_retries`;
* :mod:`~galforge.archives.download.resume`: one file (:func:`download`,
  :func:`download_request`);
* :mod:`~galforge.archives.download.many`: :func:`download_many`.

The retry loop itself (backoff, counting, logging, sleeping) is
:mod:`galforge.archives.retry`, shared with the SDSS CAS client.
"""

from __future__ import annotations

from galforge.archives.download.checksums import parse_checksum
from galforge.archives.download.errors import (
    ChecksumError,
    CredentialError,
    DownloadError,
    DownloadManyError,
    HTTPStatusError,
    OfflineError,
)
from galforge.archives.download.many import download_many
from galforge.archives.download.names import path_in_folder, safe_filename
from galforge.archives.download.options import DownloadOptions, DownloadRequest
from galforge.archives.download.redact import (
    LOGGER,
    LOGGER_NAME,
    RedactingFilter,
    get_logger,
    redact,
    register_secret,
)
from galforge.archives.download.request import request_with_retries
from galforge.archives.download.resume import download, download_request
from galforge.archives.download.transport import resolve_credentials

__all__ = [
    "LOGGER",
    "LOGGER_NAME",
    "ChecksumError",
    "CredentialError",
    "DownloadError",
    "DownloadManyError",
    "DownloadOptions",
    "DownloadRequest",
    "HTTPStatusError",
    "OfflineError",
    "RedactingFilter",
    "download",
    "download_many",
    "download_request",
    "get_logger",
    "parse_checksum",
    "path_in_folder",
    "redact",
    "register_secret",
    "request_with_retries",
    "resolve_credentials",
    "safe_filename",
]
