"""A batch of ordinary events is checked a column at a time: the same outcome as record by record.

Each pair of pipelines below differs only in ``columnar_codecs``: one checks ordinary batches
by column (``Pipeline._ordinary_batch``), the other record by record. Both must give the same
outputs, byte for byte, the same rows and the same stream times, whatever the batch holds.
"""
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import load_test_pipeline
from workers.core.manifest import Policies
from workers.core.records import InputRecord
from workers.core.replay import replay_headers
from workers.dev import fraud_data as fraud

NOW = int(time.time() * 1000)
EVENTS, _ = fraud.generate(400, seed=11, start_ms=NOW - 60_000, span_ms=50_000)
REPLAY_KEY = "replay-secret"

# what a variation does to an event; "ordinary" ones keep the batch on the column path
VARIATIONS = {
    "none": lambda e: e,
    "imputed": lambda e: {**e, "device_trust_score": None},
    "a bit late": lambda e: {**e, "event_time": e["event_time"] - 1_800_000},
    "late": lambda e: {**e, "event_time": e["event_time"] - 7_200_000},
    "future": lambda e: {**e, "event_time": NOW + 3_600_000},
    "out of range": lambda e: {**e, "amount": -1.0},
    "not a number": lambda e: {**e, "amount": math.nan},
    "unknown category": lambda e: {**e, "channel": "carrier pigeon"},
    "huge int": lambda e: {**e, "account_age_days": 2**60},
    "int at 2**53": lambda e: {**e, "txn_count_1h": 2**53 + 1},
    "event time far away": lambda e: {**e, "event_time": -(2**62)},
}
POLICIES = [
    Policies(clock="wall", max_lateness_s=3600.0, late_action="dead_letter"),
    Policies(clock="stream", max_lateness_s=3600.0, late_action="dead_letter"),
    Policies(clock="stream", max_lateness_s=600.0, late_action="score"),
    Policies(clock="wall", max_lateness_s=None),
]


def _pipelines(policies: Policies, **kwargs):
    pair = load_test_pipeline(**kwargs), load_test_pipeline(columnar_codecs=False, **kwargs)
    for pipeline in pair:
        pipeline.policies = policies
    return pair


def _batch(pipeline, start: int, variations: list[str], partitions: list[int], replayed: list[bool]):
    records = []
    for i, (name, partition, replay) in enumerate(zip(variations, partitions, replayed, strict=True)):
        event = VARIATIONS[name](EVENTS[start + i])
        value = pipeline.input_codec.encode(event)
        headers = replay_headers([], "dlq/0/1", NOW, value, REPLAY_KEY.encode()) if replay else []
        records.append(InputRecord(value, event["account_id"].encode(), "in", partition, start + i, NOW, headers))
    return records


def _outcome(result):
    return ([(o.topic, o.key, o.value, o.headers, o.prediction) for o in result.outputs], result.dead_letters,
            None if result.matrix is None else result.matrix.tobytes(), result.event_times_ms)


batches = st.lists(st.tuples(st.sampled_from(sorted(VARIATIONS)), st.integers(0, 2), st.booleans()),
                   min_size=8, max_size=60)


@settings(max_examples=40, deadline=None)  # each example loads two pipelines (~0.25 s)
@given(st.lists(batches, min_size=1, max_size=3), st.sampled_from(POLICIES), st.sampled_from([(), ("canary",)]),
       st.booleans(), st.floats(0.0, 0.9))
def test_any_batches_give_the_same_outcome_both_ways(stream, policies, flags, replay_key, ordinary_share):
    settings = {"replay_key": REPLAY_KEY} if replay_key else {}
    columnar, plain = _pipelines(policies, **settings)
    start = 0
    for spec in stream:
        # most batches of a live stream are all ordinary: make some of them so
        names = [name if i >= len(spec) * ordinary_share else "none" for i, (name, _, _) in enumerate(spec)]
        records = _batch(columnar, start, names, [p for _, p, _ in spec], [r for _, _, r in spec])
        start += len(spec)
        assert _outcome(columnar.process(records, NOW, flags)) == _outcome(plain.process(records, NOW, flags))
        assert columnar._stream_time == plain._stream_time


def _column_path_only(pipeline, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the batch went record by record")
    monkeypatch.setattr(pipeline, "_check_each", refuse)


@pytest.mark.parametrize("policies", POLICIES, ids=["wall", "stream", "stream-score-late", "no-limit"])
def test_an_ordinary_batch_takes_the_column_path(policies, monkeypatch):
    columnar, plain = _pipelines(policies, replay_key=REPLAY_KEY)
    names = ["none", "imputed", "a bit late"] * 10
    if policies.late_action == "score":
        names[4] = "late"  # scored and flagged late
    records = _batch(columnar, 0, names, [i % 3 for i in range(30)], [i % 7 == 0 for i in range(30)])
    _column_path_only(columnar, monkeypatch)

    mine, theirs = columnar.process(records, NOW), plain.process(records, NOW)

    assert mine.predictions == 30 and not mine.dead_letters
    assert _outcome(mine) == _outcome(theirs)
    flags = [o.prediction["flags"] for o in mine.outputs]
    assert ["imputed"] in flags and ["replayed"] in flags
    if policies.late_action == "score":
        assert ["late", "replayed"] in flags or ["late"] in flags


@pytest.mark.parametrize("variation", ["late", "future", "out of range", "not a number", "unknown category",
                                       "huge int", "event time far away"])
def test_one_unusual_record_sends_the_batch_record_by_record(variation):
    columnar, plain = _pipelines(POLICIES[1])
    names = ["none"] * 20
    names[13] = variation
    records = _batch(columnar, 0, names, [0] * 20, [False] * 20)

    mine, theirs = columnar.process(records, NOW), plain.process(records, NOW)

    assert sum(mine.dead_letters.values()) == 1
    assert _outcome(mine) == _outcome(theirs)
    assert columnar._stream_time == plain._stream_time


def test_stream_time_carries_over_from_the_batch_before(monkeypatch):
    """An event older than what an earlier batch saw on its partition is late, even as the first of its batch."""
    columnar, plain = _pipelines(POLICIES[2])
    first = _batch(columnar, 0, ["none"] * 20, [0] * 20, [False] * 20)
    second = _batch(columnar, 20, ["a bit late"] + ["none"] * 19, [0] * 20, [False] * 20)
    for pipeline in (columnar, plain):
        pipeline.process(first, NOW)
    _column_path_only(columnar, monkeypatch)

    mine, theirs = columnar.process(second, NOW), plain.process(second, NOW)

    assert mine.outputs[0].prediction["flags"] == ["late"]
    assert _outcome(mine) == _outcome(theirs)
    assert columnar._stream_time == plain._stream_time


def test_an_extreme_stream_time_from_an_earlier_batch_sends_the_batch_record_by_record():
    """A stream time the record path stored from an event time near 2**63 must not wrap int64 arithmetic."""
    policies = Policies(clock="stream", max_lateness_s=3600.0, late_action="dead_letter", max_future_s=1e16)
    columnar, plain = _pipelines(policies)
    far = [InputRecord(columnar.input_codec.encode({**EVENTS[0], "event_time": 2**63 - 1}), b"k", "in", 0, 0, NOW, [])]
    batch = [InputRecord(columnar.input_codec.encode({**EVENTS[i], "event_time": -1000}), b"k", "in", 0, i, NOW, [])
             for i in range(1, 9)]
    for pipeline in (columnar, plain):
        pipeline.process(far, NOW)

    mine, theirs = columnar.process(batch, NOW), plain.process(batch, NOW)

    assert mine.dead_letters == {"late": 8}
    assert _outcome(mine) == _outcome(theirs)
    assert columnar._stream_time == plain._stream_time


def test_a_caller_flag_of_imputed_is_not_repeated(monkeypatch):
    columnar, plain = _pipelines(POLICIES[0])
    records = _batch(columnar, 0, ["imputed"] * 10, [0] * 10, [False] * 10)
    _column_path_only(columnar, monkeypatch)

    mine, theirs = columnar.process(records, NOW, ("imputed",)), plain.process(records, NOW, ("imputed",))

    assert {tuple(o.prediction["flags"]) for o in mine.outputs} == {("imputed",)}
    assert _outcome(mine) == _outcome(theirs)
