"""Validation errors (settings, manifests) as one line a user can act on."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def one_line(exc: ValidationError, *, env_prefix: str = "", source: str = "") -> str:
    """Where, what was expected, what was given: ``features[3].kind: Input should be ... (got 'text')``."""
    parts = []
    for error in exc.errors(include_url=False):
        location = _location(error["loc"])
        if env_prefix and location:
            location = env_prefix + location.upper()
        given = error.get("input")
        plain = error["type"] in ("missing", "value_error", "assertion_error") or isinstance(given, dict | list)
        shown = "" if plain else f" (got {given!r})"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}{shown}" if location else f"{message}{shown}")
    return (f"{source}: " if source else "") + "; ".join(parts)


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
