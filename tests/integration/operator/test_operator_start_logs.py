"""What `run` says when it starts: one INFO line for the whole inventory however many machines there are, no
library chatter, and no listener nobody asked for."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from homelab_autoscaler.logs import configure_logging
from homelab_autoscaler.operator import Operator
from homelab_autoscaler.settings import LogFormat, LogLevel, WebhookSettings
from tests.support.operator_homelab import Homelab


def test_a_start_summarises_the_inventory_in_one_info_line(
    homelab: Homelab, caplog: pytest.LogCaptureFixture
) -> None:
    homelab.add_group()
    for index in range(5):
        homelab.add_machine(f"m{index}")
    caplog.set_level(logging.INFO)

    homelab.start_operator()

    infos = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    about_machines = [message for message in infos if "m0" in message or "machines" in message]
    assert len(about_machines) == 1, infos
    assert "(1 group, 5 machines: Shutdown 5); serving Cluster Autoscaler" in about_machines[0]


def test_without_a_webhook_address_no_webhook_listens(homelab: Homelab) -> None:
    given = homelab.settings()
    # Every setting as the homelab gives it but the webhook's address, which is left at its default.
    settings = given.model_copy(update={"webhook": WebhookSettings(cert_dir=given.webhook.cert_dir)})
    operator = Operator(settings)
    operator.start()
    try:
        assert operator.webhook_port is None
    finally:
        operator.stop()


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    for handler in [handler for handler in root.handlers if handler not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name in ("urllib3", "urllib3.connectionpool", "kubernetes", "grpc", "Thespian"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize(
    ("logger", "level", "message"),
    [
        pytest.param("Thespian", logging.INFO,
                     'Registered ActorAddr-/A~b as global "homelab-autoscaler-ticker" Primary Actor',
                     id="thespian-registration"),
        pytest.param("urllib3.connectionpool", logging.WARNING,
                     "Retrying (Retry(total=2, ...)) after connection broken by ...", id="urllib3-retry"),
    ],
)
def test_library_chatter_stays_out_of_an_info_log(
    root_logger: logging.Logger, logger: str, level: int, message: str
) -> None:
    stream = io.StringIO()
    configure_logging(LogFormat.TEXT, LogLevel.INFO, stream)

    logging.getLogger(logger).log(level, message)

    assert stream.getvalue() == ""
