"""`PowerExecutor`: the real `PowerPort`, running power operations on its own bounded pool of worker threads.

The actors submit `PowerRequest`s and go on; this module keeps the port's promises (`actors.power_port`):

* `submit` only enqueues; operations run on the executor's workers, never on the caller's (pump or gRPC) thread.
* One operation at a time per BMC or host (`factory.endpoint_key`): a BMC serves a few sessions at most, and two
  commands racing on one machine would leave its state to chance. Other endpoints proceed meanwhile.
* Coalescing: a request equal to one queued or running (same machine, action and attempt, as an actor recreated
  after a restart re-submits) joins it; the operation runs once and every request gets the one outcome.
* Each try has a timeout (the drivers pass it to their library, and a try that overruns it anyway is abandoned)
  and reads its credentials afresh through the
  `SecretReader`; the driver, and with it the credentials, is dropped when the try ends. Failures marked
  `retryable` are tried again after an exponential backoff with jitter, as long as the request's deadline allows.
* Exactly one `PowerOutcome` per request. `close()` answers whatever is still queued with a failure rather than
  dropping it, stops retries, and waits briefly for the tries in flight, which are answered too.

Time is a seam (`clock`, `sleep`, `jitter`) so tests can run the backoff without waiting.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from actors.power_port import PowerAction, PowerFailure, PowerOutcome, PowerRequest
from power_drivers.driver import PowerDriver
from power_drivers.errors import PowerDriverError
from power_drivers.factory import build_driver, endpoint_key
from power_drivers.metrics import PowerMetrics
from power_drivers.secrets import SecretReader
from schemas.power import PowerState

logger = logging.getLogger(__name__)

DEFAULT_WORKERS: Final = 4
DEFAULT_TRY_TIMEOUT: Final = 10.0
"""Seconds one try may take: a BMC on the LAN answers in well under a second, a busy one in a few."""
MINIMUM_TRY_TIMEOUT: Final = 0.5
TRY_GRACE: Final = 2.0
"""Seconds past its timeout a try may take before it is abandoned (a library's own timeout fires first)."""
FIRST_BACKOFF: Final = 1.0
MAXIMUM_BACKOFF: Final = 30.0
CLOSE_WAIT: Final = 5.0

Identity = tuple[str, PowerAction, int]
DriverFactory = Callable[[PowerRequest, SecretReader, float], PowerDriver]


@dataclass
class _Job:
    """One operation to run, and every request waiting for it."""

    identity: Identity
    endpoint: str
    deadline: float
    requests: list[PowerRequest] = field(default_factory=list)


@dataclass(frozen=True)
class _Result:
    succeeded: bool
    tries: int
    observed: PowerState | None = None
    failure: PowerFailure | None = None
    message: str = ""


class PowerExecutor:
    """Runs native power operations for the actors; see the module docstring for what it promises."""

    def __init__(
        self,
        tell: Callable[[Any, object], None],
        secrets: SecretReader,
        workers: int = DEFAULT_WORKERS,
        *,
        metrics: PowerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[], float] = random.random,
        try_timeout_seconds: float = DEFAULT_TRY_TIMEOUT,
        try_grace_seconds: float = TRY_GRACE,
        first_backoff_seconds: float = FIRST_BACKOFF,
        maximum_backoff_seconds: float = MAXIMUM_BACKOFF,
        driver_factory: DriverFactory = build_driver,
    ) -> None:
        if workers < 1:
            raise ValueError("a power executor needs at least one worker")
        self._tell = tell
        self._secrets = secrets
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._try_timeout = try_timeout_seconds
        self._try_grace = try_grace_seconds
        self._first_backoff = first_backoff_seconds
        self._maximum_backoff = maximum_backoff_seconds
        self._build_driver = driver_factory
        self._lock = threading.Condition()
        self._queue: list[_Job] = []
        self._pending: dict[Identity, _Job] = {}
        self._busy: set[str] = set()
        self._closed = False
        self._stopping = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"power-worker-{index}", daemon=True) for index in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    # ---- the port ----

    def submit(self, request: PowerRequest) -> None:
        identity: Identity = (request.machine_key, request.action, request.attempt)
        with self._lock:
            if not self._closed:
                job = self._pending.get(identity)
                if job is not None:
                    job.requests.append(request)
                    return
                job = _Job(identity, endpoint_key(request), self._clock() + request.deadline_seconds, [request])
                self._pending[identity] = job
                self._queue.append(job)
                self._lock.notify()
                return
        self._answer([request], _stopped_result(request, tries=0))

    def close(self, wait_seconds: float = CLOSE_WAIT) -> None:
        """Stops: queued requests are answered with a failure, retries end, tries in flight are waited for."""
        with self._lock:
            self._closed = True
            abandoned = self._queue
            self._queue = []
            for job in abandoned:
                del self._pending[job.identity]
            self._lock.notify_all()
        self._stopping.set()
        for job in abandoned:
            self._answer(job.requests, _stopped_result(job.requests[0], tries=0))
        deadline = time.monotonic() + wait_seconds
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    @property
    def pending(self) -> int:
        """Operations queued or running."""
        with self._lock:
            return len(self._pending)

    # ---- the workers ----

    def _work(self) -> None:
        while True:
            with self._lock:
                job = self._next_job()
                while job is None:
                    if self._closed:
                        return
                    self._lock.wait()
                    job = self._next_job()
                self._busy.add(job.endpoint)
            try:
                result = self._run(job)
            finally:
                with self._lock:
                    self._busy.discard(job.endpoint)
                    del self._pending[job.identity]
                    waiting = list(job.requests)
                    self._lock.notify_all()
            self._answer(waiting, result)

    def _next_job(self) -> _Job | None:
        """The oldest queued job whose endpoint is idle (taken off the queue), or None."""
        for index, job in enumerate(self._queue):
            if job.endpoint not in self._busy:
                return self._queue.pop(index)
        return None

    def _run(self, job: _Job) -> _Result:
        request = job.requests[0]
        tries = 0
        while True:
            tries += 1
            remaining = job.deadline - self._clock()
            timeout = max(MINIMUM_TRY_TIMEOUT, min(self._try_timeout, remaining))
            started = self._clock()
            failure, message, observed = self._try_once(request, timeout)
            if self._metrics is not None:
                self._metrics.tried(request.driver, request.action, self._clock() - started, failure)
            if failure is None:
                return _Result(True, tries, observed=observed)
            if not failure.retryable:
                return _Result(False, tries, failure=failure, message=message)
            delay = min(self._maximum_backoff, self._first_backoff * 2 ** (tries - 1)) * (0.5 + self._jitter() / 2)
            if self._clock() + delay >= job.deadline:
                return _Result(False, tries, failure=failure, message=f"{message} (gave up after {tries} tries)")
            logger.info(
                "%s: %s failed, trying again in %.1f s: %s", request.machine_key, request.action, delay, message
            )
            if not self._pause(delay):
                return _Result(False, tries, failure=failure, message=f"{message} (not retried: the operator stopped)")

    def _try_once(self, request: PowerRequest, timeout: float) -> tuple[PowerFailure | None, str, PowerState | None]:
        """One try on a thread of its own, waited for `timeout` plus a grace period: the libraries bound their own
        waits, but a library that hangs anyway must not hold a worker (and its BMC) forever. A try still running
        then is abandoned (its thread ends when the library returns) and reported as timed out."""
        outcome: list[tuple[PowerFailure | None, str, PowerState | None]] = []
        attempt = threading.Thread(
            target=lambda: outcome.append(self._call_driver(request, timeout)),
            name=f"power-try-{request.machine_key}",
            daemon=True,
        )
        attempt.start()
        attempt.join(timeout + self._try_grace)
        if outcome:
            return outcome[0]
        logger.warning(
            "%s: %s by %s still running after %.1f s; abandoned",
            request.machine_key,
            request.action,
            request.driver,
            timeout + self._try_grace,
        )
        return (
            PowerFailure.TIMED_OUT,
            f"{request.machine_key}: {request.driver}: no answer within {timeout + self._try_grace:.1f} s",
            None,
        )

    def _call_driver(self, request: PowerRequest, timeout: float) -> tuple[PowerFailure | None, str, PowerState | None]:
        try:
            driver = self._build_driver(request, self._secrets, timeout)
            return None, "", _perform(driver, request.action)
        except PowerDriverError as error:
            return error.failure, error.message, None
        except Exception as error:  # a library bug must not kill the worker nor lose the answer
            logger.debug("%s: %s raised", request.machine_key, request.action, exc_info=True)
            return (
                PowerFailure.PROTOCOL_ERROR,
                f"{request.machine_key}: unexpected {type(error).__name__} in the {request.driver} driver",
                None,
            )

    def _pause(self, seconds: float) -> bool:
        """Waits out a backoff; False when the executor is closing instead."""
        if self._sleep is not None:
            self._sleep(seconds)
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def _answer(self, requests: list[PowerRequest], result: _Result) -> None:
        for request in requests:
            outcome = PowerOutcome(
                machine_key=request.machine_key,
                action=request.action,
                attempt=request.attempt,
                driver=request.driver,
                succeeded=result.succeeded,
                observed=result.observed,
                failure=result.failure,
                message=result.message,
                tries=result.tries,
            )
            if self._metrics is not None:
                self._metrics.answered(request.driver, request.action, result.succeeded)
            if result.succeeded:
                logger.info(
                    "%s: %s by %s succeeded%s",
                    request.machine_key,
                    request.action,
                    request.driver,
                    f" (read {result.observed})" if result.observed is not None else "",
                )
            else:
                logger.warning(
                    "%s: %s failed (%s): %s", request.machine_key, request.action, result.failure, result.message
                )
            try:
                self._tell(request.reply_to, outcome)
            except Exception:
                logger.exception("%s: could not deliver the outcome of %s", request.machine_key, request.action)


def _perform(driver: PowerDriver, action: PowerAction) -> PowerState | None:
    match action:
        case PowerAction.POWER_ON:
            driver.power_on()
        case PowerAction.POWER_OFF:
            driver.power_off(force=False)
        case PowerAction.FORCE_OFF:
            driver.power_off(force=True)
        case PowerAction.READ_POWER_STATE:
            return driver.read_power_state()
    return None


def _stopped_result(request: PowerRequest, tries: int) -> _Result:
    return _Result(
        False,
        tries,
        failure=PowerFailure.DRIVERS_UNAVAILABLE,
        message=f"{request.machine_key}: {request.action} not run: the power executor stopped",
    )
