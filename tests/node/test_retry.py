"""RetryPolicy.call: transient failures are tried again, permanent ones are not."""

import pytest
import requests

from node.l1 import RetryPolicy

POLICY = RetryPolicy(attempts=3, base_delay=0.5, factor=2.0, jitter=0.0)


class Flaky:
    """Fails with ``errors`` in turn, then returns 7."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return 7


def test_transient_failures_are_retried_with_backoff() -> None:
    slept: list[float] = []
    seen: list[tuple[str, float]] = []
    fn = Flaky(requests.ConnectionError("refused"), requests.Timeout("slow"))
    result = POLICY.call(fn, sleep=slept.append, on_retry=lambda exc, d: seen.append((type(exc).__name__, d)))
    assert result == 7 and fn.calls == 3
    assert slept == [0.5, 1.0]
    assert seen == [("ConnectionError", 0.5), ("Timeout", 1.0)]


def test_a_permanent_failure_is_raised_at_once() -> None:
    slept: list[float] = []
    fn = Flaky(ValueError("reverted"))
    with pytest.raises(ValueError, match="reverted"):
        POLICY.call(fn, sleep=slept.append)
    assert fn.calls == 1 and slept == []


def test_the_last_transient_failure_is_raised_when_attempts_run_out() -> None:
    slept: list[float] = []
    fn = Flaky(*(requests.ConnectionError(f"refused {i}") for i in range(5)))
    with pytest.raises(requests.ConnectionError, match="refused 2"):
        POLICY.call(fn, sleep=slept.append)
    assert fn.calls == 3 and slept == [0.5, 1.0]
