"""The retry pacing the writer and the watches share: delays, Retry-After, and waits that end when told to."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kubeapi.backoff import Backoff, pause, retry_after
from kubeapi.kube_client import KubeError, KubeTransient
from kubeapi.reachability import ApiReachability

LONGEST = 1.0  # jitter() at its top: the delay itself
SHORTEST = 0.0  # jitter() at its bottom: half the delay


@pytest.mark.parametrize(
    ("failures", "jitter", "server_asked", "expected"),
    [
        (1, LONGEST, None, 0.2),
        (2, LONGEST, None, 0.4),
        (4, LONGEST, None, 1.6),
        (7, LONGEST, None, 10.0),
        (50, LONGEST, None, 10.0),
        (1, SHORTEST, None, 0.1),
        (7, SHORTEST, None, 5.0),
        (1, SHORTEST, 3.0, 3.0),
        (1, LONGEST, 600.0, 10.0),
        (6, LONGEST, 1.0, 6.4),
        (1, LONGEST, 0.0, 0.2),
    ],
    ids=[
        "first retry: the initial delay",
        "doubles",
        "doubles again",
        "capped at the ceiling",
        "stays at the ceiling",
        "jitter halves at most",
        "jitter on the ceiling",
        "Retry-After longer than the back-off is honoured",
        "Retry-After is capped at the ceiling",
        "Retry-After shorter than the back-off changes nothing",
        "a zero Retry-After is no request",
    ],
)
def test_delays(failures: int, jitter: float, server_asked: float | None, expected: float) -> None:
    backoff = Backoff(0.2, 10.0, jitter=lambda: jitter)
    assert backoff.delay(failures, server_asked) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KubeTransient("throttled", 429, body={"details": {"retryAfterSeconds": 5}}), 5.0),
        (KubeTransient("throttled", 429, body={"details": {"retryAfterSeconds": 0.5}}), 0.5),
        (KubeTransient("throttled", 429, body={"details": {}}), None),
        (KubeTransient("throttled", 429, body={"details": {"retryAfterSeconds": 0}}), None),
        (KubeTransient("throttled", 429, body={"details": {"retryAfterSeconds": "soon"}}), None),
        (KubeTransient("unavailable", 503), None),
        (None, None),
    ],
    ids=["seconds", "a fraction", "no field", "zero", "not a number", "no Status body", "no error"],
)
def test_retry_after_is_read_from_the_status_details(error: KubeError | None, expected: float | None) -> None:
    assert retry_after(error) == expected


class RecordingInterrupt:
    """An interrupt that is set while the caller waits: records the wait it cut short, never sleeps."""

    def __init__(self) -> None:
        self.waits: list[float | None] = []

    def is_set(self) -> bool:
        return bool(self.waits)

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return True


def test_an_interrupt_during_the_wait_ends_it_and_says_so() -> None:
    interrupt = RecordingInterrupt()
    assert pause(30.0, interrupt) is True
    assert interrupt.waits == [30.0]


@pytest.mark.parametrize("with_reachability", [False, True], ids=["plain", "waiting for the server's return"])
def test_a_set_interrupt_ends_even_a_long_wait_at_once(with_reachability: bool) -> None:
    stop = threading.Event()
    stop.set()
    options: dict[str, Any] = {}
    if with_reachability:
        reachability = ApiReachability("https://api")
        options = {"reachability": reachability, "returns": reachability.returns}
    assert pause(3600.0, stop, **options) is True


def test_a_stop_from_another_thread_ends_a_wait_for_the_servers_return() -> None:
    reachability = ApiReachability("https://api")
    stop = threading.Event()
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(pause(3600.0, stop, reachability, reachability.returns)))
    waiter.start()
    # The writer's and the watches' stop: set the flag, then wake the reachability waits.
    stop.set()
    reachability.wake()
    waiter.join()
    assert outcome == [True]


def test_the_servers_return_ends_the_wait_without_an_interrupt() -> None:
    now = [100.0]
    reachability = ApiReachability("https://api", monotonic=lambda: now[0])
    returns = reachability.returns  # read before the call that fails, as the callers do
    assert reachability.failed("kube writer", KubeTransient("[Errno 111] Connection refused"), "write-1")
    reachability.succeeded("watch groups")
    reachability.close()
    assert pause(3600.0, threading.Event(), reachability, returns) is False


def test_a_wait_nobody_interrupts_lasts_its_time_and_says_so() -> None:
    assert pause(0.0, threading.Event()) is False
