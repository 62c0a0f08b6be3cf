"""structlog JSON (or console) logs; the libraries' stdlib logs go through the same renderer.

Log volume is per batch, never per event, and no payload or feature value is logged.
"""
from __future__ import annotations

import logging
import logging.config
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class ExpectedClientNoise(logging.Filter):
    """Lower the level of client log lines that are part of normal operation.

    aiokafka logs ``Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError``
    at error level on every fresh start, while a new consumer group forms, and retries by
    itself: it is expected, not an error. Lowered to INFO, it falls under the aiokafka
    logger's WARNING level and is dropped; any other coordinator error stays an error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("aiokafka") and record.levelno >= logging.ERROR and \
                record.msg == "Group Coordinator Request failed: %s" and isinstance(record.args, tuple) and \
                record.args and type(record.args[0]).__name__ == "GroupCoordinatorNotAvailableError":
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


CLIENT_LOGGERS = ("aiokafka", "kafka")
REPEAT_WINDOW_S = 10.0


class RepeatedClientLines(logging.Filter):
    """At most one line per ``window_s`` for each kind of client line; the next one says how
    many were held back.

    While a broker is away, aiokafka's connect, fetch and coordinator loops each log every
    retry: ~70-90 lines a second from one worker, which floods a log pipeline without saying
    more than the first line did. A kind is the logger, the level and the message template
    (the arguments, e.g. a node id or an error text, may differ), so a different failure
    still shows at once. Held-back lines are counted: the next line of that kind carries
    ``repeated`` (how many were held back) and ``repeated_over_s``. A kind that stops (the
    broker is back) leaves its last count unsaid, as syslog's "last message repeated" does.
    Only the clients' loggers are limited; this project's own lines are per batch already.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._kinds: dict[tuple[str, int, object], tuple[float, int]] = {}  # kind -> (last shown, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CLIENT_LOGGERS):
            return True
        kind = (record.name, record.levelno, record.msg)
        now = self._clock()
        shown = self._kinds.get(kind)
        if shown is not None and now - shown[0] < self._window_s:
            self._kinds[kind] = (shown[0], shown[1] + 1)
            return False
        if shown is not None and shown[1]:
            record.repeated = shown[1]
            record.repeated_over_s = round(now - shown[0], 1)
        if len(self._kinds) > 1000:  # message templates are few; bound the memory all the same
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        return True


def logging_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A dictConfig that renders stdlib records (faust, aiokafka, kafka-python) like ours."""
    renderer = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                "foreign_pre_chain": [*_SHARED, structlog.stdlib.ExtraAdder(("repeated", "repeated_over_s"))],
            }
        },
        "filters": {"expected_client_noise": {"()": ExpectedClientNoise},
                    "repeated_client_lines": {"()": RepeatedClientLines}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "structlog", "stream": sys.stderr,
                        "filters": ["expected_client_noise", "repeated_client_lines"]}
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # Chatty at INFO; their warnings and errors still come through.
            "aiokafka": {"level": "WARNING"},
            "kafka": {"level": "WARNING"},
            "faust": {"level": "WARNING"},
            "mode": {"level": "WARNING"},
        },
    }


def configure(level: str = "INFO", fmt: str = "json") -> None:
    logging.config.dictConfig(logging_config(level, fmt))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def until_configured() -> None:
    """Before a command configures logging (``configure``, from its settings): structlog's
    lines to stderr (its default prints to stdout, among a command's output, e.g. tail's
    records). The libraries' stdlib logging is left as it is. sys.stderr is looked up per
    line, so a replaced stream (tests) is followed."""
    structlog.reset_defaults()
    structlog.configure(logger_factory=lambda *args: structlog.PrintLogger(sys.stderr))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
