"""The rollout state on <pipeline>.control: its record, its validation, and the decisions taken from it."""
from __future__ import annotations

import json

import pytest

from workers.core.rollout import RolloutState, promote, rollback, startup_versions, trial, wanted_version
from workers.core.topics import PipelineTopics
from workers.errors import ConfigError


def test_a_state_round_trips_through_its_record():
    state = RolloutState("fraud", primary="1.1.0", previous="1.0.0", candidate="1.2.0", mode="canary",
                         fraction=0.2, guards={"max_score_psi": 0.25}, command="canary 1.2.0", actor="os:me", at_ms=5)
    record = state.to_json()
    assert json.loads(record)["schema"] == "workers.rollout.v1"
    assert RolloutState.from_json(record, "t") == state


@pytest.mark.parametrize(("record", "message"), [
    (b"", "invalid rollout state in t"),
    (b"[]", "not a workers.rollout.v1 record"),
    (json.dumps({"schema": "other", "pipeline": "fraud", "primary": "1"}).encode(), "not a workers.rollout.v1"),
    (json.dumps({"schema": "workers.rollout.v1", "pipeline": "fraud"}).encode(), "primary"),
    (json.dumps({"schema": "workers.rollout.v1", "pipeline": "fraud", "primary": "../x"}).encode(),
     "not a plain name"),
    (json.dumps({"schema": "workers.rollout.v1", "pipeline": "fraud", "primary": "1", "mode": "blue"}).encode(),
     "mode 'blue' is not one of"),
    (json.dumps({"schema": "workers.rollout.v1", "pipeline": "fraud", "primary": "1", "mode": "shadow"}).encode(),
     "needs a candidate"),
    (json.dumps({"schema": "workers.rollout.v1", "pipeline": "fraud", "primary": "1", "candidate": "2",
                 "mode": "canary", "fraction": 2}).encode(), "not between 0 and 1"),
])
def test_an_invalid_record_is_one_line_naming_where_it_came_from(record, message):
    with pytest.raises(ConfigError, match=message) as caught:
        RolloutState.from_json(record, "t")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("invalid rollout state in t")


def test_promote_then_rollback_then_promote_again():
    first = promote(None, "1.1.0", "1.0.0", "os:me", 1, "fraud")
    assert (first.primary, first.previous, first.command) == ("1.1.0", "1.0.0", "promote 1.1.0")
    back = rollback(first, "os:me", 2)
    assert (back.primary, back.previous, back.command) == ("1.0.0", "1.1.0", "rollback to 1.0.0")
    again = promote(back, "1.2.0", "ignored", "os:me", 3, "fraud")
    assert (again.primary, again.previous) == ("1.2.0", "1.0.0")
    same = promote(again, "1.2.0", "ignored", "os:me", 4, "fraud")
    assert (same.primary, same.previous) == ("1.2.0", "1.0.0")  # promoting the primary keeps what to roll back to


def test_rollback_needs_an_earlier_primary():
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        rollback(None, "os:me", 1)
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        rollback(RolloutState("fraud", primary="1.0.0"), "os:me", 1)


def test_a_trial_is_recorded_and_a_promote_or_rollback_clears_it():
    canary = trial(None, "canary", "1.1.0", 0.2, "1.0.0", "os:me", 1, "fraud")
    assert (canary.primary, canary.candidate, canary.mode, canary.fraction) == ("1.0.0", "1.1.0", "canary", 0.2)
    shadow = trial(canary, "shadow", "1.2.0", 0.2, "x", "os:me", 2, "fraud")
    assert (shadow.candidate, shadow.mode, shadow.fraction) == ("1.2.0", "shadow", 0.0)
    promoted = promote(shadow, "1.2.0", "x", "os:me", 3, "fraud")
    assert (promoted.candidate, promoted.mode) == (None, "none")


def test_a_starting_worker_tries_the_primary_then_the_one_before_then_its_own():
    assert startup_versions(None, None) == [None]
    assert startup_versions(None, "1.0.0") == ["1.0.0"]
    state = RolloutState("fraud", primary="2.0.0", previous="1.1.0")
    assert startup_versions(state, None) == ["2.0.0", "1.1.0", None]
    assert startup_versions(state, "1.1.0") == ["2.0.0", "1.1.0"]
    assert startup_versions(RolloutState("fraud", primary="2.0.0"), "1.0.0") == ["2.0.0", "1.0.0"]


def test_a_running_worker_switches_to_a_new_primary_unless_it_refused_it():
    state = RolloutState("fraud", primary="1.1.0")
    assert wanted_version(None, "1.0.0", set()) is None
    assert wanted_version(state, "1.1.0", set()) is None
    assert wanted_version(state, "1.0.0", set()) == "1.1.0"
    assert wanted_version(state, "1.0.0", {"1.1.0"}) is None


def test_the_control_topic_is_in_the_plan_and_compacted():
    topics = PipelineTopics.for_pipeline("fraud", "p-")
    assert topics.control == "p-fraud.control" and topics.control in topics.all()
    assert topics.configs() == {"p-fraud.control": {"cleanup.policy": "compact"}}


def test_two_workers_deciding_differently_cannot_overwrite_each_other():
    from types import SimpleNamespace

    from workers.core import rollout
    from workers.kafka.control import ControlReader

    canary = RolloutState("fraud", primary="1.0.0", candidate="1.1.0", mode="canary", fraction=0.2,
                          command="canary 1.1.0", at_ms=1)
    rolled_back = rollout.decided(canary, "1.1.0", "rollback", "score_psi by w2", "User:worker", 2)
    promoted = rollout.decided(canary, "1.1.0", "promote", "soak by w1", "User:worker", 3)
    assert rolled_back.based_on == promoted.based_on == canary.fingerprint()
    assert rolled_back.follows(canary) and not promoted.follows(rolled_back)
    reader = ControlReader.__new__(ControlReader)  # only the record handling, no consumer
    reader._key = b"fraud"
    records = [SimpleNamespace(key=b"fraud", value=s.to_json(), topic="c", partition=0, offset=i)
               for i, s in enumerate((canary, rolled_back, promoted))]
    latest = reader._last({"tp": records}, None)
    assert latest == rolled_back  # the later, stale decision is ignored by everyone who reads the topic
    command = rollout.promote(latest, "1.1.0", "1.0.0", "User:admin", 4, "fraud")
    assert command.based_on is None and command.follows(latest)  # an operator's command always applies
    again = rollout.trial(latest, "canary", "1.1.0", 0.3, "1.0.0", "User:admin", 5, "fraud")
    assert again.based_on is None and again.follows(latest)  # a command built on a decided state too
