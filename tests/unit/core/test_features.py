"""The generated fast path of FeatureBuilder.row gives exactly what the checked path gives."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.core.features import FeatureBuilder
from workers.core.manifest import FeatureSpec
from workers.errors import RecordError

SPECS = [
    FeatureSpec(name="amount", kind="numeric", min=0.0, max=1000.0),
    FeatureSpec(name="unbounded", kind="numeric"),
    FeatureSpec(name="score", kind="numeric", min=0, max=1, missing="impute", impute_value=0.5),
    FeatureSpec(name="channel", kind="categorical", categories=["pos", "online", "atm"]),
    FeatureSpec(name="present", kind="boolean"),
]
BUILDER = FeatureBuilder(SPECS)

values = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 2000), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["pos", "online", "atm", "cash", ""]), st.lists(st.integers(), max_size=2),
)


def _outcome(function, record):
    flags: list[str] = []
    try:
        return ("row", function(record, flags), flags)
    except RecordError as exc:
        return ("error", exc.reason, str(exc))


@settings(max_examples=2000, deadline=None)
@given(st.fixed_dictionaries({s.name: values for s in SPECS}), st.sets(st.sampled_from([s.name for s in SPECS])))
def test_fast_and_checked_paths_agree_on_every_record(record, dropped):
    for name in dropped:
        record.pop(name)
    fast, checked = _outcome(BUILDER.row, record), _outcome(BUILDER.checked_row, record)
    assert repr(fast) == repr(checked)  # repr: NaN == NaN, and -0.0 is told from 0.0


def test_the_fast_path_takes_ordinary_records_and_refuses_the_rest():
    ordinary = {"amount": 12, "unbounded": -3.5, "score": 0.25, "channel": "atm", "present": False}
    assert BUILDER.row(ordinary, []) == [12.0, -3.5, 0.25, 2.0, 0.0]
    for spoiled in ({"unbounded": math.inf}, {"unbounded": math.nan}, {"amount": True}, {"channel": ["atm"]}):
        outcome = _outcome(BUILDER.row, {**ordinary, **spoiled})
        assert outcome[:2] == ("error", "invalid_value"), spoiled
    flags: list[str] = []
    assert BUILDER.row({**ordinary, "score": None}, flags)[2] == 0.5 and flags == ["imputed"]
