"""One small request (JSON APIs, SQL/TAP queries) with the download layer's rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from galforge.archives.download.errors import DownloadError, TransientError
from galforge.archives.download.options import DownloadOptions, merged_options
from galforge.archives.download.redact import LOGGER
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

__all__ = ["request_with_retries"]


def request_with_retries(
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
    headers_env: Mapping[str, str] | None = None,
    options: DownloadOptions | None = None,
    session: requests.Session | None = None,
    **overrides: Any,
) -> requests.Response:
    """Send one (small) request with the retry, credential, offline and redaction rules.

    The body is read into memory; use :func:`download` for files. POST
    requests are retried too (archive queries are idempotent).

    Parameters
    ----------
    method : str
        ``"GET"`` or ``"POST"`` (or any method requests accepts).
    url : str
        The URL.
    params : mapping, optional
        Query parameters.
    data : optional
        Request body (form dict, bytes or str).
    headers : mapping, optional
        Extra non-secret headers.
    headers_env : mapping, optional
        Header name -> environment variable (see :func:`resolve_credentials`).
    options : DownloadOptions, optional
        Retry and timeout settings; ``**overrides`` replace single fields.
    session : requests.Session, optional
        Session to use (a new one per call otherwise).

    Returns
    -------
    requests.Response
        A 2xx response with its content loaded.

    Raises
    ------
    HTTPStatusError, OfflineError, CredentialError, DownloadError
    """
    opts = merged_options(options, overrides)
    hdrs = {
        "User-Agent": opts.user_agent,
        **(headers or {}),
        **resolve_credentials(headers_env, url=url),
    }
    what = f"{method.upper()} {display_url(url)}"
    own = session is None
    sess = session if session is not None else new_session()
    attempts = Attempts(what, opts.retries, opts.backoff, logger=LOGGER)
    connect_failures = 0
    try:
        while True:
            try:
                with network_errors(url):
                    resp = send(
                        sess,
                        method.upper(),
                        url,
                        headers=hdrs,
                        secret_names=list(headers_env or {}),
                        params=params,
                        data=data,
                        options=opts,
                        stream=False,
                    )
                if resp.status_code in RETRY_STATUSES:
                    raise TransientError(
                        f"HTTP {resp.status_code} {resp.reason or ''}".strip(),
                        retry_after=retry_after_seconds(resp),
                    )
                if resp.status_code >= 400:
                    raise status_error(resp, method.upper(), url, headers_env)
                return resp
            except TransientError as exc:
                connect_failures += exc.connect_failure
                if not attempts.failed(exc.reason, exc.retry_after):
                    failures = attempts.failures
                    if connect_failures == failures:
                        raise offline_error(
                            url, exc.reason, failures, "run this step on a machine with network"
                        ) from None
                    raise DownloadError(
                        f"{what} failed after {failures} attempts: {exc.reason}", url=url
                    ) from None
    finally:
        if own:
            sess.close()

