"""Retries with exponential backoff: the one retry loop of the archive clients.

The download layer (:mod:`galforge.archives.download`) and the SDSS CAS client
(:mod:`galforge.archives.sdss`) both retry through this module; each caller
keeps its own rules through parameters:

* :class:`Backoff` says how long to wait after the n-th failure:
  ``base * 2**(n - 1)``, capped at ``cap``, plus up to ``jitter`` of itself at
  random, and at least a server's ``Retry-After`` (itself capped);
* :class:`Attempts` counts the failures of one kind against a budget of
  ``retries`` extra attempts, and logs and sleeps before the next attempt
  (the download layer keeps one for transient errors and one for checksum
  mismatches);
* :func:`call_with_retries` calls a function until it succeeds, fails in a way
  that ``transient`` does not accept, or runs out of retries (the SDSS client).

The standard library only: no requests here; callers say what is transient.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Attempts", "Backoff", "call_with_retries"]

_T = TypeVar("_T")

LOGGER = logging.getLogger("galforge.archives")


@dataclass(frozen=True)
class Backoff:
    """Wait before the next attempt: exponential, capped, with optional jitter.

    Parameters
    ----------
    base : float
        First delay in seconds; doubles with every further failure.
    cap : float
        Longest single delay, also the cap on a server's ``Retry-After``.
    jitter : float
        Random extra fraction of each delay (0.1: up to +10 %); 0 draws nothing.
    """

    base: float = 1.0
    cap: float = math.inf
    jitter: float = 0.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` failures (at least ``retry_after``, capped)."""
        delay = min(self.cap, self.base * 2 ** max(failures - 1, 0))
        if self.jitter:
            delay *= 1.0 + self.jitter * random.random()  # noqa: S311 - not cryptographic
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay


class Attempts:
    """The failures of one kind of one operation, against a budget of retries.

    Parameters
    ----------
    what : str
        The operation, for the log (``"GET https://..."``).
    retries : int
        Extra attempts allowed after the first failure.
    backoff : Backoff
        The delays between attempts.
    logger : logging.Logger, optional
        Where the "retrying" warnings go (``galforge.archives`` by default).
    sleep : callable, optional
        Waits a number of seconds (``time.sleep`` by default; tests record instead).
    """

    def __init__(
        self,
        what: str,
        retries: int,
        backoff: Backoff,
        *,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.what = what
        self.retries = retries
        self.backoff = backoff
        self.logger = logger if logger is not None else LOGGER
        self.sleep = sleep
        self.failures = 0

    def failed(self, reason: str, retry_after: float | None = None) -> bool:
        """Count a failure; wait and return True when another attempt is allowed.

        Returns False (without waiting) once the failures exceed ``retries``.
        """
        self.failures += 1
        if self.failures > self.retries:
            return False
        delay = self.backoff.delay(self.failures, retry_after)
        self.logger.warning(
            "%s: attempt %d of %d failed (%s); retrying in %.2f s",
            self.what, self.failures, self.retries + 1, reason, delay,
        )
        if delay > 0:
            (self.sleep if self.sleep is not None else time.sleep)(delay)
        return True


def call_with_retries(
    fn: Callable[[], _T],
    *,
    retries: int,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    what: str,
    describe: Callable[[BaseException], str] = str,
    logger: logging.Logger | None = None,
    sleep: Callable[[float], None] | None = None,
) -> _T:
    """Call ``fn`` until it returns; retry the exceptions that ``transient`` accepts.

    ``retries`` is the number of extra attempts; after the last one, or on an
    exception that is not transient, the exception propagates unchanged.
    ``describe`` turns an exception into the reason logged.
    """
    attempts = Attempts(what, retries, backoff, logger=logger, sleep=sleep)
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or not attempts.failed(describe(exc)):
                raise
