"""The worker caps the model's native thread pools (WORKERS_MODEL_THREADS)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# In a fresh interpreter: thread-pool limits are process-wide and would leak into other tests.
PROBE = """
import sys
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads  # what the lean scorer passes to the trees
from threadpoolctl import threadpool_info
from workers.kafka.worker import InferenceWorker
from workers.pipelines import load_pipeline
from workers.settings import Settings

settings = Settings(bootstrap_servers="127.0.0.1:1", model_threads=int(sys.argv[1]))
InferenceWorker(settings, load_pipeline(settings))
print(sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"}))
print(_openmp_effective_n_threads())
"""


@pytest.mark.parametrize("threads", [1, 3])
def test_openmp_pools_follow_model_threads(threads: int) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pools, tree_threads = out.stdout.split()
    assert pools == f"[{threads}]"
    assert int(tree_threads) == min(threads, os.cpu_count() or 1)
