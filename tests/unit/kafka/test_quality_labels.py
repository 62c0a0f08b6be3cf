"""Label files for `workers labels send`: bad input gets one clear error."""
import pytest

from workers.errors import ConfigError
from workers.kafka.quality import read_label_file


def test_a_label_file_is_read_line_by_line_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "labels.jsonl"
    good.write_text('{"event_id": "a", "label": "fraud"}\n\n{"event_id": "b", "value": 2.5}\n')
    assert read_label_file(good) == [{"event_id": "a", "label": "fraud"}, {"event_id": "b", "value": 2.5}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id": "a", "label": "fraud"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not a JSON object"):
        read_label_file(bad)
    with pytest.raises(ConfigError, match="no such file"):
        read_label_file(tmp_path / "missing.jsonl")
