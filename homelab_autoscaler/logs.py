"""Logging for the whole process, configured once by the `run` command: text for people, JSON for collectors.

Separate from the command so the formats are testable and so nothing else ever touches the root logger: every
module logs through `logging.getLogger(__name__)` and this is the one place that decides where records go and how
they look. The text format is one line per record; the JSON format is one object per line with a fixed set of
keys (`time`, `level`, `logger`, `thread`, `message`, and `exception` when there is one), which log collectors
such as Loki or Elasticsearch ingest without parsing rules.

Third-party loggers that narrate every HTTP request (urllib3, the kubernetes client) are kept at WARNING unless
the level asked for is DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final, TextIO

from homelab_autoscaler.settings import LogFormat, LogLevel

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CHATTY_LOGGERS: Final = ("urllib3", "kubernetes", "grpc", "Thespian")
"""Libraries kept at WARNING unless the level is DEBUG. Thespian logs each registration of a global actor at INFO
("Registered ActorAddr-/A~b as global ..."), which tells an operator's reader nothing."""
_HANDLER_NAME: Final = "homelab-autoscaler"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    """The formatter of a log format. Pure."""
    if log_format is LogFormat.JSON:
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: LogFormat, level: LogLevel, stream: TextIO | None = None) -> None:
    """Send every record at `level` or above to `stream` (stderr) in `log_format`; calling again replaces it."""
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if handler.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level.value)
    quiet = logging.DEBUG if level is LogLevel.DEBUG else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    # urllib3 warns about every retry of a call that cannot connect, in its own nested repr; the call's failure
    # after the retries is reported once, in one line, by the code that made it.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.DEBUG if level is LogLevel.DEBUG else logging.ERROR)
