"""``workers serve`` over real HTTP (in-process aiohttp server, aiohttp client): endpoints, errors, metrics."""
import asyncio
import json
import shutil
import subprocess
import sys

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.factories import REPO
from tests.unit.serve.test_oip import KSERVE_BODY, MLSERVER_BODY
from workers.ops.monitor import WorkerMonitor
from workers.serve.app import InferenceServer


def _run(pipeline, scenario, **options):
    async def main():
        server = InferenceServer(pipeline, WorkerMonitor(pipeline, "test"), **options)
        test_server = TestServer(server.app())
        await test_server.start_server()
        try:
            async with aiohttp.ClientSession(str(test_server.make_url(""))) as session:
                return await scenario(session, server)
        finally:
            await test_server.close()

    return asyncio.run(main())


async def _get(session, path, **kw):
    async with session.get(path, **kw) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def _post(session, path, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(path, data=data, headers={"Content-Type": "application/json", **(headers or {})}) as r:
        return r.status, await r.json()


def test_health_metadata_and_inference(fraud_pipeline):
    async def scenario(session, server):
        return {
            "live": await _get(session, "/v2/health/live"),
            "ready": await _get(session, "/v2/health/ready"),
            "server": await _get(session, "/v2"),
            "model_ready": await _get(session, "/v2/models/fraud/ready"),
            "meta": await _get(session, "/v2/models/fraud"),
            "meta_version": await _get(session, "/v2/models/fraud/versions/1.0.0"),
            "infer": await _post(session, "/v2/models/fraud/infer", MLSERVER_BODY),
            "infer_version": await _post(session, "/v2/models/fraud/versions/1.0.0/infer", KSERVE_BODY),
        }

    got = _run(fraud_pipeline, scenario)
    assert got["live"] == (200, {"live": True}) and got["ready"] == (200, {"ready": True})
    assert got["server"][1]["name"] == "workers"
    assert got["model_ready"] == (200, {"name": "fraud", "ready": True})
    assert got["meta"][0] == 200 and got["meta"] == got["meta_version"]
    status, answer = got["infer"]
    assert status == 200 and answer["outputs"][1]["data"] == ["legit", "fraud"]
    assert got["infer_version"][0] == 200 and got["infer_version"][1]["id"] == "kserve-1"


def test_errors_are_4xx_with_reasons(fraud_pipeline):
    bad = json.loads(json.dumps(MLSERVER_BODY))
    bad["inputs"][0]["data"] = [float("nan"), 5.0]

    async def scenario(session, server):
        return {
            "rows": await _post(session, "/v2/models/fraud/infer", bad),
            "body": await _post(session, "/v2/models/fraud/infer", b"{nope"),
            "model": await _post(session, "/v2/models/other/infer", KSERVE_BODY),
            "version": await _post(session, "/v2/models/fraud/versions/9/infer", KSERVE_BODY),
            "meta": await _get(session, "/v2/models/other"),
        }

    got = _run(fraud_pipeline, scenario)
    status, answer = got["rows"]
    assert status == 422 and answer["rejected"] == [
        {"row": 0, "reason": "invalid_value", "message": "feature 'amount' is nan"}]
    assert got["body"][0] == 400 and got["body"][1]["reason"] == "corrupt" and "not JSON" in got["body"][1]["error"]
    assert got["model"][0] == 404 and "serves 'fraud'" in got["model"][1]["error"]
    assert got["version"][0] == 404 and got["meta"][0] == 404


def test_concurrent_requests_are_micro_batched(fraud_pipeline):
    async def scenario(session, server):
        answers = await asyncio.gather(*(_post(session, "/v2/models/fraud/infer", KSERVE_BODY) for _ in range(48)))
        return answers, server.batcher.batches, server.batcher.rows

    answers, batches, rows = _run(fraud_pipeline, scenario, max_delay_s=0.02)
    assert all(status == 200 for status, _ in answers) and rows == 48
    assert batches < 48 / 2  # shared model calls
    scores = {a["outputs"][0]["data"][0] for _, a in answers}
    assert len(scores) == 1  # the same row, the same score, whatever batch it was in


def test_metrics_are_the_workers_plus_requests_by_path(fraud_pipeline):
    async def scenario(session, server):
        await _post(session, "/v2/models/fraud/infer", MLSERVER_BODY)
        bad = {"inputs": [t for t in KSERVE_BODY["inputs"] if t["name"] != "channel"]}
        await _post(session, "/v2/models/fraud/infer", bad)
        return await _get(session, "/metrics")

    status, text = _run(fraud_pipeline, scenario)
    assert status == 200
    assert 'workers_predictions_total{model_version="1.0.0",pipeline="fraud"} 2.0' in text
    assert 'workers_dead_letters_total{pipeline="fraud",reason="missing_field"} 1.0' in text
    assert 'workers_http_requests_total{code="200",path="/v2/models/{name}/infer",pipeline="fraud"} 1.0' in text
    assert 'workers_http_requests_total{code="422",path="/v2/models/{name}/infer",pipeline="fraud"} 1.0' in text
    assert "workers_http_request_duration_seconds_bucket" in text and "workers_batch_size_events_bucket" in text


def test_a_token_guards_the_model_endpoints_not_the_probes(fraud_pipeline):
    async def scenario(session, server):
        auth = {"Authorization": "Bearer s3cret"}
        return (await _post(session, "/v2/models/fraud/infer", KSERVE_BODY),
                await _post(session, "/v2/models/fraud/infer", KSERVE_BODY, headers=auth),
                await _get(session, "/v2/models/fraud"), await _get(session, "/v2/health/ready"))

    no_token, with_token, meta, ready = _run(fraud_pipeline, scenario, token="s3cret")
    assert no_token[0] == 401 and with_token[0] == 200 and meta[0] == 401 and ready[0] == 200


def test_a_tampered_model_is_refused_at_start_up(tmp_path):
    shutil.copytree(REPO / "models" / "fraud", tmp_path / "models" / "fraud")
    artifact = tmp_path / "models" / "fraud" / "1.0.0" / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "workers.cli", "serve", "--port", "0"], cwd=REPO,
                            env={"WORKERS_MODELS_DIR": str(tmp_path / "models"), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "sha256" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["serve", "--help"], ["score", "--help"], ["bench-http", "--help"]])
def test_help_names_the_environment_variables(argv, capsys):
    from workers.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    out = capsys.readouterr().out
    assert "$WORKERS_PIPELINE" in out
