"""HTTP plumbing of the download layer: credentials, sending, and what a failure means.

:func:`resolve_credentials` reads credential headers from the environment;
:func:`send` follows redirects by hand so that credential headers never leave
their origin; :func:`network_errors` sorts network exceptions into transient
ones (retried) and final ones; :func:`status_error` and :func:`offline_error`
build the messages users see.
"""

from __future__ import annotations

import builtins
import contextlib
import email.utils
import http.client
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.exceptions as rexc
import urllib3.exceptions

from galforge.archives.download.errors import (
    CredentialError,
    DownloadError,
    HTTPStatusError,
    OfflineError,
    TransientError,
)
from galforge.archives.download.options import DownloadOptions
from galforge.archives.download.redact import LOGGER, redact, register_secret

__all__ = ["resolve_credentials"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))


def resolve_credentials(
    headers_env: Mapping[str, str] | None, *, url: str | None = None
) -> dict[str, str]:
    """Read header values from the environment and register them as secrets.

    Parameters
    ----------
    headers_env : mapping of str to str or None
        Header name -> environment variable name.
    url : str, optional
        Used in the error message only.

    Returns
    -------
    dict of str to str
        Header name -> value.

    Raises
    ------
    CredentialError
        When a variable is unset or empty; names the variable, never a value.
    """
    headers: dict[str, str] = {}
    for header, variable in (headers_env or {}).items():
        value = os.environ.get(variable, "")
        if not value.strip():
            where = f" for {url_host(url)}" if url else ""
            raise CredentialError(
                f"environment variable {variable} is not set; it supplies the {header!r} header{where}. "
                f"Export it before running (export {variable}=...), or set source: mock in config.yaml."
            )
        register_secret(value)
        headers[header] = value.strip()
    return headers



def url_host(url: str | None) -> str:
    parts = urlsplit(url or "")
    host = parts.hostname or "?"
    return host if parts.port is None else f"{host}:{parts.port}"


def display_url(url: str, limit: int = 300) -> str:
    text = redact(url)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])


_CONNECT_FAILURES: tuple[type[BaseException], ...] = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    rexc.ConnectTimeout,
    socket.gaierror,
    ConnectionRefusedError,
)


def _is_connect_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the host could not be reached at all (vs. a broken transfer)."""
    if isinstance(exc, (rexc.ChunkedEncodingError, rexc.ReadTimeout)):
        return False
    return any(isinstance(e, _CONNECT_FAILURES) for e in _exception_chain(exc))


def _describe(exc: BaseException) -> str:
    """Short, redacted description of a network exception."""
    chain = list(_exception_chain(exc))
    if any(isinstance(e, (socket.gaierror, urllib3.exceptions.NameResolutionError)) for e in chain):
        return "host name could not be resolved"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, rexc.ConnectTimeout):
        return "timed out while connecting"
    if isinstance(exc, (rexc.ReadTimeout, TimeoutError, socket.timeout)) or any(
        isinstance(e, urllib3.exceptions.ReadTimeoutError) for e in chain
    ):
        return "timed out while reading"
    if isinstance(exc, rexc.ChunkedEncodingError) or any(
        isinstance(e, (urllib3.exceptions.ProtocolError, http.client.IncompleteRead)) for e in chain
    ):
        return "connection broken during the transfer"
    text = f"{type(exc).__name__}: {exc}"
    return redact(text if len(text) <= 300 else text[:297] + "...")


@contextlib.contextmanager
def network_errors(url: str) -> Iterator[None]:
    """Turn network exceptions into :class:`TransientError` (retry) or :class:`DownloadError`."""
    try:
        yield
    except rexc.SSLError as exc:
        raise DownloadError(
            f"TLS error talking to {url_host(url)} ({_describe(exc)}); check the system certificates",
            url=url,
        ) from None
    except (
        rexc.ConnectionError,
        rexc.Timeout,
        rexc.ChunkedEncodingError,
        rexc.ContentDecodingError,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        builtins.ConnectionError,
        TimeoutError,
    ) as exc:
        raise TransientError(_describe(exc), connect_failure=_is_connect_failure(exc)) from None
    except rexc.RequestException as exc:
        raise DownloadError(
            f"request to {display_url(url)} failed: {_describe(exc)}", url=url
        ) from None


def new_session() -> requests.Session:
    return requests.Session()


def _crosses_origin(old: str, new: str) -> bool:
    a, b = urlsplit(old), urlsplit(new)
    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return True
    default = {"http": 80, "https": 443}
    port_a = a.port or default.get(a.scheme.lower())
    port_b = b.port or default.get(b.scheme.lower())
    upgrade = (
        a.scheme.lower() == "http"
        and b.scheme.lower() == "https"
        and port_a == 80
        and port_b == 443
    )
    return not upgrade and (a.scheme.lower() != b.scheme.lower() or port_a != port_b)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    secret_names: Sequence[str],
    params: Mapping[str, Any] | None,
    data: Any,
    options: DownloadOptions,
    stream: bool,
) -> requests.Response:
    """Send a request, following redirects by hand so credential headers stay on their origin."""
    hdrs = dict(headers)
    secret = {n.lower() for n in secret_names}
    current, current_method, current_params, current_data = url, method, params, data
    for _ in range(options.max_redirects + 1):
        resp = session.request(
            current_method,
            current,
            headers=hdrs,
            params=current_params,
            data=current_data,
            timeout=options.timeout,
            stream=stream,
            allow_redirects=False,
        )
        if not resp.is_redirect:
            return resp
        location = urljoin(resp.url, resp.headers["Location"])
        resp.close()
        if secret and _crosses_origin(resp.url, location):
            hdrs = {k: v for k, v in hdrs.items() if k.lower() not in secret}
            LOGGER.debug("redirect to %s: credential headers not forwarded", url_host(location))
        if resp.status_code == 303 or (resp.status_code in (301, 302) and current_method == "POST"):
            current_method, current_data = "GET", None
        current, current_params = location, None
    raise DownloadError(
        f"too many redirects (>{options.max_redirects}) for {display_url(url)}", url=url
    )


def retry_after_seconds(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        seconds = float(value)
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(when.timestamp() - time.time(), 0.0)
    return None


def _body_snippet(resp: requests.Response, limit: int = 300) -> str:
    ctype = resp.headers.get("Content-Type", "")
    if not any(t in ctype for t in ("text", "json", "xml", "html")):
        return ""
    try:
        raw = next(resp.iter_content(4096), b"")
    except Exception:  # noqa: BLE001 - the snippet is a courtesy
        return ""
    text = " ".join(bytes(raw).decode("utf-8", "replace").split())
    return f"; server said: {redact(text[:limit])}" if text else ""


def status_error(
    resp: requests.Response, method: str, url: str, headers_env: Mapping[str, str] | None
) -> HTTPStatusError:
    status = resp.status_code
    hint = ""
    if status in (401, 403) and headers_env:
        hint = f" (check the credentials in {', '.join(sorted(set(headers_env.values())))})"
    elif status == 404:
        hint = " (not found: check the URL, object id or data release)"
    reason = resp.reason or http.client.responses.get(status, "")
    msg = f"{method} {display_url(resp.url or url)} failed: HTTP {status} {reason}{hint}{_body_snippet(resp)}"
    return HTTPStatusError(msg, url=url, status=status)


def offline_error(url: str, reason: str, attempts: int, place: str) -> OfflineError:
    return OfflineError(
        f"cannot reach {url_host(url)} ({reason}, {attempts} attempt{'s' if attempts != 1 else ''}): "
        f"this machine seems offline; set source: mock in config.yaml, or {place}",
        url=url,
    )

