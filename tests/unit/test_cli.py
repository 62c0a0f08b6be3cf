"""The command line: each command's defaults, and bad input ending as one line with a documented code."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.factories import REPO
from workers.cli import build_parser, main
from workers.errors import EXIT_CONFIG

# command line -> the defaults its help promises
DEFAULTS = {
    "produce": {"count": 10_000, "bad_fraction": 0.0, "old_schema_fraction": 0.0, "rate": None, "seed": 1,
                "source": None},
    "demo": {"count": 20_000, "bad_fraction": 0.03, "old_schema_fraction": 0.05, "rate": None},
    "bench": {"events": 200_000, "quick": False, "out": "bench-results", "partitions": None},
    "drills": {"quick": False, "broker_port": None},
    "tail": {"what": "both", "json": False, "latest": False, "max": None},
    "replay": {"reason": None, "dry_run": False, "limit": None, "rate": None},
    "run": {"model_version": None, "pipeline": None, "bootstrap_servers": None, "topic_prefix": None, "processes": 1,
            "check": False},
    "topics create": {"partitions": None},
    "rollout promote 1.1.0": {"version": "1.1.0", "pipeline": None, "topic_prefix": None},
    "rollout canary 1.1.0": {"version": "1.1.0", "fraction": 0.1},
    "schemas check new.avsc": {"schema": "new.avsc", "against": None},
    "pipeline check": {"pipeline": None, "model_version": None, "reference": None},
    "pipeline new --pipeline p --model m --schema s --reference r": {
        "model_version": "1.0.0", "threshold": 0.5, "features": None, "features_from_reference": False,
        "no_bounds": False, "sign_key": None},
}


@pytest.mark.parametrize("command", DEFAULTS)
def test_each_command_has_the_defaults_its_help_gives(command):
    args = vars(build_parser().parse_args(command.split()))
    assert {k: args[k] for k in DEFAULTS[command]} == DEFAULTS[command]


def test_defaults_do_not_leak_between_commands_whatever_the_order():
    parser = build_parser()
    parser.parse_args(["demo"])  # demo's larger defaults must not become produce's
    assert parser.parse_args(["produce"]).count == 10_000
    assert parser.parse_args(["produce"]).bad_fraction == 0.0


@pytest.mark.parametrize("command", ["run", "produce", "tail", "replay", "topics create", "drills", "bench"])
def test_help_names_the_environment_variables_it_falls_back_to(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command.split(), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for variable in ("$WORKERS_BOOTSTRAP_SERVERS", "$KAFKA_BOOTSTRAP_SERVERS", "$WORKERS_PIPELINE",
                     "$WORKERS_TOPIC_PREFIX", "127.0.0.1:19092"):
        assert variable in text, variable


@pytest.fixture
def bad_manifest(tmp_path):
    """A copy of the reference pipeline whose manifest names a label instead of the positive class value."""
    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "fraud", models / "fraud")
    path = models / "fraud" / "1.0.0" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["positive_class"] = "fraud"
    path.write_text(json.dumps(manifest))
    return models


def _bad_inputs(bad_manifest) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """command -> (arguments, environment, what the error line must say); none needs a broker."""
    return {
        "topics create": (["topics", "create", "--partitions", "0"], {}, "--partitions: must be >= 1"),
        "run (no such pipeline)": (["run", "--pipeline", "nope"], {}, "no model versions under"),
        "run (bad setting)": (["run"], {"WORKERS_BATCH_SIZE": "0"}, "WORKERS_BATCH_SIZE"),
        "run (label as positive class)": (["run"], {"WORKERS_MODELS_DIR": str(bad_manifest)},
                                          "positive_class 'fraud' is not one of the model's classes [0, 1]"),
        "run --check (label as positive class)": (
            ["run", "--check"], {"WORKERS_MODELS_DIR": str(bad_manifest)},
            "positive_class 'fraud' is not one of the model's classes [0, 1]"),
        "run --processes 0": (["run", "--processes", "0"], {}, "--processes: must be >= 1"),
        "run --processes (ports)": (["run", "--processes", "3"], {"WORKERS_METRICS_PORT": "65534"},
                                    "needs ports up to 65536"),
        "produce": (["produce", "--shift", "amount"], {}, "--shift expects FEATURE=FACTOR"),
        "produce (fraction)": (["produce", "--bad-fraction", "2"], {}, "must be between 0 and 1"),
        "produce (no such file)": (["produce", "--from", "/nonexistent.csv"], {}, "/nonexistent.csv: no such file"),
        "tail": (["tail", "--pipeline", "nope"], {}, "no model versions under"),
        "pipeline new": (["pipeline", "new", "--pipeline", "x"], {}, "the following arguments are required: --model"),
        "pipeline check": (["pipeline", "check", "--pipeline", "nope"], {}, "no model versions under"),
        "replay": (["replay", "--since", "yesterday"], {}, "neither ISO 8601"),
        "schemas check": (["schemas", "check", "/nonexistent.avsc"], {}, "cannot parse Avro schema /nonexistent.avsc"),
        "demo": (["demo", "--count", "-5"], {}, "--count: must be >= 0"),
        "drills": (["drills", "--broker-port", "x"], {}, "--broker-port"),
        "bench": (["bench", "--events", "0"], {}, "--events: must be >= 1"),
        "unknown command": (["train"], {}, "invalid choice"),
    }


def test_bad_input_to_every_command_ends_in_one_line_and_exit_2(bad_manifest, monkeypatch, capsys):
    for name, (argv, env, expected) in _bad_inputs(bad_manifest).items():
        with monkeypatch.context() as patched:
            for key, value in env.items():
                patched.setenv(key, value)
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = int(exc.code or 0)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == EXIT_CONFIG, (name, code, err)
        assert len(lines) == 1 and lines[0].startswith("workers: error: "), (name, err)
        assert expected in lines[0], (name, lines[0])


def test_the_installed_command_prints_no_traceback():
    """The same through the real entry point, in a fresh process: one line, no traceback."""
    out = subprocess.run([sys.executable, "-m", "workers.cli", "run", "--pipeline", "../nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == EXIT_CONFIG
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_a_configuration_error_with_processes_is_one_line_and_no_worker_starts(bad_manifest):
    """The supervisor's check runs in a short-lived process; its one line is the only output on stderr."""
    out = subprocess.run([sys.executable, "-m", "workers.cli", "run", "--processes", "2"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "WORKERS_MODELS_DIR": str(bad_manifest)})
    assert out.returncode == EXIT_CONFIG
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("workers: error: "), out.stderr
    assert "positive_class 'fraud' is not one of the model's classes [0, 1]" in out.stderr
    assert "worker process started" not in out.stdout + out.stderr


def test_schemas_check_says_whether_the_deployed_model_reads_a_new_version(tmp_path, capsys):
    v2 = json.loads((REPO / "schemas" / "fraud" / "transaction.v2.avsc").read_text())
    assert main(["schemas", "check", str(REPO / "schemas" / "fraud" / "transaction.v1.avsc")]) == 0
    assert capsys.readouterr().out.count(": yes") == 2  # v1 events read as v2 (default), and back

    amount = next(f for f in v2["fields"] if f["name"] == "amount")
    amount["type"] = "string"  # a type change no reader can resolve
    broken = tmp_path / "transaction.v3.avsc"
    broken.write_text(json.dumps(v2))
    assert main(["schemas", "check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "NO" in out and "double not compatible with writer type: string" in out


def test_a_commands_log_lines_go_to_stderr_not_into_its_output(capsys):
    """Without its own logging set-up, a command's warnings (e.g. tail replacing a stalled client)
    went to stdout, into the records it prints."""
    from workers.ops.logs import get_logger

    assert main(["schemas", "check", str(REPO / "schemas" / "fraud" / "transaction.v1.avsc")]) == 0
    get_logger("workers.consumer").warning("consumer stalled, replacing it")
    out, err = capsys.readouterr()
    assert "consumer stalled" in err and "consumer stalled" not in out
