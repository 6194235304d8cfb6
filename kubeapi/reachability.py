"""Whether the API server can be reached, told once per outage: one WARNING when it is lost, one INFO when it is back.

Separate because an outage is one event seen by many threads at once. When a control plane reboots, every watch,
every writer worker and the leader elector fail together and keep failing on every retry; each of them logging its
own failures turned an eight-second outage into a hundred and fifty WARNING lines, and none of them said what a
person wants to know: when the server went away, when it came back, and whether anything was missed. So all of
them report here (`failed`, `succeeded`), and this module alone decides what the outage looks like:

- the first connection failure while the server was reachable is one WARNING (what failed, the address, the error
  in one line); the outages counter goes up and the reachability gauge goes to 0;
- every further failure during the outage is DEBUG;
- the first success sets the gauge back to 1; the one INFO line waits until whatever failed during the outage has
  recovered (each watch relisted, each write applied), or `settle_seconds` at most, and says how long the server
  was gone, which watches relisted and how many writes were retried.

Only failures that mean the server is not there count: no answer at all (connection refused or reset, timeouts:
`status == 0`) and 503 Service Unavailable, which is what a kube-apiserver answers for its first seconds after a
restart ("the request has been made before all known HTTP paths have been installed"). Every other error is an
answer about the request, and stays with its caller, whose log names the request.

The transitions are the pure `step` below, a table (tests/unit/test_reachability.py); `ApiReachability` is the
thread-safe shell around it that logs, sets the metrics and wakes the threads waiting for the server's return.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from actors import metrics
from kubeapi.kube_client import KubeError, KubeTransient

logger = logging.getLogger(__name__)

DEFAULT_SETTLE_SECONDS: Final = 10.0
"""How long the INFO line waits after the return for what failed during the outage to recover."""
_ERRNO: Final = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")
_MAX_ERROR_CHARS: Final = 160
WATCH_PREFIX: Final = "watch "
WRITE_PREFIX: Final = "write "


SERVICE_UNAVAILABLE: Final = 503


def unreachable(error: KubeError) -> bool:
    """Whether the error means the API server is not there: no answer (refused, reset, timed out) or 503. Pure."""
    return isinstance(error, KubeTransient) and error.status in (0, SERVICE_UNAVAILABLE)


def one_line(message: str) -> str:
    """The gist of a client error in one short line: `[Errno 111] Connection refused` out of urllib3's story. Pure.

    urllib3 nests the cause three deep (MaxRetryError, NewConnectionError, the object's repr with its address);
    the errno and its text are what a person reads, the rest is kept only when there is no errno.
    """
    found = _ERRNO.search(message)
    if found is not None:
        what = message.split(": ", 1)[0] if ": " in message else ""
        return f"{what}: {found.group(0).strip()}" if what else found.group(0).strip()
    flat = " ".join(message.split())
    return flat if len(flat) <= _MAX_ERROR_CHARS else flat[: _MAX_ERROR_CHARS - 1] + "…"


# --- the pure transitions --------------------------------------------------------------------------------------


class Phase(StrEnum):
    UP = "up"
    DOWN = "down"
    RETURNING = "returning"
    """Answering again; waiting for what failed during the outage to recover before saying so."""


@dataclass(frozen=True)
class Failed:
    """A call got no answer. `pending` names what must recover before the return is told (a watch, a write)."""

    source: str
    error: str
    pending: str | None = None


@dataclass(frozen=True)
class Succeeded:
    """A call was answered. `pending` as in `Failed`; `relisted` when it was a watch's (re)list."""

    source: str
    pending: str | None = None
    relisted: bool = False


@dataclass(frozen=True)
class Abandoned:
    """`pending` will never recover (a write given up because the writer stops): stop waiting for it."""

    pending: str


@dataclass(frozen=True)
class SettleDue:
    """The return has waited `settle_seconds` for stragglers: tell it now."""


ReachabilityEvent = Failed | Succeeded | Abandoned | SettleDue


@dataclass(frozen=True)
class State:
    phase: Phase = Phase.UP
    lost_at: float = 0.0
    """Monotonic seconds of the outage's first failure."""
    lost_wall: datetime | None = None
    back_at: float = 0.0
    back_wall: datetime | None = None
    failures: int = 0
    waiting: frozenset[str] = frozenset()
    relisted: frozenset[str] = frozenset()
    writes_retried: int = 0


@dataclass(frozen=True)
class Lost:
    """Told once per outage, as a WARNING."""

    source: str
    error: str
    at: datetime


@dataclass(frozen=True)
class Retrying:
    """Another failure during the outage, at DEBUG."""

    source: str
    error: str


@dataclass(frozen=True)
class Back:
    """Told once per outage, as INFO, when everything that failed has recovered (or the settle time is over)."""

    lost_at: datetime
    back_at: datetime
    seconds: float
    failures: int
    relisted: tuple[str, ...]
    writes_retried: int
    still_waiting: tuple[str, ...] = field(default=())


Notice = Lost | Retrying | Back


def step(
    state: State, event: ReachabilityEvent, now: float, wall: datetime
) -> tuple[State, tuple[Notice, ...]]:
    """The next state and what to tell, for one report. Pure; `now` is monotonic seconds, `wall` the same moment."""
    if isinstance(event, Failed):
        waiting = state.waiting | {event.pending} if event.pending else state.waiting
        if state.phase is Phase.UP:
            lost = State(Phase.DOWN, now, wall, failures=1, waiting=waiting)
            return lost, (Lost(event.source, event.error, wall),)
        # Failing again while returning is the same outage: the server flapped; one WARNING was enough.
        return replace(state, phase=Phase.DOWN, failures=state.failures + 1, waiting=waiting), (
            Retrying(event.source, event.error),
        )
    if state.phase is Phase.UP:
        return state, ()
    if isinstance(event, SettleDue):
        return (State(), (_back(state),)) if state.phase is Phase.RETURNING else (state, ())
    if isinstance(event, Abandoned):
        settled = replace(state, waiting=state.waiting - {event.pending})
    else:
        settled = replace(
            state,
            waiting=state.waiting - {event.pending} if event.pending else state.waiting,
            relisted=state.relisted | {event.source} if event.relisted else state.relisted,
            writes_retried=state.writes_retried
            + (1 if event.pending and event.pending.startswith(WRITE_PREFIX) and event.pending in state.waiting else 0),
        )
        if state.phase is Phase.DOWN:
            settled = replace(settled, phase=Phase.RETURNING, back_at=now, back_wall=wall)
    if settled.phase is Phase.RETURNING and not settled.waiting:
        return State(), (_back(settled),)
    return settled, ()


def _back(state: State) -> Back:
    assert state.lost_wall is not None
    assert state.back_wall is not None
    return Back(
        lost_at=state.lost_wall,
        back_at=state.back_wall,
        seconds=state.back_at - state.lost_at,
        failures=state.failures,
        relisted=tuple(sorted(name.removeprefix(WATCH_PREFIX) for name in state.relisted)),
        writes_retried=state.writes_retried,
        still_waiting=tuple(sorted(state.waiting)),
    )


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def lost_line(address: str, notice: Lost) -> str:
    """The WARNING of an outage. Pure."""
    return f"API server {address} unreachable since {_clock(notice.at)} UTC: {notice.source}: {notice.error}"


def back_line(address: str, notice: Back) -> str:
    """The INFO line of a return. Pure."""
    watches = f"watches relisted: {', '.join(notice.relisted)}" if notice.relisted else "no watch relisted"
    writes = (
        f"{notice.writes_retried} write{'s' if notice.writes_retried != 1 else ''} retried in order"
        if notice.writes_retried
        else "no write retried"
    )
    outcome = (
        f"still recovering: {', '.join(notice.still_waiting)}" if notice.still_waiting else "nothing missed"
    )
    return (
        f"API server {address} back at {_clock(notice.back_at)} UTC after {notice.seconds:.1f} s unreachable "
        f"(since {_clock(notice.lost_at)}, {notice.failures} failed calls); {watches}; {writes}; {outcome}"
    )


# --- the shell -------------------------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ApiReachability:
    """The process's one view of whether its API server answers; every watch, the writer and the elector report.

    Thread-safe. `failed` returns whether the error was a lost connection (then it has been told here, and the
    caller logs nothing more than DEBUG). Threads that back off may wait with `wait_for_return`, which ends early
    when the server is answering again, so that nothing sleeps through the return on a long back-off.
    """

    def __init__(
        self,
        address: str,
        *,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.address = address
        self._settle_seconds = settle_seconds
        self._monotonic = monotonic
        self._clock = clock
        self._state = State()
        self._condition = threading.Condition()
        self._returns = 0
        self._settle_timer: threading.Timer | None = None
        self._listeners: list[Callable[[Back], None]] = []
        metrics.API_REACHABLE.set(1)

    @property
    def reachable(self) -> bool:
        with self._condition:
            return self._state.phase is not Phase.DOWN

    @property
    def settled(self) -> bool:
        """True when no outage is under way or still being told (its INFO line has been written)."""
        with self._condition:
            return self._state.phase is Phase.UP

    def add_return_listener(self, listener: Callable[[Back], None]) -> None:
        """Call `listener` with every return as it is told (on the reporting thread, outside any lock here)."""
        with self._condition:
            self._listeners.append(listener)

    def remove_return_listener(self, listener: Callable[[Back], None]) -> None:
        with self._condition:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @property
    def returns(self) -> int:
        """How many times the server came back; pass it to `wait_for_return` taken before the failing call."""
        with self._condition:
            return self._returns

    def failed(self, source: str, error: KubeError, pending: str | None = None) -> bool:
        """Report a failed call; True when it was a lost connection (told here), False for any other error."""
        if not unreachable(error):
            return False
        self._report(Failed(source, one_line(error.message), pending))
        return True

    def succeeded(self, source: str, pending: str | None = None, *, relisted: bool = False) -> None:
        with self._condition:
            if self._state.phase is Phase.UP:
                return  # the common case, kept cheap: nothing to tell
        self._report(Succeeded(source, pending, relisted))

    def abandoned(self, pending: str) -> None:
        self._report(Abandoned(pending))

    def wait_for_return(self, returns: int, timeout: float, cancelled: Callable[[], bool]) -> None:
        """Sleep up to `timeout`; sooner when the server comes back after `returns`, or when `wake` is called and
        `cancelled()` is true."""
        deadline = self._monotonic() + timeout
        with self._condition:
            while self._returns == returns and not cancelled():
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    return
                self._condition.wait(remaining)

    def wake(self) -> None:
        """Make every `wait_for_return` check its `cancelled` now (a watch or the writer is stopping)."""
        with self._condition:
            self._condition.notify_all()

    def close(self) -> None:
        with self._condition:
            timer, self._settle_timer = self._settle_timer, None
        if timer is not None:
            timer.cancel()

    def _report(self, event: ReachabilityEvent) -> None:
        with self._condition:
            before = self._state
            self._state, notices = step(before, event, self._monotonic(), self._clock())
            if before.phase is Phase.DOWN and self._state.phase is not Phase.DOWN:
                self._returns += 1
                self._condition.notify_all()
                metrics.API_REACHABLE.set(1)
            elif before.phase is not Phase.DOWN and self._state.phase is Phase.DOWN:
                metrics.API_REACHABLE.set(0)  # lost, or lost again while returning (then no new outage is counted)
            if self._state.phase is Phase.RETURNING and self._settle_timer is None:
                self._settle_timer = threading.Timer(self._settle_seconds, self._settle)
                self._settle_timer.daemon = True
                self._settle_timer.start()
            timer = self._settle_timer if self._state.phase is Phase.UP else None
            if timer is not None:
                self._settle_timer = None
            # Logged under the lock: the WARNING must come before any DEBUG of the same outage, the INFO after.
            for notice in notices:
                self._tell(notice)
            listeners = list(self._listeners)
        if timer is not None:
            timer.cancel()
        for notice in notices:
            if isinstance(notice, Back):
                for listener in listeners:
                    try:
                        listener(notice)
                    except Exception:  # a listener's bug must not stop the others, nor the reporting thread
                        logger.exception("a listener of the API server's return failed")

    def _settle(self) -> None:
        with self._condition:
            self._settle_timer = None
        self._report(SettleDue())

    def _tell(self, notice: Notice) -> None:
        if isinstance(notice, Lost):
            metrics.API_OUTAGES.inc()
            logger.warning("%s", lost_line(self.address, notice))
        elif isinstance(notice, Retrying):
            logger.debug("API server %s still unreachable: %s: %s", self.address, notice.source, notice.error)
        else:
            logger.info("%s", back_line(self.address, notice))
