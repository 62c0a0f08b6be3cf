"""``workers bench-http``: ``workers serve`` against MLServer's scikit-learn runtime, same model, same machine.

Each server runs alone (one after the other) as its own process and is driven by the same
client: aiohttp's asyncio client (``aiohttp.ClientSession``, one keep-alive connection per
concurrent caller), one-row requests, for ``seconds`` at each concurrency after a warm-up.
The figures are requests per second and the p50/p99 of each request's round trip.

MLServer (``mlserver`` and ``mlserver-sklearn`` from PyPI, in their own virtualenv: they pin
versions the project's environment does not want) serves the same ``model.joblib`` with its
default settings; its model settings only name the runtime, the artifact, the version and
``predict_fn: predict_proba`` (its default output is ``predict``, the class, not the
probability). Its client sends what an MLServer client sends: one ``FP64`` tensor of shape
``[1, n_features]`` holding the model's already-encoded row (categories as their codes).
``workers serve`` gets the raw fields as named tensors and does the encoding itself.
Before timing, one row is scored by both and the scores compared.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from workers.dev import fraud_data
from workers.dev.processes import free_port
from workers.settings import Settings

DEFAULT_MLSERVER = Path.home() / ".cache" / "mlserver-bench" / "venv" / "bin" / "mlserver"
MLSERVER_INSTALL = ("python3.11 -m venv ~/.cache/mlserver-bench/venv && ~/.cache/mlserver-bench/venv/bin/pip install "
                    "mlserver==1.7.1 mlserver-sklearn==1.7.1 scikit-learn==<the model's version>")


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def request_bodies(settings: Settings, count: int) -> tuple[list[bytes], list[bytes]]:
    """One-row request bodies for ``workers serve`` (named fields) and for MLServer (the encoded row)."""
    from workers.pipelines import load_pipeline

    pipeline = load_pipeline(settings)
    events, _ = fraud_data.generate(count, seed=42, start_ms=int(time.time() * 1000))
    features = [f.name for f in pipeline.manifest.features]
    types = {i["name"]: i["datatype"] for i in pipeline_metadata_inputs(pipeline)}
    ours, theirs = [], []
    for event in events:
        tensors = [{"name": name, "shape": [1], "datatype": types[name], "data": [event[name]]} for name in features]
        ours.append(json.dumps({"inputs": tensors}).encode())
        row = pipeline.features.row(event, [])
        theirs.append(json.dumps({"inputs": [
            {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}).encode())
    return ours, theirs


def pipeline_metadata_inputs(pipeline: Any) -> list[dict[str, Any]]:
    from workers.serve.oip import ModelSpec

    return list(ModelSpec(pipeline).metadata()["inputs"])


async def _drive(url: str, bodies: list[bytes], concurrency: int, warmup_s: float, seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    headers = {"Content-Type": "application/json"}
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup_s
    end = start + seconds

    async def caller(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = k
        while True:
            now = loop.time()
            if now >= end:
                return
            t0 = time.perf_counter()
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as response:
                await response.read()
                ok = response.status == 200
            elapsed = time.perf_counter() - t0
            if now >= start:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1
            i += concurrency

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(caller(k, session) for k in range(concurrency)))
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "seconds": seconds,
            "requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None}


def _one_score(url: str, body: bytes) -> float:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    data = answer["outputs"][0]["data"]
    return float(data[1] if len(data) == 2 else data[0])  # predict_proba gives [p0, p1]


def _measure(name: str, url: str, bodies: list[bytes], levels: list[int], warmup_s: float,
             seconds: float) -> list[dict[str, Any]]:
    rows = []
    for concurrency in levels:
        row = asyncio.run(_drive(url, bodies, concurrency, warmup_s, seconds))
        row["server"] = name
        print(f"  {name:<14} {concurrency:>3} clients: {row['requests_per_s']:>9,.0f} req/s  "
              f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  errors {row['errors']}", flush=True)
        rows.append(row)
    return rows


def start_workers_serve(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WORKERS_SCHEMAS_DIR": str(settings.schemas_dir),
           "WORKERS_MODELS_DIR": str(settings.models_dir), "WORKERS_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.cli", "serve", "--pipeline", settings.pipeline,
                                 "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def mlserver_model_dir(settings: Settings, root: Path, http_port: int) -> Path:
    """The model directory MLServer is started on: the same artifact, default settings but the ports."""
    from workers.pipelines import load_manifest

    manifest, _ = load_manifest(settings)
    version_dir = settings.models_dir / settings.pipeline / manifest.version
    model = root / manifest.name
    model.mkdir(parents=True, exist_ok=True)
    shutil.copy(version_dir / manifest.artifact, model / "model.joblib")
    (model / "model-settings.json").write_text(json.dumps({
        "name": manifest.name, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": manifest.version,
                       "extra": {"predict_fn": "predict_proba"}}}, indent=2))
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http_port, "grpc_port": free_port(), "metrics_port": free_port()},
        indent=2))
    return root


def start_mlserver(binary: Path, root: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([str(binary), "start", str(root)], cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def run(settings: Settings, *, levels: list[int], seconds: float, warmup_s: float, mlserver: Path | None,
        out_dir: Path) -> dict[str, Any]:
    import aiohttp

    from workers.pipelines import load_manifest

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest, _ = load_manifest(settings)
    ours, theirs = request_bodies(settings, 2000)
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "model": {"pipeline": settings.pipeline, "version": manifest.version, "sha256": manifest.artifact_sha256},
        "client": f"aiohttp {aiohttp.__version__} ClientSession (asyncio), one keep-alive connection per "
                  "concurrent caller, one-row requests, in one process",
        "seconds_per_level": seconds, "warmup_s": warmup_s, "rows": []}
    try:
        port = free_port()
        process = start_workers_serve(settings, port, out_dir / "workers-serve.log")
        base = f"http://127.0.0.1:{port}/v2/models/{manifest.name}"
        try:
            _wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", process)
            ours_score = _one_score(base + "/infer", ours[0])
            print("workers serve", flush=True)
            result["rows"] += _measure("workers serve", base + "/infer", ours, levels, warmup_s, seconds)
        finally:
            _stop(process)
        if mlserver is None or not mlserver.exists():
            result["mlserver"] = f"not run: no MLServer at {mlserver} (install: {MLSERVER_INSTALL})"
            print(result["mlserver"])
        else:
            port = free_port()
            root = mlserver_model_dir(settings, work / "mlserver", port)
            process = start_mlserver(mlserver, root, out_dir / "mlserver.log")
            base = f"http://127.0.0.1:{port}/v2/models/{manifest.name}"
            try:
                _wait_ready(base + "/ready", process, timeout_s=120)
                version = subprocess.run([str(mlserver), "--version"], capture_output=True, text=True).stdout
                result["mlserver"] = {"version": version.strip(), "model_settings": json.loads(
                    (root / manifest.name / "model-settings.json").read_text())}
                theirs_score = _one_score(base + "/infer", theirs[0])
                result["same_score"] = abs(theirs_score - ours_score) < 1e-9
                print(f"one row: workers serve {ours_score!r}, MLServer {theirs_score!r}", flush=True)
                print("MLServer", flush=True)
                result["rows"] += _measure("mlserver", base + "/infer", theirs, levels, warmup_s, seconds)
            finally:
                _stop(process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out_dir / "bench-http.json").write_text(json.dumps(result, indent=2))
    return result


def table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    by = {(r["server"], r["concurrency"]): r for r in rows}
    levels = sorted({r["concurrency"] for r in rows})
    lines = ["| clients | server | requests/s | p50 ms | p99 ms | errors |", "|---:|---|---:|---:|---:|---:|"]
    for c in levels:
        for server in ("workers serve", "mlserver"):
            r = by.get((server, c))
            if r:
                lines.append(f"| {c} | {'MLServer' if server == 'mlserver' else server} | {r['requests_per_s']:,.0f} "
                             f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
        ours, theirs = by.get(("workers serve", c)), by.get(("mlserver", c))
        if ours and theirs and theirs["requests_per_s"]:
            lines.append(f"| {c} | ratio | {ours['requests_per_s'] / theirs['requests_per_s']:.1f}× | | | |")
    return "\n".join(lines)
