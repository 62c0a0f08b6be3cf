"""The live status page in a real headless browser: the numbers it shows match /metrics."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.integration.workers_harness import collect, get, metrics, pipeline_settings, start_observed_worker
from workers.dev.demo import produce_mix
from workers.dev.processes import stop_worker

pytestmark = pytest.mark.integration

SCREENSHOT_DIR = Path(os.environ.get("WORKERS_SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "bench-results"))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return found


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--virtual-time-budget=4000", "--window-size=1100,760"]


class CellReader(HTMLParser):
    """Collects the text of every element with an id, and of table cells keyed by data-key."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.cells: dict[str, str] = {}
        self._stack: list[tuple[str | None, str | None]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._stack.append((a.get("id"), a.get("data-key")))

    def handle_endtag(self, tag):
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        for element_id, key in reversed(self._stack):
            if key is not None:
                self.cells[key] = self.cells.get(key, "") + data
                return
            if element_id is not None:
                self.by_id[element_id] = self.by_id.get(element_id, "") + data
                return


def test_status_page_shows_the_same_numbers_as_the_metrics(kafka_bootstrap, unique_name, tmp_path):
    browser = chromium()
    settings = pipeline_settings(kafka_bootstrap, unique_name("p") + "-")
    sent = produce_mix(settings, 800, bad_fraction=0.1, old_fraction=0.0, seed=5)
    worker, port = start_observed_worker(settings, tmp_path / "worker.log")
    try:
        collect(settings, len(sent), worker=worker)
        time.sleep(0.5)
        m = metrics(port)
        url = f"http://127.0.0.1:{port}/status"
        profile = tmp_path / "profile"
        dom = subprocess.run([browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=60).stdout
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / "status-page.png"
        subprocess.run([browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", url],
                       capture_output=True, timeout=60)
        assert get(port, "/healthz")[0] == 200
    finally:
        stop_worker(worker)

    page = CellReader()
    page.feed(dom)
    assert page.by_id["refreshed"] != "never" and not page.by_id["refreshed"].startswith("failed")
    assert int(page.by_id["predictions"]) == m["workers_predictions_total{model_version=1.0.0}"]
    assert int(page.by_id["consumed"]) == m["workers_events_consumed_total{}"] == len(sent)
    reasons = {k: v for k, v in page.cells.items() if k in {"corrupt", "unknown_schema", "missing_field",
                                                              "invalid_value", "late", "future_timestamp"}}
    expected = {k.split("reason=")[1].rstrip("}"): int(v) for k, v in m.items()
                if k.startswith("workers_dead_letters_total{")}
    assert {k: int(v) for k, v in reasons.items()} == expected and expected
    assert re.fullmatch(r"[0-9.]+", page.cells["amount"])  # drift per feature is shown
    assert "ready" in page.by_id["ready"] and "1.0.0" in page.by_id["model"]
    assert shot.is_file() and shot.stat().st_size > 10_000
