"""The benchmark's latency consumer reads a prediction's event time without decoding the rest."""
from hypothesis import given, settings

from tests.unit.core.test_prediction_encoder import CODEC, predictions
from workers.dev.bench import contract_event_time


@settings(max_examples=400, deadline=None)
@given(predictions)
def test_the_event_time_is_the_one_fastavro_reads(prediction):
    value = CODEC.encode(prediction)
    assert contract_event_time(value, len(CODEC.header)) == CODEC.decode(value)[0]["event_time"]


def test_the_workers_cpu_by_stage_is_read_from_its_metrics_endpoint():
    import time

    from prometheus_client import CollectorRegistry

    from workers.dev.bench import per_event_by_stage, read_stage_cpu
    from workers.dev.processes import free_port
    from workers.ops.http import HttpState, serve
    from workers.ops.stage_cpu import SCORE, StageCpu

    port = free_port()
    assert read_stage_cpu(port) == {}  # nothing listening: no figures rather than an error
    cpu = StageCpu({"pipeline": "fraud"})

    class Monitor:  # what the endpoint reads: a registry
        metrics = type("Metrics", (), {"registry": CollectorRegistry()})()

        def is_alive(self) -> bool:
            return True

    Monitor.metrics.registry.register(cpu)
    state = HttpState()
    state.monitor = Monitor()  # type: ignore[assignment]
    server = serve(state, port)
    try:
        before = read_stage_cpu(port)
        started = time.thread_time()
        while time.thread_time() < started + 0.05:
            pass
        cpu.add(SCORE, started)
        after = read_stage_cpu(port)
    finally:
        server.shutdown()
    assert set(after) == {"score", "outputs", "account", "other"}
    per_event = per_event_by_stage(before, after, 1000)
    assert 50 <= per_event["score"] < 80  # 0.05 s over 1,000 events: 50 µs each
    assert per_event_by_stage({}, after, 1000) == {}
