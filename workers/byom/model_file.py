"""A trained model file as the user hands it over: joblib (pickle) or skops.

A joblib file is pickle and runs code when loaded: ``pipeline new`` loads the file the
user names, as training code would; the worker later loads only the bytes whose sha256
the manifest declares. A skops file runs no code and builds only trusted types: the types
it needs beyond skops' defaults must be named (``--trusted-type``), and they are written
into the manifest, so trusting them is a decision someone made, not a default.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.errors import ConfigError

PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle"}


@dataclass(frozen=True)
class ModelFile:
    model: Any
    data: bytes  # the bytes that were loaded: these are copied and hashed
    artifact: str  # its file name in the version directory
    trusted_types: list[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def load_model_file(path: Path, trusted_types: list[str]) -> ModelFile:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the model {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    if suffix == ".skops":
        return ModelFile(_skops(data, path, trusted_types), data, "model.skops", sorted(trusted_types))
    if suffix in PICKLE_SUFFIXES:
        if trusted_types:
            raise ConfigError("--trusted-type applies to .skops models only")
        import joblib

        try:
            model = joblib.load(io.BytesIO(data))
        except Exception as exc:  # whatever unpickling raises
            raise ConfigError(f"cannot load the model {path}: {type(exc).__name__}: {exc}") from None
        return ModelFile(model, data, "model.joblib", [])
    raise ConfigError(f"{path}: a model file is .joblib (also .pkl, .pickle) or .skops, not {suffix or 'no suffix'!r}")


def _skops(data: bytes, path: Path, trusted_types: list[str]) -> Any:
    import skops.io

    try:
        needed = set(skops.io.get_untrusted_types(data=data))
    except Exception as exc:  # not a skops file
        raise ConfigError(f"cannot read the skops model {path}: {exc}") from None
    missing = sorted(needed - set(trusted_types))
    if missing:
        raise ConfigError(f"{path} needs types skops does not trust by default: {missing}; if you trust them, "
                          "name each with --trusted-type (they are written into the manifest's trusted_types)")
    return skops.io.loads(data, trusted=list(trusted_types))
