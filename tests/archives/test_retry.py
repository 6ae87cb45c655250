"""Tests of the one retry loop of the archive clients (galforge.archives.retry)."""

from __future__ import annotations

import pytest

from galforge.archives.retry import Attempts, Backoff, call_with_retries


def test_backoff_doubles_caps_and_honours_retry_after() -> None:
    b = Backoff(base=2.0)
    assert [b.delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    capped = Backoff(base=1.0, cap=3.0)
    assert [capped.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert capped.delay(1, retry_after=2.5) == 2.5 and capped.delay(1, retry_after=99) == 3.0
    jittered = Backoff(base=1.0, cap=30.0, jitter=0.1)
    assert all(1.0 <= jittered.delay(1) <= 1.1 for _ in range(20))


def test_attempts_count_against_their_budget() -> None:
    slept: list[float] = []
    a = Attempts("GET x", 2, Backoff(base=0.5), sleep=slept.append)
    assert a.failed("boom") and a.failed("boom") and not a.failed("boom")
    assert a.failures == 3 and slept == [0.5, 1.0]


def test_call_with_retries_retries_only_transient_errors() -> None:
    calls: list[int] = []
    slept: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, TimeoutError)

    out = call_with_retries(flaky, retries=3, transient=transient, backoff=Backoff(base=2.0),
                            what="q", sleep=slept.append)
    assert out == "ok" and len(calls) == 3 and slept == [2.0, 4.0]
    calls.clear()
    with pytest.raises(TimeoutError):
        call_with_retries(flaky, retries=0, transient=transient, backoff=Backoff(), what="q",
                          sleep=slept.append)
    with pytest.raises(KeyError):
        call_with_retries(lambda: {}["x"], retries=5, transient=transient, backoff=Backoff(),
                          what="q", sleep=slept.append)
