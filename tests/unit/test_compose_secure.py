"""docker-compose.secure.yml is checked without a Docker engine: the broker is scripts/kafka-local
--secure, every client connects as its own principal with the ACLs `workers acl apply` grants."""
import re
import shlex

import pytest
import yaml

from tests.factories import REPO
from workers.cli import build_parser

COMPOSE = yaml.safe_load((REPO / "docker-compose.secure.yml").read_text())
SERVICES = COMPOSE["services"]
CLIENTS = [name for name, s in SERVICES.items() if s.get("build") == "."]
BROKER_DOCKERFILE = (REPO / SERVICES["kafka"]["build"]["dockerfile"]).read_text()
# which principal each client runs as: the settings file it sources
ROLE = {"acls": "admin", "worker": "worker", "producer": "producer", "tail": "consumer"}


def _shell(service: dict) -> str:
    entrypoint = service["entrypoint"]
    assert entrypoint[:2] == ["sh", "-c"]
    return entrypoint[2]


def _broker_command() -> list[str]:
    cmd = re.search(r"^CMD \[(.*?)\]$", BROKER_DOCKERFILE, re.S | re.M).group(1)
    return [part.strip().strip('"') for part in cmd.replace("\\\n", "").split(",")]


def _workers_invocations(service: dict) -> list[list[str]]:
    """The ``workers`` commands of a client's shell line, without the program name."""
    commands = [shlex.split(part) for part in _shell(service).split("&&")]
    commands = [c[1:] if c[0] == "exec" else c for c in commands]
    return [c[1:] for c in commands if c[0] == "workers"]


def test_every_client_is_accounted_for():
    assert set(CLIENTS) == set(ROLE)


def test_broker_runs_the_tested_secure_script_in_the_foreground_named_as_its_host():
    command = _broker_command()
    assert "COPY scripts/kafka-local " in BROKER_DOCKERFILE
    assert {"start", "--secure", "--foreground"} <= set(command)
    assert command[command.index("--advertise-host") + 1] == SERVICES["kafka"]["hostname"]
    data_dir = command[command.index("--data-dir") + 1]
    assert f"secrets:{data_dir}" in SERVICES["kafka"]["volumes"]
    assert "ports" not in SERVICES["kafka"]  # no listener on the host
    health = SERVICES["kafka"]["healthcheck"]["test"]
    assert "status" in health and health[health.index("--data-dir") + 1] == data_dir
    assert health[health.index("--port") + 1] == command[command.index("--port") + 1]


@pytest.mark.parametrize("name", CLIENTS)
def test_each_client_reads_only_its_own_users_settings_read_only(name):
    service = SERVICES[name]
    sourced = re.findall(r"\. (\S+)/clients/(\w+)\.env", _shell(service))
    assert [user for _, user in sourced] == [ROLE[name]]
    data_dir = _broker_command()[_broker_command().index("--data-dir") + 1]
    assert sourced[0][0] == data_dir
    assert f"secrets:{data_dir}:ro" in service["volumes"]
    # the secrets are owner-only files of the broker's user
    assert service["user"] == re.search(r"^USER (\d+)", BROKER_DOCKERFILE, re.M).group(1)


@pytest.mark.parametrize("name", CLIENTS)
def test_client_commands_are_valid_cli_invocations(name):
    invocations = _workers_invocations(SERVICES[name])
    assert invocations
    for argv in invocations:
        assert callable(build_parser().parse_args(argv).func)


def test_the_admin_creates_topics_and_applies_acls_before_any_other_client_starts():
    assert [argv[:2] for argv in _workers_invocations(SERVICES["acls"])] == [["topics", "create"], ["acl", "apply"]]
    for name in set(CLIENTS) - {"acls"}:
        assert SERVICES[name]["depends_on"]["acls"]["condition"] == "service_completed_successfully"


def test_the_consumer_principal_tails_only_predictions():
    # its ACLs (workers/kafka/acls.py) allow READ on the predictions topic, nothing else
    assert _workers_invocations(SERVICES["tail"])[0][:2] == ["tail", "predictions"]
