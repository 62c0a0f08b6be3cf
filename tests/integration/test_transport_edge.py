"""Nothing stalls the stream at the transport edge, on the real broker (CI-sized drills and tests)."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.integration.workers_harness import collect, pipeline_settings, worker_env
from workers.core.deadletter import PAYLOAD_TRUNCATED, headers_dict
from workers.dev import drills, fraud_data
from workers.dev.processes import start_worker, stop_worker
from workers.errors import EXIT_RUNTIME
from workers.kafka.admin import alter_topic_config
from workers.kafka.consumer import committed_offsets
from workers.kafka.producer import EventProducer
from workers.pipelines import load_manifest
from workers.settings import Settings

pytestmark = pytest.mark.integration


def test_a_dead_letter_over_the_size_limit_is_written_with_a_reference(broker_settings, tmp_path):
    result = drills.drill_near_limit(broker_settings, tmp_path, count=1000, seconds=2.0, big=2)
    assert result.passed, result.problems
    assert (result.lost, result.duplicated, result.dead_letters) == (0, 0, 4)  # 2 small, 2 over the limit


def test_agent_engine_stops_without_committing_past_an_undeliverable_record(broker_settings, tmp_path):
    """Point 4: a send that fails in the faust agent stops the worker before faust can ack or commit it."""
    drill = drills.Drill(broker_settings, "agentfail", tmp_path, topic_config={"dlq": {"max.message.bytes": "16384"}})
    events = drill.events(600, 12)
    drill.produce(events[:300])
    partition, offset = drill.produce_raw(b"\x00" + bytes(16_184), b"big", "corrupt")
    drill.produce(events[300:])
    worker = drill.start_worker({"WORKERS_ENGINE": "agent"})
    assert worker.wait(120) == EXIT_RUNTIME
    committed = committed_offsets(drill.settings, drill.settings.group_id, drill.topics.events)
    assert (committed.get(partition) or 0) <= offset, committed  # nothing committed past the undelivered record
    # once the topic accepts it, a restarted worker delivers it and goes on: every event accounted for
    alter_topic_config(drill.settings, drill.topics.dlq, {"max.message.bytes": "1048588"})
    drill.start_worker({"WORKERS_ENGINE": "agent"})
    result = drill.account(drills.DrillResult("agent failure"))
    drill.stop_all()
    assert result.lost == 0 and result.passed, result.problems


def test_a_record_the_client_cannot_parse_is_dead_lettered_and_the_rest_predicted(broker_settings, tmp_path):
    result = drills.drill_unparseable(broker_settings, tmp_path, count=1000, seconds=2.0)
    assert result.passed, result.problems
    assert (result.lost, result.duplicated) == (0, 0)
    assert result.reasons == {"corrupt": 1} and result.predictions == 1000


def test_a_missing_output_topic_stops_the_worker_cleanly_and_a_restart_loses_nothing(broker_settings, tmp_path):
    result = drills.drill_unwritable_output(broker_settings, tmp_path, count=1000)
    assert result.passed, result.problems
    assert result.lost == 0, result.row()


def test_sigterm_while_deliveries_are_stuck_is_bounded(broker_settings, local_broker_port, tmp_path):
    result = drills.drill_sigterm_stuck(broker_settings, tmp_path, local_broker_port, count=20_000)
    assert result.passed, result.problems
    assert result.lost == 0, result.row()
    assert result.recovery_s is not None and result.recovery_s < 10  # a 5 s deadline, then the exit


def test_replaying_twice_publishes_each_dead_letter_once(broker_settings, tmp_path):
    result = drills.drill_replay_twice(broker_settings, tmp_path, count=1000, late=100)
    assert result.passed, result.problems
    assert result.lost == 0 and result.duplicated == 0, result.row()


def test_stream_time_scores_an_old_backlog_and_dead_letters_only_the_out_of_order_event(kafka_bootstrap,
                                                                                         unique_name, tmp_path):
    """Point 6: a backlog two hours old, processed now, under stream time: what was on time is scored."""
    models = tmp_path / "models"
    shutil.copytree(Settings().models_dir / "fraud", models / "fraud")
    path = models / "fraud" / "1.0.0" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["policies"]["clock"] = "stream"
    path.write_text(json.dumps(manifest))
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-", models_dir=models)
    loaded, store = load_manifest(settings)
    start = int(time.time() * 1000) - 2 * 3600 * 1000  # older than the 1 h limit by the wall clock
    events, _ = fraud_data.generate(30, seed=13, start_ms=start)
    for i, event in enumerate(events):
        event["account_id"] = "acct-000001"  # one key: one partition, one stream time
        event["event_time"] = start + i * 1000
    events[20]["event_time"] = start - 2 * 3600 * 1000  # two hours older than the events before it
    with EventProducer(settings, loaded, store, settings.topics.events) as producer:
        for event in events:
            producer.send_event(event)
    worker = start_worker(settings, tmp_path / "worker.log", worker_env(settings))
    try:
        out = collect(settings, 30, worker=worker)
    finally:
        stop_worker(worker)
    assert len(out.predictions) == 29 and out.reasons() == {"late": 1}
    late = headers_dict(out.dead_letters[0].headers)
    assert "stream time" in late["dlq.error.message"]
    assert PAYLOAD_TRUNCATED not in late
