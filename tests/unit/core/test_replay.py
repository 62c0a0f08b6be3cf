import pytest

from workers.core.deadletter import FAILED_AT, REASON
from workers.core.replay import REPLAY_COUNT, REPLAY_ORIGIN, ReplaySelection, replay_headers


def letter(reason="late", failed_at=1000):
    return [("trace", b"x"), (REASON, reason.encode()), (FAILED_AT, str(failed_at).encode())]


@pytest.mark.parametrize(
    ("selection", "offset", "headers", "selected"),
    [
        (ReplaySelection(), 5, letter(), True),
        (ReplaySelection(reasons=frozenset({"late"})), 5, letter("late"), True),
        (ReplaySelection(reasons=frozenset({"late"})), 5, letter("corrupt"), False),
        (ReplaySelection(since_ms=1000, until_ms=2000), 5, letter(failed_at=1000), True),
        (ReplaySelection(since_ms=1001), 5, letter(failed_at=1000), False),
        (ReplaySelection(until_ms=999), 5, letter(failed_at=1000), False),
        (ReplaySelection(since_ms=0), 5, [("dlq.reason", b"late")], False),  # no failure time
        (ReplaySelection(from_offset=5, to_offset=5), 5, letter(), True),
        (ReplaySelection(from_offset=6), 5, letter(), False),
        (ReplaySelection(to_offset=4), 5, letter(), False),
    ],
)
def test_selection(selection, offset, headers, selected):
    assert selection.matches(offset, headers) is selected


def test_replay_headers_drop_the_failure_and_count_replays():
    first = replay_headers(letter(), "dlq/1/7", 5)
    assert dict(first) == {"trace": b"x", REPLAY_COUNT: b"1", REPLAY_ORIGIN: b"dlq/1/7", "workers.replay.at": b"5"}
    second = replay_headers(first + letter(), "dlq/0/9", 6)
    assert dict(second)[REPLAY_COUNT] == b"2" and dict(second)[REPLAY_ORIGIN] == b"dlq/0/9"
    assert [k for k, _ in second].count(REPLAY_COUNT) == 1
