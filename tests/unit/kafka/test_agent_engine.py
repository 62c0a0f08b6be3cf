"""The agent engine names the topic a delivery failed for, as the batch engine does."""
from __future__ import annotations

import asyncio

from aiokafka.errors import TopicAuthorizationFailedError
from kafka.errors import KafkaTimeoutError

from workers.core.records import OutputRecord
from workers.errors import DeliveryError
from workers.kafka.agent_engine import _naming_the_topic


def _outputs() -> list[OutputRecord]:
    return [OutputRecord("fraud.predictions", b"k", b"p", []), OutputRecord("fraud.dlq", b"k", b"d", [], "corrupt")]


def test_the_failed_future_names_its_topic_and_the_operation():
    async def failing() -> BaseException:
        loop = asyncio.get_running_loop()
        delivered, refused = loop.create_future(), loop.create_future()
        delivered.set_result(None)
        exc = TopicAuthorizationFailedError()
        refused.set_exception(exc)
        try:
            await asyncio.gather(delivered, refused)  # as _confirm waits: the first failure is raised
        except Exception as raised:
            return _naming_the_topic(raised, _outputs(), [delivered, refused])
        raise AssertionError("gather did not raise")

    error = asyncio.run(failing())
    assert isinstance(error, DeliveryError)
    assert str(error).startswith("cannot WRITE to topic fraud.dlq: not authorized")


def test_a_failure_no_future_holds_is_passed_on_unchanged():
    async def unrelated() -> BaseException:
        loop = asyncio.get_running_loop()
        pending, delivered = loop.create_future(), loop.create_future()
        delivered.set_result(None)
        exc = KafkaTimeoutError("elsewhere")
        error = _naming_the_topic(exc, _outputs(), [pending, delivered])
        pending.cancel()
        return error

    error = asyncio.run(unrelated())
    assert isinstance(error, KafkaTimeoutError) and str(error) == "KafkaTimeoutError: elsewhere"


def test_the_consumer_faust_builds_reads_at_the_configured_isolation_level(monkeypatch):
    """faust reads committed records only under exactly-once; the engine sets the level itself."""
    from types import SimpleNamespace

    from faust.transport.drivers import aiokafka as driver

    from workers.kafka.agent_engine import _read_with_isolation

    built = SimpleNamespace(_isolation_level="read_uncommitted")  # what faust gives outside exactly-once
    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, transport: built)
    app = SimpleNamespace()
    _read_with_isolation(app, "read_committed")
    thread = SimpleNamespace(app=app)
    assert driver.AIOKafkaConsumerThread._create_worker_consumer(thread, None) is built
    assert built._isolation_level == "read_committed"
    _read_with_isolation(app, "read_committed")  # a second engine in the process: wrapped once
    assert not hasattr(driver.AIOKafkaConsumerThread.__dict__["_create_worker_consumer"].__wrapped__, "__wrapped__")
