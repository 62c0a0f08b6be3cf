"""A failed drill explains where its lost events are, on the real broker."""
from __future__ import annotations

import subprocess
import sys

import pytest
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from workers.dev import drills, lost_events
from workers.kafka import clients
from workers.kafka.consumer import consume
from workers.kafka.producer import EventProducer

pytestmark = pytest.mark.integration


def test_each_kind_of_lost_event_is_named(broker_settings, tmp_path):
    drill = drills.Drill(broker_settings, "autopsy", tmp_path, partitions=2)
    events = drill.events(12, 31)
    drill.produce(events)
    placed = {r.key: (r.partition, r.offset) for r in consume(drill.settings, [drill.topics.events], idle_timeout_s=3)}
    keys = [e["account_id"].encode() for e in events]
    in_outputs = keys[0]  # an output the first reading "missed"
    with EventProducer(drill.settings, drill.manifest, drill.store, drill.topics.predictions) as producer:
        producer.send_raw(b"a prediction", in_outputs)
    partition, offset = placed[keys[1]]  # the group commits past this one without an output
    group = clients.consumer(drill.settings, group_id=drill.settings.group_id, enable_auto_commit=False)
    try:
        group.commit({TopicPartition(drill.topics.events, partition): OffsetAndMetadata(offset + 1, "", -1)})
    finally:
        group.close()
    lost = set(keys) | {b"never-sent"}
    committed = {p: None for p in range(2)} | {partition: offset + 1}
    below = [k for k in keys[1:] if placed[k] < (partition, offset + 1) and placed[k][0] == partition]
    above = [k for k in keys[1:] if k not in below]
    above_by_partition = ", ".join(f"{p} ({n})" for p in range(2) if (n := sum(placed[k][0] == p for k in above)))
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(70)"])
    exited.wait()

    findings = lost_events.explain(drill.settings, lost, [exited], [tmp_path / "no.log"], idle_s=3)

    assert findings == [
        f"1 of the {len(lost)} lost were in the outputs on a second reading (the drill's first reading missed them)",
        f"1 never reached the input topic {drill.topics.events}",
        f"{len(below)} are below the group's committed offsets (committed without an output) in partitions "
        f"{partition} ({len(below)}); committed: {committed}",
        f"{len(above)} are at or past the group's committed offsets (never processed) in partitions "
        f"{above_by_partition}; committed: {committed}",
        "worker 0 exited with code 70",
    ]
