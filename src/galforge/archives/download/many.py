"""Several downloads at once, in a thread pool, with one report of every failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from galforge.archives.download.errors import DownloadManyError, OfflineError, OfflineManyError
from galforge.archives.download.options import DownloadOptions, DownloadRequest, merged_options
from galforge.archives.download.redact import LOGGER, redact
from galforge.archives.download.resume import download_request, progress_enabled, split_dest
from galforge.archives.download.transport import display_url
from galforge.io import InputError

__all__ = ["download_many"]


def _check_duplicates(reqs: Sequence[DownloadRequest]) -> None:
    seen: dict[Path, str] = {}
    for req in reqs:
        _, dest = split_dest(req.dest)
        if dest is None:
            continue
        key = dest.resolve()
        if key in seen:
            raise InputError(
                f"two downloads write {dest}: {redact(seen[key])} and {redact(req.url)}"
            )
        seen[key] = req.url


def download_many(
    requests: Sequence[DownloadRequest],
    max_workers: int = 4,
    *,
    options: DownloadOptions | None = None,
    **overrides: Any,
) -> list[Path]:
    """Download several files with at most ``max_workers`` at a time.

    Each download follows the rules of :func:`download`. All downloads run to
    completion (or failure) before an error is raised.

    Parameters
    ----------
    requests : sequence of DownloadRequest
        What to fetch; two requests may not write the same file.
    max_workers : int
        Most downloads in flight at once.
    options : DownloadOptions, optional
        Settings for every download; ``**overrides`` replace single fields.
        Per-file progress bars are replaced by one bar counting files.

    Returns
    -------
    list of pathlib.Path
        Destination files, in the order of ``requests``.

    Raises
    ------
    DownloadManyError
        Listing every failed URL with its error (also an :class:`OfflineError`
        when every failure was one).
    InputError
        For duplicate destinations or ``max_workers < 1``.
    """
    if max_workers < 1:
        raise InputError(f"max_workers must be >= 1, got {max_workers}")
    reqs = list(requests)
    _check_duplicates(reqs)
    opts = merged_options(options, overrides)
    per_file = dataclasses.replace(opts, progress=False)
    results: list[Path | None] = [None] * len(reqs)
    failures: list[tuple[int, BaseException]] = []
    with (
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="galforge-download") as pool,
        tqdm(
            total=len(reqs),
            unit="file",
            desc="downloads",
            disable=not progress_enabled(opts),
            leave=False,
        ) as bar,
    ):
        futures: dict[Future[Path], int] = {
            pool.submit(download_request, req, options=per_file): i for i, req in enumerate(reqs)
        }
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - collected and reported together
                    LOGGER.error("download of %s failed: %s", display_url(reqs[i].url), exc)
                    failures.append((i, exc))
                bar.update(1)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if failures:
        raise _many_error(reqs, sorted(failures, key=lambda f: f[0]))
    return [p for p in results if p is not None]


def _many_error(
    reqs: Sequence[DownloadRequest], failures: Sequence[tuple[int, BaseException]]
) -> DownloadManyError:
    lines = [f"  - {display_url(reqs[i].url)} -> {reqs[i].dest}: {exc}" for i, exc in failures]
    msg = f"{len(failures)} of {len(reqs)} downloads failed:\n" + "\n".join(lines)
    pairs = [(reqs[i], exc) for i, exc in failures]
    cls = (
        OfflineManyError
        if all(isinstance(e, OfflineError) for _, e in failures)
        else DownloadManyError
    )
    return cls(msg, failures=pairs)
