"""Log lines a user reads are true: expected client noise is not reported as an error."""
from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from aiokafka import errors as aiokafka_errors

from tests.factories import FakeClock
from workers.ops.logs import REPEAT_WINDOW_S, RepeatedClientLines, logging_config


@pytest.fixture
def captured():
    stream = io.StringIO()
    config = logging_config("INFO", "json")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig(logging_config("WARNING", "json"))


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_coordinator_not_available_while_a_group_forms_is_not_an_error(captured):
    log = logging.getLogger("aiokafka.consumer.group_coordinator")
    log.error("Group Coordinator Request failed: %s", aiokafka_errors.GroupCoordinatorNotAvailableError())
    assert _lines(captured) == []


def test_other_coordinator_errors_still_show(captured):
    log = logging.getLogger("aiokafka.consumer.group_coordinator")
    log.error("Group Coordinator Request failed: %s", aiokafka_errors.GroupAuthorizationFailedError("g"))
    lines = _lines(captured)
    assert len(lines) == 1 and lines[0]["level"] == "error" and "GroupAuthorizationFailed" in lines[0]["event"]


@pytest.fixture
def limited():
    """The handler's own repeat filter, on a clock the test moves."""
    stream, clock = io.StringIO(), FakeClock()
    config = logging_config("INFO", "json")
    config["handlers"]["default"]["stream"] = stream
    config["filters"]["repeated_client_lines"] = {"()": RepeatedClientLines, "clock": clock}
    logging.config.dictConfig(config)
    yield stream, clock
    logging.config.dictConfig(logging_config("WARNING", "json"))


def test_a_client_retrying_against_an_absent_broker_logs_one_line_per_window_with_the_count(limited):
    stream, clock = limited
    log = logging.getLogger("aiokafka.conn")
    for node in range(50):  # one retry every 100 ms for 5 s, the node id varying
        log.error("Unable connect to node with id %s: %s", node % 3, "Connect call failed")
        clock.now += 0.1
    clock.now += REPEAT_WINDOW_S
    log.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    lines = _lines(stream)
    assert [line["event"] for line in lines] == ["Unable connect to node with id 0: Connect call failed",
                                                 "Unable connect to node with id 1: Connect call failed"]
    assert "repeated" not in lines[0]
    assert lines[1]["repeated"] == 49 and lines[1]["repeated_over_s"] == pytest.approx(15.0)


def test_a_different_client_failure_shows_at_once(limited):
    stream, _ = limited
    logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s: %s", 0, "refused")
    logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s: %s", 0, "refused")
    logging.getLogger("aiokafka.conn").warning("Unable connect to node with id %s: %s", 0, "refused")
    logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch messages from %s: %s", 0, "timeout")
    logging.getLogger("kafka.conn").error("Unable connect to node with id %s: %s", 0, "refused")
    lines = _lines(stream)
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("aiokafka.conn", "error"), ("aiokafka.conn", "warning"), ("aiokafka.consumer.fetcher", "error"),
        ("kafka.conn", "error")]


def test_the_projects_own_lines_are_never_held_back(limited):
    stream, _ = limited
    for _ in range(5):
        logging.getLogger("workers.batch_engine").error("batch failed: %s", "x")
    assert len(_lines(stream)) == 5
