"""One error hierarchy for the whole project: catch ``WorkersError`` to catch ours."""
from __future__ import annotations


class WorkersError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(WorkersError):
    """Settings, a manifest or a pipeline definition is wrong; fix it and restart."""


class SchemaError(WorkersError):
    """An Avro schema in ``schemas/`` cannot be parsed or resolved."""


class ModelIntegrityError(WorkersError):
    """A model artifact does not match the sha256 its manifest declares: refused before loading."""


class ModelMismatchError(WorkersError):
    """The model, its manifest and the input schema disagree (features, order, types)."""


class RecordError(WorkersError):
    """One input record cannot be scored; carries the dead-letter reason.

    Raised and caught per record on the hot path: it never escapes a batch.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
