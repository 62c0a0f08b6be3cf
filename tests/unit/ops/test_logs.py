"""Log lines a user reads are true: expected client noise is not reported as an error."""
from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from aiokafka import errors as aiokafka_errors

from workers.ops.logs import logging_config


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
