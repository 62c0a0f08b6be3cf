"""docker-compose.yml is checked without a Docker engine: YAML, names, ports, env, commands."""
import re

import pytest
import yaml

from tests.factories import REPO
from workers.cli import build_parser
from workers.settings import PREFIX, Settings

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WORKER_SERVICES = [name for name, s in SERVICES.items() if "build" in s]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_kafka_is_the_official_image_in_kraft_mode_on_host_9092():
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "9092:9092" in kafka["ports"]
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "EXTERNAL://localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")


def _listener_ports(env: dict[str, str], key: str) -> dict[str, str]:
    return {name: port for name, port in re.findall(r"(\w+)://[\w.\-]*:(\d+)", env[key])}


def test_every_listener_is_mapped_and_advertised_consistently():
    env = _env(SERVICES["kafka"])
    listeners = _listener_ports(env, "KAFKA_LISTENERS")
    advertised = _listener_ports(env, "KAFKA_ADVERTISED_LISTENERS")
    protocol_map = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocol_map)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    for name, port in advertised.items():
        assert listeners[name] == port


@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_worker_services_reach_the_broker_on_an_internal_listener(name):
    env = _env(SERVICES[name])
    host, port = env["WORKERS_BOOTSTRAP_SERVERS"].split(":")
    assert host in SERVICES
    internal = _listener_ports(_env(SERVICES[host]), "KAFKA_ADVERTISED_LISTENERS")
    assert port in internal.values()


@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_worker_service_env_names_are_settings_the_code_reads(name):
    fields = {name.upper() for name in Settings.model_fields}
    for key in _env(SERVICES[name]):
        assert key.startswith(PREFIX) and key[len(PREFIX):] in fields, key
    with pytest.MonkeyPatch.context() as env:  # and their values parse
        for key, value in _env(SERVICES[name]).items():
            env.setenv(key, value)
        Settings.from_env()


@pytest.mark.parametrize("name", WORKER_SERVICES)
def test_worker_service_commands_are_valid_cli_invocations(name):
    args = build_parser().parse_args(SERVICES[name]["command"])
    assert callable(args.func)


def test_dependencies_name_existing_services():
    for name, service in SERVICES.items():
        depends = service.get("depends_on", [])
        for dependency in depends if isinstance(depends, list) else depends.keys():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_prometheus_scrapes_the_workers_metrics_port():
    scrape = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    host, port = targets[0].split(":")
    assert host in SERVICES
    assert _env(SERVICES[host])["WORKERS_METRICS_PORT"] == port
    assert f"{port}:{port}" in SERVICES[host]["ports"]


def test_grafana_dashboard_queries_metrics_the_worker_exports():
    import json

    from tests.factories import load_test_pipeline
    from workers.ops.monitor import WorkerMonitor

    exported = {f.name for f in WorkerMonitor(load_test_pipeline(), "test").metrics.registry.collect()}
    exported |= {n + suffix for n in exported for suffix in ("_total", "_bucket", "_info")}
    dashboard = json.loads((REPO / "monitoring" / "grafana" / "dashboards" / "workers.json").read_text())
    used = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"workers_[a-z_]+", t["expr"])}
    assert used and used <= exported, used - exported
    mounts = " ".join(SERVICES["grafana"]["volumes"])
    assert "monitoring/grafana/dashboards" in mounts and "monitoring/grafana/provisioning" in mounts


def test_the_registry_is_the_one_the_workers_are_told_about_and_schemas_are_registered_first():
    registry = SERVICES["schema-registry"]
    assert registry["image"].startswith("apicurio/apicurio-registry:")
    url = _env(SERVICES["worker"])["WORKERS_SCHEMA_REGISTRY_URL"]
    host, port = re.match(r"http://([\w-]+):(\d+)/apis/ccompat/v7$", url).groups()
    assert host == "schema-registry" and any(p.endswith(f":{port}") for p in registry["ports"])
    assert port in registry["healthcheck"]["test"][1]
    assert _env(SERVICES["worker"])["WORKERS_INPUT_FRAMING"] == "both"
    assert SERVICES["schemas"]["command"][:2] == ["schemas", "register"]
    assert SERVICES["worker"]["depends_on"]["schemas"]["condition"] == "service_completed_successfully"
