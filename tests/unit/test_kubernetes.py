"""deploy/kubernetes/ without a cluster: every manifest against its schema, and against the worker.

Kubernetes' kinds are validated (strictly: no unknown field) with the schemas bundled in
``kubernetes-validate``; KEDA's with the CRD schemas vendored in deploy/kubernetes/schemas/
(see its README), made strict the same way. ``problems()`` checks that the manifests agree
with what the worker does: probe paths it serves, on the port it listens on, the topic and
consumer group it uses, no more replicas than partitions, a grace period above its shutdown
timeout. Each check is shown to fail on a planted mistake.
"""
from __future__ import annotations

import copy
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.factories import REPO
from workers.cli import STOP_MARGIN_S
from workers.dev.processes import free_port
from workers.ops.http import HttpState, serve
from workers.settings import Settings

DEPLOY = REPO / "deploy" / "kubernetes"
SCHEMAS = DEPLOY / "schemas"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes these manifests are meant for
KEDA_SCHEMAS = {"ScaledObject": "keda-scaledobject-v1alpha1.json",
                "TriggerAuthentication": "keda-triggerauthentication-v1alpha1.json"}
# The kafka scaler's trigger metadata parameters (KEDA v2.21.0, pkg/scalers/kafka_scaler.go).
KAFKA_TRIGGER_PARAMETERS = {
    "bootstrapServers", "consumerGroup", "topic", "partitionLimitation", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "fullMetadata", "version", "tls", "unsafeSsl",
    "sasl", "saslTokenProvider", "awsRegion"}
SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

Docs = dict[str, dict[str, Any]]  # kind -> the one manifest of that kind


def load() -> Docs:
    docs: Docs = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in docs, f"two {doc['kind']} manifests"
            docs[doc["kind"]] = doc
    return docs


def _strict(schema: Any) -> Any:
    """Unknown fields refused, as the API server's strict field validation does, unless the schema keeps them."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and \
                not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def schema_errors(doc: dict[str, Any]) -> list[str]:
    kind = doc["kind"]
    if kind in KEDA_SCHEMAS:
        schema = _strict(json.loads((SCHEMAS / KEDA_SCHEMAS[kind]).read_text()))
        validator = jsonschema.Draft7Validator(schema)
        errors = [f"{kind} {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        if doc["apiVersion"] != "keda.sh/v1alpha1":
            errors.append(f"{kind}: apiVersion {doc['apiVersion']} is not keda.sh/v1alpha1")
        return errors
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{kind} {'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


def _container(docs: Docs) -> dict[str, Any]:
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def container_env(docs: Docs, tmp_path) -> dict[str, str]:
    """The WORKERS_* environment the container gets: the ConfigMap, then its own env (secrets resolved from
    secret.yaml, the pod name made up); paths into mounted secrets point at copies of the Secret's files."""
    config, secret, container = docs["ConfigMap"], docs["Secret"], _container(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == config["metadata"]["name"]
        env.update(config["data"])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "secretKeyRef" in ref:
            assert ref["secretKeyRef"]["name"] == secret["metadata"]["name"], var["name"]
            env[var["name"]] = secret["stringData"][ref["secretKeyRef"]["key"]]
        elif "fieldRef" in ref:
            env[var["name"]] = "fraud-worker-6d5f-abcde"
        else:
            env[var["name"]] = var["value"]
    volumes = {v["name"]: v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        for item in volume.get("secret", {}).get("items", []):
            mounted = f"{mount['mountPath']}/{item['path']}"
            copy_ = tmp_path / item["path"]
            copy_.write_text(secret["stringData"][item["key"]])
            env = {k: str(copy_) if v == mounted else v for k, v in env.items()}
    return env


def container_settings(docs: Docs, tmp_path, monkeypatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("WORKERS_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    for name, value in container_env(docs, tmp_path).items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


_SERVER: list[int] = []  # the port of one worker HTTP server for the whole module (a daemon thread)


def _served(path: str) -> bool:
    """Does the worker's HTTP server answer this path (any status but 404)?"""
    if not _SERVER:
        port = free_port()
        serve(HttpState(), port)
        _SERVER.append(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{_SERVER[0]}{path}", timeout=5):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code != 404


def problems(docs: Docs, settings: Settings, env: dict[str, str]) -> list[str]:
    found = []
    deployment, container = docs["Deployment"], _container(docs)
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    # probes: paths the worker serves, on the port it listens on, on an address the kubelet reaches
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        if get["path"] != path or not _served(get["path"]):
            found.append(f"{probe} path {get['path']} (the worker serves {path})")
        port = ports.get(get["port"], get["port"])
        if port != settings.metrics_port:
            found.append(f"{probe} port {get['port']} = {port}, the worker listens on {settings.metrics_port}")
    if settings.http_host != "0.0.0.0":
        found.append(f"WORKERS_HTTP_HOST={settings.http_host}: the probes cannot reach it")
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/port") != str(settings.metrics_port):
        found.append(f"prometheus.io/port {annotations.get('prometheus.io/port')} is not the metrics port")
    # stopping: the worker's own bound first, SIGKILL after
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    if grace < settings.shutdown_timeout_s + STOP_MARGIN_S:
        found.append(f"terminationGracePeriodSeconds {grace} <= WORKERS_SHUTDOWN_TIMEOUT_S "
                     f"{settings.shutdown_timeout_s} + {STOP_MARGIN_S} s to leave the group")
    if deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] != 0:
        found.append("maxSurge must be 0: a surge pod beyond the partitions gets none and blocks the rollout")
    if "replicas" in deployment["spec"]:
        found.append("the Deployment sets replicas: each apply would reset what KEDA scaled to")
    for kind in ("Deployment", "PodDisruptionBudget"):
        selector = docs[kind]["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            found.append(f"the {kind}'s selector {selector} does not match the pod's labels {labels}")
    resources = container["resources"]
    for name in ("cpu", "memory"):
        if name not in resources.get("requests", {}) or name not in resources.get("limits", {}):
            found.append(f"{name} request and limit must both be set")
    # scaling: the group and topic the worker uses, 1 to the partition count
    scaled = docs["ScaledObject"]["spec"]
    if scaled["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
        found.append(f"the ScaledObject scales {scaled['scaleTargetRef']['name']}")
    if scaled.get("minReplicaCount") != 1:
        found.append(f"minReplicaCount {scaled.get('minReplicaCount')} (1: someone must read the stream)")
    if not 1 <= scaled["maxReplicaCount"] <= settings.partitions:
        found.append(f"maxReplicaCount {scaled['maxReplicaCount']} above the {settings.partitions} partitions")
    (trigger,) = scaled["triggers"]
    meta = trigger["metadata"]
    expected = {"topic": settings.topics.events, "consumerGroup": settings.group_id,
                "bootstrapServers": settings.bootstrap_servers, "offsetResetPolicy": "earliest",
                "sasl": SASL.get(settings.sasl_mechanism or "", "none"),
                "tls": "enable" if settings.security_protocol.endswith("SSL") else "disable"}
    if trigger["type"] != "kafka":
        found.append(f"trigger type {trigger['type']}")
    for key, value in expected.items():
        if meta.get(key, {"sasl": "none", "tls": "disable"}.get(key)) != value:
            found.append(f"trigger {key} {meta.get(key)!r}, the worker's is {value!r}")
    if int(meta["lagThreshold"]) <= 0:
        found.append("lagThreshold must be positive")
    if unknown := set(meta) - KAFKA_TRIGGER_PARAMETERS:
        found.append(f"unknown kafka trigger parameters {sorted(unknown)}")
    auth = docs["TriggerAuthentication"]
    if trigger["authenticationRef"]["name"] != auth["metadata"]["name"]:
        found.append(f"authenticationRef {trigger['authenticationRef']['name']} names no TriggerAuthentication")
    sources = {"secretTargetRef": docs["Secret"]["stringData"], "configMapTargetRef": docs["ConfigMap"]["data"]}
    for field, data in sources.items():
        for ref in auth["spec"].get(field, []):
            if ref["key"] not in data or ref["name"] not in (docs["Secret"]["metadata"]["name"],
                                                             docs["ConfigMap"]["metadata"]["name"]):
                found.append(f"TriggerAuthentication {field} {ref['name']}/{ref['key']} does not exist")
    resolved = {ref["parameter"]: data.get(ref["key"]) for field, data in sources.items()
                for ref in auth["spec"].get(field, [])}
    if settings.sasl_mechanism and resolved.get("username") != settings.sasl_username:
        found.append(f"KEDA's username {resolved.get('username')!r} is not the worker's {settings.sasl_username!r}")
    if settings.sasl_password and resolved.get("password") != env.get("WORKERS_SASL_PASSWORD"):
        found.append("KEDA's password is not the worker's")
    return found


@pytest.fixture
def docs() -> Docs:
    return load()


def test_the_kustomization_lists_every_manifest():
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def test_every_manifest_is_valid_against_its_schema(docs):
    assert set(docs) == {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "ScaledObject",
                         "TriggerAuthentication"}
    assert [e for doc in docs.values() for e in schema_errors(doc)] == []


SCHEMA_MISTAKES: dict[str, Callable[[Docs], None]] = {
    "misspelt probe field": lambda d: _container(d).update(livenesProbe=_container(d).pop("livenessProbe")),
    "maxUnavailable a list": lambda d: d["PodDisruptionBudget"]["spec"].update(maxUnavailable=[1]),
    "misspelt maxReplicaCount": lambda d: d["ScaledObject"]["spec"].update(
        maxReplicasCount=d["ScaledObject"]["spec"].pop("maxReplicaCount")),
    "no triggers": lambda d: d["ScaledObject"]["spec"].pop("triggers"),
    "trigger metadata not strings": lambda d: d["ScaledObject"]["spec"]["triggers"][0]["metadata"].update(
        lagThreshold=10000),
    "unknown TriggerAuthentication field": lambda d: d["TriggerAuthentication"]["spec"]["secretTargetRef"][0].update(
        secret="x"),
}


@pytest.mark.parametrize("mistake", SCHEMA_MISTAKES)
def test_schema_validation_refuses_a_planted_mistake(docs, mistake):
    planted = copy.deepcopy(docs)
    SCHEMA_MISTAKES[mistake](planted)
    assert [e for doc in planted.values() for e in schema_errors(doc)] != []


def test_the_manifests_agree_with_the_worker(docs, tmp_path, monkeypatch):
    settings = container_settings(docs, tmp_path, monkeypatch)
    assert settings.pipeline == "fraud" and settings.metrics_port == 9100
    assert problems(docs, settings, container_env(docs, tmp_path)) == []


def _meta(d: Docs) -> dict[str, str]:
    return d["ScaledObject"]["spec"]["triggers"][0]["metadata"]


CONSISTENCY_MISTAKES: dict[str, tuple[Callable[[Docs], None], str]] = {
    "probe path": (lambda d: _container(d)["livenessProbe"]["httpGet"].update(path="/health"), "livenessProbe path"),
    "readiness on /healthz": (lambda d: _container(d)["readinessProbe"]["httpGet"].update(path="/healthz"),
                              "readinessProbe path"),
    "probe port": (lambda d: _container(d)["ports"][0].update(containerPort=8080), "port http = 8080"),
    "metrics port": (lambda d: d["ConfigMap"]["data"].update(WORKERS_METRICS_PORT="9200"), "listens on 9200"),
    "loopback only": (lambda d: d["ConfigMap"]["data"].pop("WORKERS_HTTP_HOST"), "WORKERS_HTTP_HOST=127.0.0.1"),
    "short grace period": (lambda d: d["Deployment"]["spec"]["template"]["spec"].update(
        terminationGracePeriodSeconds=30), "terminationGracePeriodSeconds 30"),
    "longer shutdown timeout": (lambda d: d["ConfigMap"]["data"].update(WORKERS_SHUTDOWN_TIMEOUT_S="50"),
                                "WORKERS_SHUTDOWN_TIMEOUT_S 50.0"),
    "more replicas than partitions": (lambda d: d["ScaledObject"]["spec"].update(maxReplicaCount=8),
                                      "maxReplicaCount 8"),
    "fewer partitions": (lambda d: d["ConfigMap"]["data"].update(WORKERS_PARTITIONS="2"), "above the 2 partitions"),
    "min 0": (lambda d: d["ScaledObject"]["spec"].update(minReplicaCount=0), "minReplicaCount 0"),
    "other topic": (lambda d: _meta(d).update(topic="fraud-events"), "trigger topic 'fraud-events'"),
    "other group": (lambda d: _meta(d).update(consumerGroup="fraud"), "trigger consumerGroup 'fraud'"),
    "prefixed worker": (lambda d: d["ConfigMap"]["data"].update(WORKERS_TOPIC_PREFIX="prod-"),
                        "the worker's is 'prod-fraud.events'"),
    "other brokers": (lambda d: _meta(d).update(bootstrapServers="kafka:9092"), "trigger bootstrapServers"),
    "latest": (lambda d: _meta(d).update(offsetResetPolicy="latest"), "trigger offsetResetPolicy"),
    "wrong sasl": (lambda d: _meta(d).update(sasl="plaintext"), "trigger sasl"),
    "no tls": (lambda d: _meta(d).pop("tls"), "trigger tls"),
    "unknown parameter": (lambda d: _meta(d).update(lagTreshold="5"), "unknown kafka trigger parameters"),
    "surge": (lambda d: d["Deployment"]["spec"]["strategy"]["rollingUpdate"].update(maxSurge=1), "maxSurge"),
    "replicas": (lambda d: d["Deployment"]["spec"].update(replicas=2), "sets replicas"),
    "pdb selector": (lambda d: d["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].update(app="x"),
                     "PodDisruptionBudget's selector"),
    "scale target": (lambda d: d["ScaledObject"]["spec"]["scaleTargetRef"].update(name="worker"), "scales worker"),
    "auth key": (lambda d: d["TriggerAuthentication"]["spec"]["secretTargetRef"][0].update(key="password"),
                 "fraud-worker/password does not exist"),
    "other username": (lambda d: d["TriggerAuthentication"]["spec"]["configMapTargetRef"][0].update(
        key="WORKERS_PIPELINE"), "KEDA's username 'fraud'"),
    "no memory limit": (lambda d: _container(d)["resources"]["limits"].pop("memory"), "memory request and limit"),
}


@pytest.mark.parametrize("mistake", CONSISTENCY_MISTAKES)
def test_the_consistency_check_finds_a_planted_mistake(docs, tmp_path, monkeypatch, mistake):
    plant, expected = CONSISTENCY_MISTAKES[mistake]
    planted = copy.deepcopy(docs)
    plant(planted)
    settings = container_settings(planted, tmp_path, monkeypatch)
    found = problems(planted, settings, container_env(planted, tmp_path))
    assert any(expected in p for p in found), found


def test_the_image_is_a_placeholder_the_readme_tells_to_replace(docs):
    image = _container(docs)["image"]
    assert image.startswith("registry.example.com/")
    assert image.split(":")[0] in (REPO / "README.md").read_text()
