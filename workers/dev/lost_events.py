"""Where a drill's lost events are: the questions that tell a harness miss from a worker's loss.

A lost event is one the drill sent and never read back as a prediction or dead letter. It
may be (1) in the outputs after all, missed by the drill's first reading; (2) not in the
input topic at all (the producer's or the broker's loss); (3) in the input below the
worker group's committed offset (committed without an output: an at-least-once bug);
or (4) in the input at or past the committed offset (not processed yet: a worker that
stopped or stalled). Each answer is one line of the drill's problems, with the workers'
exit codes and their last error, so that a failed drill explains itself.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from workers.dev.warm_start import WorkerProcess
from workers.kafka.consumer import committed_offsets, consume
from workers.settings import Settings

REREAD_IDLE_S = 10.0  # a second reading ends after this long without a record


def explain(settings: Settings, lost: set[bytes], workers: list[WorkerProcess], logs: list[Path],
            idle_s: float = REREAD_IDLE_S) -> list[str]:
    """One line per finding about ``lost`` (keys sent and never output)."""
    topics = settings.topics
    findings = []
    reread = {r.key or b"" for r in consume(settings, [topics.predictions, topics.dlq], idle_timeout_s=idle_s)}
    found = lost & reread
    if found:
        findings.append(f"{len(found)} of the {len(lost)} lost were in the outputs on a second reading "
                        "(the drill's first reading missed them)")
    missing = lost - found
    placed: dict[bytes, tuple[int, int]] = {}
    for r in consume(settings, [topics.events], idle_timeout_s=idle_s):
        if r.key in missing:
            placed[r.key] = (r.partition, r.offset)
    if len(placed) < len(missing):
        findings.append(f"{len(missing) - len(placed)} never reached the input topic {topics.events}")
    committed = committed_offsets(settings, settings.group_id, topics.events)
    below = Counter(p for p, o in placed.values() if o < (committed.get(p) or 0))
    above = Counter(p for p, o in placed.values() if o >= (committed.get(p) or 0))
    if below:
        findings.append(f"{sum(below.values())} are below the group's committed offsets (committed without an "
                        f"output) in partitions {_by_partition(below)}; committed: {committed}")
    if above:
        findings.append(f"{sum(above.values())} are at or past the group's committed offsets (never processed) "
                        f"in partitions {_by_partition(above)}; committed: {committed}")
    findings += [worker_state(i, proc, log) for i, (proc, log) in enumerate(zip(workers, logs, strict=True))]
    return findings


def worker_state(index: int, proc: WorkerProcess, log: Path) -> str:
    code = proc.poll()
    state = "running" if code is None else f"exited with code {code}"
    last = last_error(log)
    return f"worker {index} {state}" + (f"; its last error: {last}" if last else "")


def last_error(log: Path) -> str | None:
    """The last error or critical line the worker logged itself (not its Kafka client's)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    raised = None  # the last unindented plain line: a traceback's exception, once its "Traceback" is reached
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            if line.startswith("Traceback") and raised:
                return raised[:300]
            if line.startswith("workers: error"):  # the CLI's one line
                return line.strip()[:300]
            if line.strip() and not line[0].isspace():
                raised = raised or line.strip()
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical") \
                and str(entry.get("logger", "")).startswith("workers"):
            detail = entry.get("error") or entry.get("exc_info") or ""
            return f"{entry.get('event')} {detail}".strip()[:300]
    return None


def _by_partition(counts: Counter[int]) -> str:
    return ", ".join(f"{p} ({n})" for p, n in sorted(counts.items()))
