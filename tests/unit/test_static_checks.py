"""Lint and type checks run with the tests, so CI and `scripts/test` enforce them."""
from __future__ import annotations

import subprocess
import sys

from tests.factories import REPO

# Python sources under scripts/ without a .py suffix (ruff picks them only when named)
SCRIPTS = [REPO / "scripts" / "kafka-local", REPO / "scripts" / "schema-registry"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing() -> None:
    out = _run("ruff", "check", "workers", "tests", "scripts", *map(str, SCRIPTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing_in_the_package() -> None:
    out = _run("mypy", "workers")
    assert out.returncode == 0, out.stdout + out.stderr
