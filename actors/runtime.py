"""`ActorRuntime`: the one pump thread that owns the Thespian ActorSystem, and the only door into it.

Why a pump: on `simpleSystemBase` actors run synchronously inside whichever thread calls the system's
tell/ask/listen, the shared system handle mixes up replies between threads, and `private()` ask timeouts are
ignored (a silent actor blocks the caller forever). So exactly one thread, the pump, creates and touches the
ActorSystem. Every other thread (gRPC workers, watch threads, tests) hands it work items through a
`queue.SimpleQueue` and gets a `concurrent.futures.Future` whose deadline *we* enforce.

The pump loop:

1. Every `tick_interval` it sends `Tick(now)` (monotonic seconds) to the runtime's `TickerActor`, which
   fires due timers, and samples the queue depth.
2. It fails asks whose deadline passed (`ActorTimeout`), from a heap of deadlines.
3. It blocks on the work queue until the next tick or deadline, whichever is sooner (so an idle runtime
   wakes `1 / tick_interval` times a second and does nearly nothing), then handles the item: create an
   actor, tell, or ask. Thespian delivers the message, and everything it causes, before `tell` returns.
4. It resolves the futures of replies that arrived.

How replies reach futures. Measured on this machine with 1000 echo actors (per ask, pump side only):
routing through a `_ReplyRouter` actor 24 us; telling the target directly and draining replies with
`listen(0)` 32 us (each `listen` call costs ~3 us even when nothing is waiting). So asks are routed: the pump
tells the router `_RouteRequest(target, message)`, the router sends `message` to the target *as itself*, the
target's reply comes back to the router, and the router appends it to a deque that the pump owns. The router
runs on the pump thread (simpleSystemBase executes every actor in the thread that called `tell`), so that
plain deque needs no lock. Fire-and-forget tells go straight to the target; anything an actor sends back to
such an external sender is drained once per tick and dropped (a returned `PoisonMessage` is logged).

Ordering guarantee: work items are handled one at a time in submission order, and each one's whole cascade
(every message the actors send in reaction, transitively) is delivered before the next item is taken. So a
caller that tells an observation and then asks any actor gets an answer that reflects the observation. Handing
Thespian a batch of queued items in one `tell` would be up to 2.4x cheaper per message in a flood (measured:
6.4 us against 15 us per message in batches of 64), but the batch's messages would then interleave with each
other's cascades; the guarantee is worth more than the throughput (still ~35k events/s, see bench/actors.py).

Ask protocol: the message carries a hashable `request_id` (see `Request`), unique among asks in flight
(`new_request_id()` makes one), and the reply echoes it as `reply.request_id`; that is how a reply is matched
to its future. The reply may be sent later, from another handler, to the sender the request came from. If the
target's handler raises on every retry, Thespian returns the request to the router as a `PoisonMessage`
and the future fails with `ActorFailed` (carrying the traceback text); the actor keeps serving. If the target
forwards the request and the failure happens further on, the asker sees `ActorTimeout`.

Rules for callers: never block on a runtime future inside an actor handler or a future callback (both run on
the pump thread, which is the only thread that could resolve it). A handler that blocks stalls the whole
system, deadlines included, so callers waiting on `future.result()` should pass their own timeout too.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, overload

from thespian.actors import (
    Actor,
    ActorAddress,
    ActorExitRequest,
    ActorSystem,
    ActorSystemMessage,
    PoisonMessage,
)

from actors import metrics
from actors.errors import ActorFailed, ActorTimeout, RuntimeStopped
from actors.ticker_actor import TICKER_GLOBAL_NAME, Tick, TickerActor

LOGGER = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT")

# Deadline heap entries of asks answered early stay until they surface; rebuild when they dominate.
_STALE_DEADLINE_FACTOR = 4
_MINIMUM_DEADLINES_BEFORE_COMPACTION = 1024

_ASK_OUTCOMES = {
    outcome: metrics.ASKS.labels(outcome)
    for outcome in ("ok", "timeout", "failed", "stopped", "cancelled", "rejected")
}


class Request(Protocol):
    """A message that can be asked: it carries an id the reply echoes."""

    @property
    def request_id(self) -> Hashable: ...


# --- internal messages between the pump and the reply router ----------------------------------------------

@dataclass(frozen=True)
class _AttachInbox:
    """First message to the router: where to put replies (a deque owned by the pump thread)."""

    inbox: deque[object]


@dataclass(frozen=True)
class _RouteRequest:
    """Send `message` to `target` with the router as its sender, so the reply comes back to the router."""

    target: Any
    message: object


class _ReplyRouter(Actor):  # type: ignore[misc]  # thespian ships no type hints
    # A plain Actor, not a ShellActor: it handles two messages per ask, and per-message metrics would
    # double the bookkeeping of the hottest path for no insight (the asks counter already covers it).

    def __init__(self) -> None:
        super().__init__()
        self._inbox: deque[object] | None = None

    def receiveMessage(self, message: object, sender: Any) -> None:
        if isinstance(message, _RouteRequest):
            self.send(message.target, message.message)
        elif isinstance(message, _AttachInbox):
            self._inbox = message.inbox
        elif self._inbox is not None and (
            isinstance(message, PoisonMessage) or not isinstance(message, ActorSystemMessage)
        ):
            self._inbox.append(message)


# --- work items handed from any thread to the pump --------------------------------------------------------

@dataclass(slots=True)
class _AskItem:
    target: Any
    message: Request
    request_id: Hashable
    future: Future[Any]
    timeout: float
    deadline: float
    reply_type: type[Any] | None
    enqueued_at: float


@dataclass(slots=True)
class _TellItem:
    target: Any
    message: object
    enqueued_at: float


@dataclass(slots=True)
class _CreateItem:
    actor_class: type[Any]
    global_name: str | None
    future: Future[Any]
    enqueued_at: float


@dataclass(slots=True)
class _StopItem:
    enqueued_at: float


_WorkItem = _AskItem | _TellItem | _CreateItem | _StopItem


@dataclass(slots=True)
class _PendingAsk:
    future: Future[Any]
    message: object
    timeout: float
    reply_type: type[Any] | None
    sequence: int


class ActorRuntime:
    """Owns the pump thread and its ActorSystem; every public method may be called from any thread."""

    def __init__(self, tick_interval: float = 0.05, name: str = "homelab-autoscaler") -> None:
        if tick_interval <= 0:
            raise ValueError("tick_interval must be positive")
        self._tick_interval = tick_interval
        self._name = name
        self._work: queue.SimpleQueue[_WorkItem] = queue.SimpleQueue()
        # The gate makes "accepting?" and "enqueue" one step, so nothing can be queued behind the stop item.
        self._gate = threading.Lock()
        self._accepting = False
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._ticker: Any = None
        self._request_counter = itertools.count(1)
        # Owned by the pump thread alone.
        self._replies: deque[object] = deque()
        self._pending: dict[Hashable, _PendingAsk] = {}
        self._deadlines: list[tuple[float, int, Hashable]] = []
        self._deadline_sequence = itertools.count()
        self._top_level: dict[str, Any] = {}

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the pump thread and wait until its ActorSystem and ticker exist."""
        with self._gate:
            if self._thread is not None:
                raise RuntimeError("an ActorRuntime can be started only once")
            self._thread = threading.Thread(target=self._run_pump, name=f"{self._name}-pump", daemon=True)
            self._accepting = True
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeStopped(f"the actor pump did not start within {timeout:g} s")
        if self._startup_error is not None:
            self._thread.join()
            raise RuntimeStopped("the actor system could not start") from self._startup_error

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the work already queued, stop every top-level actor, shut the system down, join the pump.

        Asks still waiting for a reply fail with `RuntimeStopped`, and so does everything submitted later.
        Called from the pump thread itself (an actor deciding to stop), it only requests the stop.
        """
        with self._gate:
            if self._accepting:
                self._accepting = False
                self._work.put(_StopItem(time.monotonic()))
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"the actor pump did not stop within {timeout:g} s")

    def __enter__(self) -> ActorRuntime:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def is_running(self) -> bool:
        """True while the runtime accepts work."""
        return self._accepting

    @property
    def ticker(self) -> Any:
        """Address of the runtime's TickerActor (also reachable by global name `TICKER_GLOBAL_NAME`)."""
        if self._ticker is None:
            raise RuntimeStopped("the runtime has not started")
        return self._ticker

    # --- submitting work (any thread) --------------------------------------------------------------------

    def new_request_id(self) -> str:
        """A request id unique within this runtime, for messages that are asked."""
        return f"{self._name}-{next(self._request_counter)}"

    def create_actor(
        self,
        actor_class: type[Any],
        globalName: str | None = None,  # noqa: N803  # the keyword Thespian's own createActor uses
    ) -> Future[Any]:
        """Create a top-level actor; the future resolves to its ActorAddress (stopped with the runtime)."""
        future: Future[Any] = Future()
        if not self._submit(_CreateItem(actor_class, globalName, future, time.monotonic())):
            future.set_exception(RuntimeStopped(f"cannot create {actor_class.__name__}: runtime not running"))
        return future

    def tell(self, address: Any, message: object) -> None:
        """Send `message` to the actor at `address` without waiting; raises RuntimeStopped if not running."""
        _require_address(address)
        if not self._submit(_TellItem(address, message, time.monotonic())):
            raise RuntimeStopped(f"cannot tell {message!r}: runtime not running")

    @overload
    def ask(self, address: Any, message: Request, timeout: float) -> Future[object]: ...

    @overload
    def ask(
        self, address: Any, message: Request, timeout: float, reply_type: type[ReplyT]
    ) -> Future[ReplyT]: ...

    def ask(
        self, address: Any, message: Request, timeout: float, reply_type: type[Any] | None = None
    ) -> Future[Any]:
        """Send `message` and return a future for the reply that echoes its `request_id`.

        The future fails with `ActorTimeout` once `timeout` seconds have passed without a reply, with
        `ActorFailed` if the handler raised on every retry (or the reply is not a `reply_type`), and with
        `RuntimeStopped` if the runtime is not running or stops first. Raises TypeError at once for a message
        without a hashable `request_id` or a target that is not an actor address.
        """
        _require_address(address)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        request_id = getattr(message, "request_id", None)
        if request_id is None or not isinstance(request_id, Hashable):
            raise TypeError(f"an asked message needs a hashable request_id: {message!r}")
        future: Future[Any] = Future()
        now = time.monotonic()
        item = _AskItem(address, message, request_id, future, timeout, now + timeout, reply_type, now)
        if not self._submit(item):
            _ASK_OUTCOMES["stopped"].inc()
            future.set_exception(RuntimeStopped(f"cannot ask {message!r}: runtime not running"))
        return future

    def _submit(self, item: _WorkItem) -> bool:
        with self._gate:
            if not self._accepting:
                return False
            self._work.put(item)
            return True

    # --- the pump thread ---------------------------------------------------------------------------------

    def _run_pump(self) -> None:
        try:
            # transientUnique: ActorSystem() is otherwise a process-wide singleton per base, and two
            # runtimes (tests, benchmarks) would share one system. logDefs=False: leave app logging alone.
            system = ActorSystem("simpleSystemBase", logDefs=False, transientUnique=True)
            router = system.createActor(_ReplyRouter)
            system.tell(router, _AttachInbox(self._replies))
            ticker = system.createActor(TickerActor, globalName=TICKER_GLOBAL_NAME)
        except BaseException as error:
            self._startup_error = error
            with self._gate:
                self._accepting = False
            self._started.set()
            self._reject_queued_work()
            return
        self._ticker = ticker
        self._started.set()
        try:
            self._pump_loop(system, router, ticker)
        except BaseException:
            LOGGER.critical("the actor pump crashed; the runtime is stopped", exc_info=True)
        finally:
            with self._gate:
                self._accepting = False
            self._shut_down(system, router, ticker)

    def _pump_loop(self, system: Any, router: Any, ticker: Any) -> None:
        next_tick = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_tick:
                system.tell(ticker, Tick(now))
                self._drain_external_replies(system)
                self._resolve_replies()
                metrics.PUMP_QUEUE_DEPTH.set(self._work.qsize())
                # After a long stall send one tick with the current time rather than a burst of catch-ups.
                next_tick = now + self._tick_interval
            self._expire_deadlines(now)
            wake_at = min(next_tick, self._deadlines[0][0]) if self._deadlines else next_tick
            try:
                item = self._work.get(timeout=max(0.0, wake_at - time.monotonic()))
            except queue.Empty:
                continue
            metrics.PUMP_WAIT_SECONDS.observe(time.monotonic() - item.enqueued_at)
            if isinstance(item, _StopItem):
                return
            try:
                self._handle(system, router, item)
            except Exception as error:
                LOGGER.exception("the actor pump could not handle %r", item)
                if not isinstance(item, _TellItem) and not item.future.done():
                    item.future.set_exception(error)
            self._resolve_replies()

    def _handle(self, system: Any, router: Any, item: _AskItem | _TellItem | _CreateItem) -> None:
        if isinstance(item, _TellItem):
            system.tell(item.target, item.message)
        elif isinstance(item, _AskItem):
            self._start_ask(system, router, item)
        else:
            self._create(system, item)

    def _start_ask(self, system: Any, router: Any, item: _AskItem) -> None:
        if not item.future.set_running_or_notify_cancel():
            _ASK_OUTCOMES["cancelled"].inc()
            return
        if time.monotonic() >= item.deadline:
            # The caller has given up already; delivering the request now would act on nobody's behalf.
            _ASK_OUTCOMES["timeout"].inc()
            item.future.set_exception(ActorTimeout(item.message, item.timeout))
            return
        if item.request_id in self._pending:
            _ASK_OUTCOMES["rejected"].inc()
            item.future.set_exception(ValueError(f"request_id {item.request_id!r} is already in flight"))
            return
        sequence = next(self._deadline_sequence)
        self._pending[item.request_id] = _PendingAsk(
            item.future, item.message, item.timeout, item.reply_type, sequence
        )
        heapq.heappush(self._deadlines, (item.deadline, sequence, item.request_id))
        system.tell(router, _RouteRequest(item.target, item.message))

    def _create(self, system: Any, item: _CreateItem) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            address = system.createActor(item.actor_class, globalName=item.global_name)
        except Exception:
            details = traceback.format_exc()
            item.future.set_exception(
                ActorFailed(item.actor_class.__name__, details, reason="could not create actor")
            )
            return
        self._top_level.setdefault(address.actorAddressString, address)
        item.future.set_result(address)

    def _resolve_replies(self) -> None:
        while self._replies:
            reply = self._replies.popleft()
            if isinstance(reply, PoisonMessage):
                self._resolve(reply.poisonMessage, reply)
            else:
                self._resolve(reply, reply)

    def _resolve(self, carrier: object, reply: object) -> None:
        request_id = getattr(carrier, "request_id", None)
        pending = self._pending.pop(request_id, None) if isinstance(request_id, Hashable) else None
        if pending is None:
            LOGGER.debug("dropping %r: no ask is waiting for it (timed out, or never asked)", reply)
            return
        if isinstance(reply, PoisonMessage):
            _ASK_OUTCOMES["failed"].inc()
            pending.future.set_exception(ActorFailed(pending.message, reply.details))
        elif pending.reply_type is not None and not isinstance(reply, pending.reply_type):
            _ASK_OUTCOMES["failed"].inc()
            pending.future.set_exception(
                ActorFailed(pending.message, f"reply was {reply!r}", reason="unexpected reply type")
            )
        else:
            _ASK_OUTCOMES["ok"].inc()
            pending.future.set_result(reply)

    def _expire_deadlines(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _deadline, sequence, request_id = heapq.heappop(self._deadlines)
            pending = self._pending.get(request_id)
            if pending is None or pending.sequence != sequence:
                continue  # answered already
            del self._pending[request_id]
            _ASK_OUTCOMES["timeout"].inc()
            pending.future.set_exception(ActorTimeout(pending.message, pending.timeout))
        if (
            len(self._deadlines) > _MINIMUM_DEADLINES_BEFORE_COMPACTION
            and len(self._deadlines) > _STALE_DEADLINE_FACTOR * len(self._pending)
        ):
            self._deadlines = [
                entry for entry in self._deadlines
                if (pending := self._pending.get(entry[2])) is not None and pending.sequence == entry[1]
            ]
            heapq.heapify(self._deadlines)

    def _drain_external_replies(self, system: Any) -> None:
        # Messages actors send back to a plain `tell` land with the system's external requester; nobody
        # waits for them, but they would pile up forever if not taken out.
        while (stray := system.listen(0)) is not None:
            if isinstance(stray, PoisonMessage):
                LOGGER.warning(
                    "a told message failed in its actor: %r\n%s", stray.poisonMessage, stray.details
                )
            else:
                LOGGER.debug("dropping %r sent back to a fire-and-forget tell", stray)

    def _shut_down(self, system: Any, router: Any, ticker: Any) -> None:
        self._reject_queued_work()
        # Children first is Thespian's job (ActorExitRequest is recursive); user actors go before the ticker,
        # whose timers they may still cancel, and the router goes last so exit-time replies still resolve.
        for address in [*self._top_level.values(), ticker, router]:
            try:
                system.tell(address, ActorExitRequest())
            except Exception:
                LOGGER.exception("could not stop actor %s", address)
            if address is ticker:
                self._resolve_replies()
        for pending in self._pending.values():
            _ASK_OUTCOMES["stopped"].inc()
            pending.future.set_exception(
                RuntimeStopped(f"runtime stopped before a reply to {pending.message!r}")
            )
        self._pending.clear()
        self._deadlines.clear()
        self._replies.clear()
        self._top_level.clear()
        try:
            system.shutdown()
        except Exception:
            LOGGER.exception("the actor system did not shut down cleanly")
        metrics.PUMP_QUEUE_DEPTH.set(0)

    def _reject_queued_work(self) -> None:
        # Only reachable with items in the queue if the pump died; a normal stop item is the last item.
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _AskItem | _CreateItem) and item.future.set_running_or_notify_cancel():
                if isinstance(item, _AskItem):
                    _ASK_OUTCOMES["stopped"].inc()
                item.future.set_exception(RuntimeStopped("the runtime stopped before handling this request"))


def _require_address(address: object) -> None:
    if not isinstance(address, ActorAddress):
        raise TypeError(f"not an actor address: {address!r}")
