"""The API reachability transitions: one WARNING per outage, DEBUG for every further failure, one INFO on return.

A table, because the behaviour is one: each row is a sequence of reports (at monotonic seconds) and what a person
reading the log would see, in order. Times are seconds since 07:10:30 UTC.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from actors import metrics
from kubeapi.kube_client import KubeError, KubePermanent, KubeTransient, QuietConnectionRetries
from kubeapi.reachability import (
    Abandoned,
    ApiReachability,
    Back,
    Failed,
    Lost,
    Notice,
    Phase,
    ReachabilityEvent,
    SettleDue,
    State,
    Succeeded,
    back_line,
    lost_line,
    one_line,
    step,
    unreachable,
)

START = datetime(2026, 12, 6, 7, 10, 30, tzinfo=UTC)
REFUSED = "[Errno 111] Connection refused"
WATCH_GROUPS = "watch groups"
WATCH_JOBS = "watch power-jobs"
WRITE = "write 1"


def run(reports: list[tuple[float, ReachabilityEvent]]) -> tuple[State, list[Notice]]:
    state, told = State(), []
    for at, event in reports:
        state, notices = step(state, event, at, START + timedelta(seconds=at))
        told.extend(notices)
    return state, told


def kinds(notices: list[Notice]) -> list[str]:
    return [type(notice).__name__ for notice in notices]


CASES = [
    # (what happens, reports, notices told, phase after)
    ("successes alone say nothing", [(0, Succeeded(WATCH_GROUPS)), (1, Succeeded("leader election"))], [], Phase.UP),
    ("the first failure is the one warning", [(5, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS))], ["Lost"], Phase.DOWN),
    (
        "every further failure is a debug line",
        [(5, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS)), (5.1, Failed(WATCH_JOBS, REFUSED, WATCH_JOBS)),
         (6, Failed("leader election", REFUSED)), (7, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS))],
        ["Lost", "Retrying", "Retrying", "Retrying"],
        Phase.DOWN,
    ),
    (
        "a success that nothing waited for is the return",
        [(5, Failed("leader election", REFUSED)), (14, Succeeded("leader election"))],
        ["Lost", "Back"],
        Phase.UP,
    ),
    (
        "the return is told once every failed watch relisted",
        [(5, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS)), (5, Failed(WATCH_JOBS, REFUSED, WATCH_JOBS)),
         (14, Succeeded("leader election")), (14.2, Succeeded(WATCH_GROUPS, WATCH_GROUPS, relisted=True))],
        ["Lost", "Retrying"],
        Phase.RETURNING,
    ),
    (
        "a failure while returning is the same outage: no second warning",
        [(5, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS)), (14, Succeeded("leader election")),
         (14.1, Failed(WATCH_GROUPS, "HTTP 503", WATCH_GROUPS)),
         (15, Succeeded(WATCH_GROUPS, WATCH_GROUPS, relisted=True))],
        ["Lost", "Retrying", "Back"],
        Phase.UP,
    ),
    (
        "a write that waited counts as retried once it is applied",
        [(5, Failed("kube writer", REFUSED, WRITE)), (5.5, Failed("kube writer", REFUSED, WRITE)),
         (14, Succeeded("kube writer", WRITE))],
        ["Lost", "Retrying", "Back"],
        Phase.UP,
    ),
    (
        "an abandoned write is not waited for",
        [(5, Failed("kube writer", REFUSED, WRITE)), (6, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS)),
         (14, Succeeded(WATCH_GROUPS, WATCH_GROUPS, relisted=True)), (14.5, Abandoned(WRITE))],
        ["Lost", "Retrying", "Back"],
        Phase.UP,
    ),
    (
        "the settle time tells the return even with a straggler",
        [(5, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS)), (5, Failed(WATCH_JOBS, REFUSED, WATCH_JOBS)),
         (14, Succeeded(WATCH_GROUPS, WATCH_GROUPS, relisted=True)), (24, SettleDue())],
        ["Lost", "Retrying", "Back"],
        Phase.UP,
    ),
    ("a settle that comes late does nothing", [(24, SettleDue())], [], Phase.UP),
    (
        "a second outage is told again",
        [(5, Failed("leader election", REFUSED)), (14, Succeeded("leader election")),
         (40, Failed("leader election", REFUSED)), (41, Succeeded("leader election"))],
        ["Lost", "Back", "Lost", "Back"],
        Phase.UP,
    ),
]


@pytest.mark.parametrize(("reports", "told", "phase"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_transitions(reports: list[tuple[float, ReachabilityEvent]], told: list[str], phase: Phase) -> None:
    state, notices = run(reports)
    assert kinds(notices) == told
    assert state.phase is phase


def test_the_return_says_how_long_which_watches_relisted_and_how_many_writes_waited() -> None:
    _, notices = run([
        (5, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS)), (5.2, Failed(WATCH_JOBS, REFUSED, WATCH_JOBS)),
        (6, Failed("kube writer", REFUSED, WRITE)), (13.9, Succeeded("leader election")),
        (14, Succeeded(WATCH_JOBS, WATCH_JOBS, relisted=True)), (14.1, Succeeded("kube writer", WRITE)),
        (14.2, Succeeded(WATCH_GROUPS, WATCH_GROUPS, relisted=True)),
    ])
    back = notices[-1]
    assert isinstance(back, Back)
    assert back_line("https://10.0.0.1:6443", back) == (
        "API server https://10.0.0.1:6443 back at 07:10:43 UTC after 8.9 s unreachable (since 07:10:35, "
        "3 failed calls); watches relisted: groups, power-jobs; 1 write retried in order; nothing missed"
    )


def test_a_return_with_a_straggler_names_it() -> None:
    _, notices = run([
        (5, Failed(WATCH_GROUPS, REFUSED, WATCH_GROUPS)), (5, Failed(WATCH_JOBS, REFUSED, WATCH_JOBS)),
        (14, Succeeded(WATCH_GROUPS, WATCH_GROUPS, relisted=True)), (24, SettleDue()),
    ])
    back = notices[-1]
    assert isinstance(back, Back)
    assert back_line("https://api", back).endswith(
        "watches relisted: groups; no write retried; still recovering: watch power-jobs"
    )


def test_the_warning_names_what_failed_the_address_and_the_error_in_one_line() -> None:
    [lost] = run([(5, Failed("watch groups", "list /apis/x: [Errno 111] Connection refused", "watch groups"))])[1]
    assert isinstance(lost, Lost)
    assert lost_line("https://10.0.0.1:6443", lost) == (
        "API server https://10.0.0.1:6443 unreachable since 07:10:35 UTC: watch groups: list /apis/x: "
        "[Errno 111] Connection refused"
    )


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (
            "list /api/v1/nodes: MaxRetryError: HTTPSConnectionPool(host='127.0.0.1', port=6443): Max retries "
            "exceeded with url: /api/v1/nodes?limit=500 (Caused by NewConnectionError(\"HTTPSConnection(host="
            "'127.0.0.1', port=6443): Failed to establish a new connection: [Errno 111] Connection refused\"))",
            "list /api/v1/nodes: [Errno 111] Connection refused",
        ),
        ("get lease x: HTTP 503 ServiceUnavailable: not ready", "get lease x: HTTP 503 ServiceUnavailable: not ready"),
        ("x" * 300, "x" * 159 + "…"),
    ],
    ids=["urllib3's story", "an answer", "long"],
)
def test_one_line(message: str, line: str) -> None:
    assert one_line(message) == line


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (KubeTransient("refused"), True),
        (KubeTransient("starting", 503), True),
        (KubeTransient("throttled", 429), False),
        (KubeTransient("broken", 500), False),
        (KubePermanent("forbidden", 403), False),
    ],
    ids=["no answer", "503", "429", "500", "403"],
)
def test_only_a_missing_server_counts(error: KubeError, counts: bool) -> None:
    assert unreachable(error) is counts


def test_the_shell_logs_once_sets_the_gauge_and_counts_the_outage(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    tracker = ApiReachability("https://api", settle_seconds=60, monotonic=lambda: now[0], clock=lambda: START)
    outages = metrics.REGISTRY.get_sample_value("homelab_autoscaler_api_outages_total") or 0.0
    with caplog.at_level(logging.DEBUG, logger="kubeapi.reachability"):
        for source in ("watch groups", "watch machines", "kube writer", "leader election"):
            assert tracker.failed(source, KubeTransient(f"{source}: [Errno 111] Connection refused"), source)
        assert not tracker.failed("kube writer", KubePermanent("refused", 403))
        assert metrics.REGISTRY.get_sample_value("homelab_autoscaler_api_reachable") == 0
        returns = tracker.returns
        now[0] = 108.9
        for source in ("watch groups", "watch machines", "kube writer", "leader election"):
            tracker.succeeded(source, source, relisted=source.startswith("watch"))
    tracker.close()

    levels = [record.levelname for record in caplog.records]
    assert levels == ["WARNING", "DEBUG", "DEBUG", "DEBUG", "INFO"]
    assert caplog.records[-1].getMessage().startswith("API server https://api back at 07:10:30 UTC after 8.9 s")
    assert metrics.REGISTRY.get_sample_value("homelab_autoscaler_api_reachable") == 1
    assert metrics.REGISTRY.get_sample_value("homelab_autoscaler_api_outages_total") == outages + 1
    assert tracker.returns == returns + 1


def test_urllib3_retry_warnings_become_debug() -> None:
    quiet = QuietConnectionRetries()
    pool_logger = logging.getLogger("urllib3.connectionpool")
    retry = logging.LogRecord(
        pool_logger.name, logging.WARNING, "connectionpool.py", 1, "Retrying (%r) after connection broken by '%r': %s",
        ("Retry(total=2)", "NewConnectionError", "/api"), None,
    )
    full = logging.LogRecord(pool_logger.name, logging.WARNING, "connectionpool.py", 1,
                             "Connection pool is full, discarding connection: %s", ("x",), None)
    level = pool_logger.level
    try:
        pool_logger.setLevel(logging.WARNING)
        assert quiet.filter(retry) is False, "dropped below DEBUG"
        assert retry.levelname == "DEBUG"
        assert quiet.filter(full) is True, "other warnings of urllib3 stay"
        assert full.levelname == "WARNING"
        pool_logger.setLevel(logging.DEBUG)
        assert quiet.filter(retry) is True, "kept, as DEBUG, at --log-level DEBUG"
    finally:
        pool_logger.setLevel(level)
