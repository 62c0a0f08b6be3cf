"""The manifest: one pydantic model, one-line errors naming the file and the field, docs generated from it."""
from __future__ import annotations

import json

import pytest

from tests.factories import REPO
from workers.core.manifest import Manifest, Task, json_schema
from workers.errors import ConfigError

REFERENCE = json.loads((REPO / "models" / "fraud" / "1.0.0" / "manifest.json").read_text())


def test_the_reference_manifest_is_typed_throughout():
    manifest = Manifest.from_dict(REFERENCE)
    assert manifest.task is Task.BINARY_CLASSIFICATION and manifest.is_classifier
    assert manifest.positive_class == 1 and manifest.labels == ("legit", "fraud")
    assert manifest.reference_profile is not None and manifest.reference_profile.score is not None
    assert manifest.reference_profile.features["amount"].bin_edges is not None
    assert manifest.features[0].minimum == 0.0 and manifest.features[3].maximum == float("inf")


def _wrong(edit) -> dict:
    manifest = json.loads(json.dumps(REFERENCE))
    edit(manifest)
    return manifest


WRONG = {
    "unknown feature kind": (lambda m: m["features"][3].update(kind="text"),
                             "features[3].kind: Input should be 'numeric', 'boolean' or 'categorical' (got 'text')"),
    "missing key field": (lambda m: m.pop("key_field"), "key_field: Field required"),
    "unknown task": (lambda m: m.update(task="classification"),
                     "task: Input should be 'binary_classification' or 'regression' (got 'classification')"),
    "bad sha256": (lambda m: m.update(artifact_sha256="abc"), "artifact_sha256: String should match pattern"),
    "categorical without categories": (lambda m: m["features"][1].update(categories=[]),
                                       "features[1]: categorical feature 'merchant_category' needs its categories"),
    "impute without a value": (lambda m: m["features"][0].update(missing="impute"),
                               "features[0]: feature 'amount': missing=impute needs an impute_value"),
    "duplicate features": (lambda m: m["features"].append(dict(m["features"][0])),
                           "features: duplicate feature names ['amount']"),
    "threshold out of range": (lambda m: m.update(threshold=1.5),
                               "threshold: Input should be less than or equal to 1 (got 1.5)"),
    "misspelt policy": (lambda m: m["policies"].update(max_latenes_s=10),
                        "policies.max_latenes_s: Extra inputs are not permitted"),
    "min above max": (lambda m: m["features"][0].update(min=10, max=1),
                      "features[0]: feature 'amount': min 10.0 is above max 1.0"),
    "three labels": (lambda m: m.update(labels=["a", "b", "c"]), "labels: Tuple should have at most 2 items"),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_wrong_manifest_is_one_line_naming_the_file_and_the_field(case, tmp_path):
    edit, expected = WRONG[case]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(_wrong(edit)))
    with pytest.raises(ConfigError) as caught:
        Manifest.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message, message


def test_unreadable_manifest_says_so(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"cannot read manifest .*manifest.json"):
        Manifest.load(path)


def test_the_committed_json_schema_is_the_one_the_model_generates():
    committed = json.loads((REPO / "docs" / "manifest.schema.json").read_text())
    assert committed == json_schema(), "regenerate with: python -m workers.core.manifest > docs/manifest.schema.json"


def test_the_manifest_docs_cover_every_field():
    text = (REPO / "docs" / "manifest.md").read_text()
    schema = json_schema()
    fields = set(schema["properties"])
    for definition in ("FeatureSpec", "Policies"):
        fields |= set(schema["$defs"][definition]["properties"])
    missing = sorted(f for f in fields if f"`{f}`" not in text)
    assert missing == []
