"""Imported by the fork server of ``warm_start``: numba's first compile in a process (~0.85 s of
setting up its typing and target registries) is done once there, not in every forked worker."""
from __future__ import annotations

import numpy as np

from workers.core.jit import compiled


def _plus_one(x: np.ndarray) -> np.ndarray:
    return x + 1


compiled(_plus_one)(np.zeros(1, dtype=np.int64))
