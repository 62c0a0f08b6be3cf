"""`workers demo --rollout` on a real broker: a shadow, a rollback by the guards and a promotion, in one run."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_the_rollout_demo_shows_shadow_rollback_and_promotion(kafka_bootstrap, unique_name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERS_")}
    out = subprocess.run([sys.executable, "-m", "workers.cli", "demo", "--rollout", "--bootstrap-servers",
                          kafka_bootstrap, "--topic-prefix", unique_name("rd") + "-"],
                         capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = out.stdout[out.stdout.index("\nsummary"):]
    assert "shadow 1.1.0: 3000 pairs" in summary
    assert "canary 1.2.0-demo-shifted: rollback by guard score_psi" in summary
    assert "canary 1.1.0: promoted (promote 1.1.0 (automatic: soak" in summary
    assert "after the promotion: 1.1.0: 1000" in summary
    assert "accounted for 10000 / 10000" in summary and "OK: shadow, rollback and promotion shown" in out.stdout
