"""What the power-driver tests share: an executor wired to in-memory Secrets, a metrics registry of its own, a
clock that backoffs advance instead of sleeping, and one-line builders for requests and their outcomes."""

from __future__ import annotations

import base64
import logging
import queue
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry

from actors.power_port import PowerAction, PowerOutcome, PowerRequest
from power_drivers.executor import PowerExecutor
from power_drivers.metrics import PowerMetrics
from power_drivers.secrets import InMemorySecretReader
from schemas.power import PowerSpec

NAMESPACE: Final = "homelab"
ANSWER_TIMEOUT: Final = 60.0
USERNAME: Final = "operator"
PASSWORD: Final = "s3cret-Pa55word"
CREDENTIALS_SECRET: Final = "bmc-credentials"


class SteppingClock:
    """Real time plus whatever the backoffs slept: a retry loop runs at once, deadlines still bind."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        import time

        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.offset += seconds


@dataclass
class Harness:
    secrets: InMemorySecretReader = field(default_factory=InMemorySecretReader)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: SteppingClock = field(default_factory=SteppingClock)
    executor: PowerExecutor | None = None

    def start(self, workers: int = 4, try_timeout_seconds: float = 2.0) -> PowerExecutor:
        self.executor = PowerExecutor(
            tell=lambda reply_to, outcome: reply_to.put(outcome),
            secrets=self.secrets,
            workers=workers,
            metrics=PowerMetrics(self.registry),
            clock=self.clock.now,
            sleep=self.clock.sleep,
            jitter=lambda: 1.0,
            try_timeout_seconds=try_timeout_seconds,
        )
        return self.executor

    def credentials(self, name: str = CREDENTIALS_SECRET, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.secrets.secrets[(NAMESPACE, name)] = {"username": username.encode(), "password": password.encode()}

    def submit(
        self,
        power: dict[str, Any],
        action: PowerAction,
        machine: str = "box-1",
        attempt: int = 1,
        deadline_seconds: float = 0.5,
    ) -> queue.Queue[PowerOutcome]:
        """Submits and returns the queue its outcome arrives on. The default deadline allows no retry (the first
        backoff is a second): a test that wants retries says so."""
        assert self.executor is not None
        answers: queue.Queue[PowerOutcome] = queue.Queue()
        self.executor.submit(
            PowerRequest(
                machine_key=f"{NAMESPACE}/{machine}",
                action=action,
                attempt=attempt,
                power=PowerSpec.model_validate(power),
                deadline_seconds=deadline_seconds,
                reply_to=answers,
            )
        )
        return answers

    def run(self, power: dict[str, Any], action: PowerAction, **options: Any) -> PowerOutcome:
        return answer_of(self.submit(power, action, **options))

    def sample(self, name: str, labels: dict[str, str]) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def answer_of(answers: queue.Queue[PowerOutcome]) -> PowerOutcome:
    return answers.get(timeout=ANSWER_TIMEOUT)


def assert_no_secret(outcome: PowerOutcome, *secrets: str) -> None:
    for secret in (PASSWORD, *secrets):
        assert secret not in outcome.message


def assert_not_logged(records: list[logging.LogRecord], *secrets: str) -> None:
    """No log record, of any library at any level, holds a secret, plainly or base64-encoded (HTTP Basic)."""
    forms = set()
    for secret in (PASSWORD, *secrets):
        forms.add(secret)
        forms.add(base64.b64encode(f"{USERNAME}:{secret}".encode()).decode())
    for record in records:
        text = record.getMessage() + repr(record.args)
        assert not any(form in text for form in forms), f"{record.name} logged a secret"
