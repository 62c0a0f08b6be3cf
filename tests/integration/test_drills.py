"""Nothing lost: fault drills on real worker processes and the real broker (CI-sized)."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import CPU_HEAVY
from workers.dev import drills
from workers.kafka.consumer import end_offsets_total

pytestmark = pytest.mark.integration


@CPU_HEAVY
def test_kill_9_repeatedly_loses_nothing(broker_settings, tmp_path):
    result = drills.drill_kill9(broker_settings, tmp_path, count=5000, kills=2, seconds=20)
    assert result.sent == 5000
    assert result.lost == 0 and not result.problems, result.row()
    # Duplicates are allowed after kill -9, bounded by what a worker holds uncommitted:
    # (max_batches_in_flight + 1) batches of batch_size per kill.
    assert result.duplicated <= 2 * 5 * 500


def test_rebalance_with_a_worker_joining_and_one_leaving(broker_settings, tmp_path):
    result = drills.drill_rebalance(broker_settings, tmp_path, count=5000, seconds=15)
    assert (result.sent, result.lost, result.duplicated) == (5000, 0, 0)


def test_broker_restart_mid_stream(broker_settings, local_broker_port, tmp_path):
    """Away for 30 s, then the restart: outputs waiting for a leader are past the producer's 40 s
    request timeout, given back and re-sent from a new producer id (before that, the broker refused
    the re-send as out of sequence and the worker stopped with exit 70)."""
    restart = drills.local_broker_restart(local_broker_port, away_s=30)
    result = drills.drill_broker_restart(broker_settings, tmp_path, restart, count=3000, seconds=15)
    assert result.sent == 3000 and result.lost == 0, result.row()
    assert result.recovery_s is not None and result.recovery_s < 120


def test_corrupt_flood_does_not_stall_the_good_ones(broker_settings, tmp_path):
    result = drills.drill_corrupt_flood(broker_settings, tmp_path, corrupt=5000, good=500)
    assert result.lost == 0 and result.duplicated == 0, result.row()
    assert result.dead_letters == 5000 and result.predictions == 500
    assert result.reasons == {"corrupt": 4000, "unknown_schema": 1000}
    assert result.passed, result.problems  # the worker stayed alive


def test_raising_and_slow_model_dead_letters_only_the_poisoned_rows(broker_settings, tmp_path):
    result = drills.drill_faulty_model(broker_settings, tmp_path, count=5000, poison_every=250, delay_s=0.02)
    assert result.lost == 0 and result.duplicated == 0, result.row()
    assert result.reasons == {"inference_error": result.dead_letters}
    assert result.passed, result.problems  # dead letters = exactly the poisoned rows
    # a backlog is not buffered whole: ~440 MB here, ~120 MB of it numba (the columnar decode; README, Resources)
    assert result.peak_rss_mb is not None and 0 < result.peak_rss_mb < 512


def test_sigterm_and_restart_make_no_duplicates(broker_settings, tmp_path):
    result = drills.drill_sigterm(broker_settings, tmp_path, count=5000, seconds=15, stops=2)
    assert (result.sent, result.lost, result.duplicated) == (5000, 0, 0)
    assert result.passed, result.problems  # every worker exited 0 on SIGTERM


def test_a_gated_stream_pauses_and_resumes_at_its_rate(broker_settings, tmp_path):
    drill = drills.Drill(broker_settings, "gate", tmp_path)
    topic = [drill.topics.events]
    gate = threading.Event()
    drill.produce(drill.events(60, 7), rate=100, background=True, gate=gate)
    time.sleep(0.5)
    assert end_offsets_total(drill.settings, topic) == 0  # nothing while the gate is clear
    gate.set()
    time.sleep(0.2)
    gate.clear()
    time.sleep(1.0)  # what was sent before the pause has landed
    paused_at = end_offsets_total(drill.settings, topic)
    assert 0 < paused_at < 60  # paused mid-stream: ~20 events at 100/s, not the whole stream
    time.sleep(1.0)
    assert end_offsets_total(drill.settings, topic) == paused_at
    gate.set()
    started = time.monotonic()
    drill.wait_produced(timeout=30)
    assert end_offsets_total(drill.settings, topic) == 60
    # at its rate after the pause, not a burst to catch up: the rest took about (60 - paused_at) / 100 s
    assert time.monotonic() - started >= 0.8 * (60 - paused_at - 1) / 100


def test_the_drills_topics_are_deleted_afterwards(broker_settings, tmp_path):
    from workers.kafka.clients import admin_client

    made = [drills.Drill(broker_settings, name, tmp_path).settings.topic_prefix for name in ("first", "second")]
    drills.delete_drill_topics(broker_settings)
    with admin_client(broker_settings) as admin:
        left = [t for t in admin.list_topics() if t.startswith(tuple(made))]
    assert left == [] and drills.PREFIXES == []
