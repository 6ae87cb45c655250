"""Masking of secrets in messages and log records (the download layer's redaction).

Credentials that :func:`~galforge.archives.download.transport.resolve_credentials`
reads are registered here with :func:`register_secret`; :func:`redact` masks
them (and URL user-info, credential-like query parameters and ``Authorization``
style headers) in every exception message of the download layer and, through
:class:`RedactingFilter`, in every record of the ``galforge.archives`` logger.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from urllib.parse import quote

__all__ = ["LOGGER", "LOGGER_NAME", "RedactingFilter", "get_logger", "redact", "register_secret"]

LOGGER_NAME = "galforge.archives"


_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_MASK = "***"
_SENSITIVE_QUERY = re.compile(
    r"(?i)([?&;](?:api[-_]?key|apikey|key|token|access[-_]?token|auth|password|passwd|pwd|secret"
    r"|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&#\s'\"]+"
)
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@")
_SECRET_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|api-key|x-api-key|cookie|set-cookie)"
    r"(['\"]?\s*[:=]\s*['\"]?)([^'\"\r\n,}]+)"
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it from now on.

    Parameters
    ----------
    value : str or None
        The secret (an API key, a password). Empty or blank values are ignored.
    """
    if value and value.strip():
        with _SECRETS_LOCK:
            _SECRETS.add(value)
            _SECRETS.add(value.strip())


def redact(text: object, secrets: Sequence[str] = ()) -> str:
    """Return ``str(text)`` with secrets masked as ``***``.

    Masks every registered secret (see :func:`register_secret`; credentials
    read by :func:`resolve_credentials` are registered automatically) and
    ``secrets``, in plain and URL-encoded form; the user-info part of URLs
    (``https://user:pw@host``); the values of query parameters named like
    credentials (``api_key``, ``token``, ``signature``, ...); and values of
    ``Authorization`` / ``api-key`` / ``Cookie`` headers written as
    ``name: value`` or ``'name': 'value'``.

    Parameters
    ----------
    text : object
        Text to clean (converted with ``str``).
    secrets : sequence of str
        Extra secret values to mask.

    Returns
    -------
    str
        The cleaned text.
    """
    out = str(text)
    with _SECRETS_LOCK:
        known = set(_SECRETS)
    known.update(s for s in secrets if s and s.strip())
    variants = set()
    for secret in known:
        variants.update({secret, quote(secret, safe=""), quote(secret)})
    for secret in sorted(variants, key=len, reverse=True):
        out = out.replace(secret, _MASK)
    out = _USERINFO.sub(rf"\1{_MASK}@", out)
    out = _SENSITIVE_QUERY.sub(rf"\1{_MASK}", out)
    return _SECRET_HEADER.sub(rf"\1\2{_MASK}", out)


class RedactingFilter(logging.Filter):
    """Logging filter that passes the message, exception text and stack through :func:`redact`."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logged as is
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """Return a logger with a :class:`RedactingFilter` installed (once).

    Logger filters apply only to records created on that logger, so modules
    that log under a child name (``galforge.archives.sdss``) should get their
    logger here rather than from :func:`logging.getLogger`.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


LOGGER = get_logger()
