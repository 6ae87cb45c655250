"""Checksums and sizes: the caller's ``"<algo>:<hex>"``, the server's digest headers.

:func:`parse_checksum` reads the caller's form (as Zenodo gives it); the server's
``Content-MD5``, ``Digest`` (RFC 3230) and ``Repr-Digest`` (RFC 9530) headers are
parsed by :func:`server_digests`; :func:`check_file` compares a file with both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import requests

from galforge.io import InputError

__all__ = ["check_file", "parse_checksum", "server_digests"]

_HASH_ALGOS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Parse ``"<algo>:<hex>"`` (as Zenodo gives it) into ``(algo, hexdigest)``.

    Parameters
    ----------
    checksum : str
        For example ``"md5:9e107d9d372bb6826bd81d3542a419d6"`` or
        ``"sha256:..."``; ``sha-256`` is accepted for ``sha256``.

    Returns
    -------
    tuple of str
        The hashlib algorithm name and the lower-case hex digest.

    Raises
    ------
    InputError
        When the text is not of that form or the digest has the wrong length.
    """
    algo, sep, digest = str(checksum).strip().partition(":")
    algo = algo.lower().replace("-", "")
    digest = digest.strip().lower()
    if not sep or algo not in _HASH_ALGOS:
        raise InputError(f"checksum {checksum!r} must look like 'md5:<hex>' or 'sha256:<hex>'")
    if len(digest) != hashlib.new(algo).digest_size * 2 or not re.fullmatch(r"[0-9a-f]+", digest):
        raise InputError(f"checksum {checksum!r}: not a valid {algo} hex digest")
    return algo, digest


_DIGEST_NAMES = {
    "md5": "md5",
    "sha": "sha1",
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-512": "sha512",
    "sha512": "sha512",
}


def _b64_to_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value.strip().strip(":"), validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _parse_digest_header(value: str) -> dict[str, str]:
    """Parse ``Digest: SHA-256=<b64>, MD5=<b64>`` or ``Repr-Digest: sha-256=:<b64>:``."""
    out: dict[str, str] = {}
    for item in value.split(","):
        name, sep, encoded = item.strip().partition("=")
        algo = _DIGEST_NAMES.get(name.strip().lower())
        hexdigest = _b64_to_hex(encoded) if sep else None
        if algo and hexdigest and len(hexdigest) == hashlib.new(algo).digest_size * 2:
            out[algo] = hexdigest
    return out


def server_digests(resp: requests.Response, status: int) -> dict[str, str]:
    """Checksums of the whole file announced by the server.

    ``Digest`` (RFC 3230) and ``Repr-Digest`` (RFC 9530) describe the whole
    representation and are used on 200 and 206; ``Content-MD5`` describes the
    body only and is used on 200 answers only.
    """
    if resp.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
        return {}
    out: dict[str, str] = {}
    for name in ("Digest", "Repr-Digest"):
        if resp.headers.get(name):
            out.update(_parse_digest_header(resp.headers[name]))
    md5 = resp.headers.get("Content-MD5")
    if md5 and status == 200:
        hexdigest = _b64_to_hex(md5)
        if hexdigest and len(hexdigest) == 32:
            out["md5"] = hexdigest
    return out


def _hash_file(path: Path, algos: set[str], chunk: int = 1 << 20) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algos}
    if hashers:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                for h in hashers.values():
                    h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def check_file(
    path: Path, checks: Sequence[tuple[str, str, str]], sizes: Sequence[tuple[int, str]]
) -> str | None:
    """Return the first problem with ``path`` as text, or None when it passes."""
    size = path.stat().st_size
    for expected, source in sizes:
        if size != expected:
            return f"size mismatch: {size} bytes, expected {expected} ({source})"
    got = _hash_file(path, {algo for algo, _, _ in checks})
    for algo, expected, source in checks:
        if got[algo] != expected:
            return f"{algo} checksum mismatch: got {got[algo]}, expected {expected} ({source})"
    return None

