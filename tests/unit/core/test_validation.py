"""Table-driven: each row is a record change and the outcome it must get."""
import math

import pytest

from tests.factories import REPO
from workers.core import reasons
from workers.core.features import IMPUTED, FeatureBuilder
from workers.core.manifest import Manifest, Policies
from workers.core.validation import LATE_FLAG, check_event_time, event_time_ms
from workers.errors import RecordError

MANIFEST = Manifest.load(REPO / "models" / "fraud" / "1.0.0" / "manifest.json")
BUILDER = FeatureBuilder(MANIFEST.features)
BASE = {
    "amount": 12.5, "merchant_category": "grocery", "channel": "pos", "card_present": True,
    "foreign_country": False, "account_age_days": 300, "txn_count_1h": 1, "avg_amount_30d": 20.0,
    "distance_from_home_km": 3.0, "device_trust_score": 0.9,
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"distance_from_home_km": None}, reasons.MISSING_FIELD),
        ({"amount": None}, reasons.MISSING_FIELD),
        ({"amount": math.nan}, reasons.INVALID_VALUE),
        ({"amount": math.inf}, reasons.INVALID_VALUE),
        ({"amount": -0.01}, reasons.INVALID_VALUE),
        ({"avg_amount_30d": 2e6}, reasons.INVALID_VALUE),
        ({"device_trust_score": 1.5}, reasons.INVALID_VALUE),
        ({"merchant_category": "casino"}, reasons.INVALID_VALUE),
        ({"channel": ""}, reasons.INVALID_VALUE),
        ({"txn_count_1h": "3"}, reasons.INVALID_VALUE),
        ({"account_age_days": True}, reasons.INVALID_VALUE),
    ],
)
def test_bad_feature_values_get_their_reason(change, reason):
    with pytest.raises(RecordError) as caught:
        BUILDER.row({**BASE, **change}, [])
    assert caught.value.reason == reason


def test_good_record_becomes_a_row_in_manifest_order():
    flags: list[str] = []
    row = BUILDER.row(BASE, flags)
    assert row == [12.5, 0.0, 0.0, 1.0, 0.0, 300.0, 1.0, 20.0, 3.0, 0.9]
    assert flags == []


def test_optional_feature_is_imputed_and_flagged():
    flags: list[str] = []
    row = BUILDER.row({**BASE, "device_trust_score": None}, flags)
    assert row[-1] == 0.5
    assert flags == [IMPUTED]


NOW = 1_800_000_000_000
STRICT = Policies(max_lateness_s=60, late_action="dead_letter", max_future_s=10)
LENIENT = Policies(max_lateness_s=60, late_action="score", max_future_s=10)
UNLIMITED = Policies(max_lateness_s=None, max_future_s=10)


@pytest.mark.parametrize(
    ("policies", "event_ms", "reason", "flags"),
    [
        (STRICT, NOW, None, []),
        (STRICT, NOW - 60_000, None, []),  # exactly at the limit: on time
        (STRICT, NOW - 60_001, reasons.LATE, []),
        (LENIENT, NOW - 3_600_000, None, [LATE_FLAG]),
        (UNLIMITED, 0, None, []),
        (STRICT, NOW + 10_000, None, []),
        (STRICT, NOW + 10_001, reasons.FUTURE_TIMESTAMP, []),
        (LENIENT, NOW + 86_400_000, reasons.FUTURE_TIMESTAMP, []),
    ],
)
def test_event_time_policies(policies, event_ms, reason, flags):
    got: list[str] = []
    if reason is None:
        check_event_time(event_ms, NOW, policies, got)
    else:
        with pytest.raises(RecordError) as caught:
            check_event_time(event_ms, NOW, policies, got)
        assert caught.value.reason == reason
    assert got == flags


def test_event_time_accepts_millis_and_datetimes():
    from datetime import UTC, datetime

    assert event_time_ms(1234) == 1234
    assert event_time_ms(datetime(2026, 1, 1, tzinfo=UTC)) == 1_767_225_600_000
    with pytest.raises(RecordError) as caught:
        event_time_ms(None)
    assert caught.value.reason == reasons.MISSING_FIELD
    with pytest.raises(RecordError) as caught:
        event_time_ms("yesterday")
    assert caught.value.reason == reasons.INVALID_VALUE
