"""Schema evolution checks with the ``avro`` package's reader/writer compatibility checker.

Before a new version of an input schema goes live, two questions matter:

* can the deployed model's input schema (the reader) read events written with the new
  version? If not, the worker would dead-letter them as ``unknown_schema``;
* can the new version read events written with the deployed one? Needed once the model
  is switched to the new version while older events are still in the topic or replayed.

The ``avro`` package implements the Avro specification's resolution rules here (fastavro,
used on the hot path, resolves schemas but has no checker that reports why).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.errors import SchemaError


@dataclass(frozen=True)
class Compatibility:
    reader: str
    writer: str
    compatible: bool
    problems: list[str]

    def describe(self) -> str:
        verdict = "yes" if self.compatible else "NO"
        why = "" if self.compatible else ": " + "; ".join(self.problems)
        return f"{self.reader} reads {self.writer}: {verdict}{why}"


def _parse(path: Path) -> Any:
    import avro.errors
    import avro.schema

    try:
        return avro.schema.parse(Path(path).read_text())
    except (OSError, json.JSONDecodeError, avro.errors.AvroException) as exc:
        raise SchemaError(f"cannot parse Avro schema {path}: {exc}") from exc


def check(reader: Path, writer: Path) -> Compatibility:
    """Can data written with ``writer`` be read with ``reader``?"""
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    result = ReaderWriterCompatibilityChecker().get_compatibility(reader=_parse(reader), writer=_parse(writer))
    problems = sorted(result.messages)
    where = sorted(location for location in result.locations if location != "/")
    if problems and where:
        problems.append(f"at {', '.join(where)}")
    return Compatibility(str(reader), str(writer), result.compatibility is SchemaCompatibilityType.compatible,
                         problems)


def check_both_ways(deployed: Path, candidate: Path) -> tuple[Compatibility, Compatibility]:
    """(the deployed schema reads the candidate's events, the candidate reads the deployed one's)."""
    return check(deployed, candidate), check(candidate, deployed)
