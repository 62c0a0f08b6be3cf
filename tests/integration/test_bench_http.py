"""``workers bench-http --quick``: the comparison runs end to end (MLServer only where it is installed)."""
import json
import os
import subprocess
import sys

import pytest

from tests.factories import REPO

pytestmark = pytest.mark.integration


def test_bench_http_quick_smoke(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "bench-http", "--quick", "--no-mlserver", "--concurrency", "1,8",
         "--out", str(tmp_path)], cwd=REPO, env=os.environ, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "bench-http.json").read_text())
    rows = {r["concurrency"]: r for r in data["rows"] if r["server"] == "workers serve"}
    assert set(rows) == {1, 8} and all(r["requests"] > 0 and r["errors"] == 0 for r in rows.values())
    assert "aiohttp" in data["client"] and "| 8 | workers serve |" in result.stdout
