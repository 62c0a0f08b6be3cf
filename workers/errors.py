"""One error hierarchy for the whole project: catch ``WorkersError`` to catch ours.

Every user-facing failure ends as one line, ``workers: error: ...``, and an exit code:
``EXIT_CONFIG`` (2) when the user can fix it by changing settings, files or arguments,
``EXIT_RUNTIME`` (70, EX_SOFTWARE) when the run itself failed (a broker that cannot be
reached, an output that cannot be delivered). A worker that exits with 70 has committed
nothing past what was delivered.
"""
from __future__ import annotations

EXIT_CONFIG = 2
EXIT_RUNTIME = 70


class WorkersError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code = EXIT_RUNTIME


class ConfigError(WorkersError):
    """Settings, a manifest, a command's arguments or a pipeline definition is wrong; fix it and restart."""

    exit_code = EXIT_CONFIG


class SchemaError(ConfigError):
    """An Avro schema in ``schemas/`` cannot be parsed or resolved."""


class ModelIntegrityError(ConfigError):
    """A model artifact does not match the sha256 its manifest declares: refused before loading."""


class ModelMismatchError(ConfigError):
    """The model, its manifest and the input schema disagree (features, order, types, classes)."""


class InputFileError(ConfigError):
    """An input file of ``workers score`` cannot be read: missing, not in its format, or corrupt
    past a point where its rows can no longer be told apart."""


class KafkaUnavailableError(WorkersError):
    """The brokers could not be reached, or refused the client (network, TLS, authentication)."""


class RegistryUnavailableError(WorkersError):
    """The schema registry could not be reached or answered with a server error: transient, the
    worker waits and asks again (never a verdict on a record)."""


class DeliveryError(WorkersError):
    """An output could not be delivered; the worker stops without committing past it."""


class RecordError(WorkersError):
    """One input record cannot be scored; carries the dead-letter reason.

    Raised and caught per record on the hot path: it never escapes a batch.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
