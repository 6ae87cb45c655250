"""Small I/O helpers: atomic writes and clear errors for bad input files."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad input data: the message names the file, row or key at fault."""


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` only on success.

    The temporary file lives in the destination folder (so the final rename is
    atomic on POSIX) and is removed if the block raises, so a failed step never
    leaves a partial output under the real name. A job killed outright (SIGKILL) cannot
    remove its hidden ``.<name>.*.part`` file: the next write of the same output does.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else "".join(dest.suffixes)
    for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.part*"):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".part{sfx}", dir=dest.parent)
    # mkstemp creates the file 0600; an output gets the mode a plain open() would give it
    # (0666 less the umask), so that a group on a cluster can read a run's results
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def current_umask() -> int:
    """The process's umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(obj: object, path: str | os.PathLike) -> Path:
    """Write a small JSON report atomically (indented; NumPy scalars as floats)."""
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")
    return Path(path)


def write_parquet(frame: object, path: str | os.PathLike) -> Path:
    """Write a DataFrame as Parquet atomically (without its index)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)  # type: ignore[attr-defined]
    return Path(path)


def read_parquet(path: str | os.PathLike, what: str, columns: tuple[str, ...] = ()) -> Any:
    """A Parquet table written by :func:`write_parquet`, with ``columns`` checked present.

    Raises :class:`InputError` naming the file on a missing or unreadable file or a
    missing column (``what`` names the kind of file in the message).
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable {what} file ({exc})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: column {missing[0]!r} missing (not a galforge {what} file)")
    return df
