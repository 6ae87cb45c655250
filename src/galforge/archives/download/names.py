"""Safe local file names for server-supplied names (``Content-Disposition``, URL paths)."""

from __future__ import annotations

import email.message
import hashlib
import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from galforge.archives.download.errors import DownloadError

__all__ = ["filename_from_disposition", "filename_from_url", "path_in_folder", "safe_filename"]

_RESERVED_CHARS = re.compile(r'[<>:"/\\|?*]')
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)


def safe_filename(name: str, *, seed: str | None = None, max_bytes: int = 200) -> str:
    """Turn a server-supplied file name into a safe, plain file name.

    Strips directory parts (``/`` and ``\\``, so ``../../etc/passwd`` gives
    ``passwd``), control and format characters (NUL, newlines, bidi
    overrides), leading dots and spaces (no hidden files, no ``..``),
    trailing dots and spaces; replaces ``<>:"/\\|?*`` with ``_``; prefixes
    Windows device names (``CON``, ``NUL``, ...) with ``_``; shortens the name
    to ``max_bytes`` UTF-8 bytes keeping its extension.

    Parameters
    ----------
    name : str
        Name from ``Content-Disposition`` or a URL path.
    seed : str, optional
        Text hashed for the fallback name (default: ``name``).
    max_bytes : int
        Longest result in UTF-8 bytes.

    Returns
    -------
    str
        A non-empty name; ``download-<16 hex>`` (a SHA-256 of ``seed``) when
        nothing usable is left.
    """
    text = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if not _is_control(ch))
    text = _RESERVED_CHARS.sub("_", text)
    text = text.strip().lstrip(".").lstrip().rstrip(". ")
    if text.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        text = "_" + text
    text = _shorten_utf8(text, max_bytes)
    if not text:
        digest = hashlib.sha256(
            str(seed if seed is not None else name).encode("utf-8", "replace")
        ).hexdigest()
        text = f"download-{digest[:16]}"
    return text


def _is_control(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category.startswith("C") or category in ("Zl", "Zp")


def _shorten_utf8(text: str, max_bytes: int) -> str:
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    stem, dot, suffix = text.rpartition(".")
    if not dot or not stem or len(suffix.encode("utf-8")) > 16:
        stem, suffix = text, ""
    tail = ("." + suffix) if suffix else ""
    room = max(max_bytes - len(tail.encode("utf-8")), 1)
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ") + tail


def path_in_folder(folder: str | os.PathLike[str], name: str) -> Path:
    """Join ``folder`` and a (sanitised) ``name``, refusing anything that leaves the folder.

    Raises
    ------
    DownloadError
        When ``folder / name`` resolves (following symlinks) outside ``folder``.
    """
    base = Path(folder).resolve()
    target = (base / name).resolve()
    if target.parent != base:
        raise DownloadError(f"refusing file name {name!r}: it would be written outside {base}")
    return target


def filename_from_disposition(value: str | None) -> str | None:
    """The ``filename*`` or ``filename`` parameter of a ``Content-Disposition`` value."""
    if not value:
        return None
    msg = email.message.Message()
    msg["Content-Disposition"] = value
    try:
        name = msg.get_filename()
    except Exception:  # noqa: BLE001 - a malformed header just gives no name
        return None
    return str(name) if name else None


def filename_from_url(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])

