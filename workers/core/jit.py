"""numba's compiler, imported only by the code paths that compile (it costs ~120 MB of RSS)."""
from __future__ import annotations

from typing import Any


def compiled(fn: Any) -> Any:
    """``fn`` jitted without the GIL, cached on disk where the package directory is writable
    (else compiled once per process)."""
    import numba

    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # no writable cache location
        return numba.njit(nogil=True)(fn)
