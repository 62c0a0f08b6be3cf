"""Pure parts of scripts/schema-registry (no server, no download)."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO
from tests.local_services import load_script

SCHEMA_REGISTRY = REPO / "scripts" / "schema-registry"


def _load_script() -> ModuleType:
    return load_script(SCHEMA_REGISTRY)


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script with its cache under tmp_path and no environment overrides."""
    for name in ("SCHEMA_REGISTRY_PORT", "SCHEMA_REGISTRY_RUN_DIR", "SCHEMA_REGISTRY_VERSION", "SCHEMA_REGISTRY_JAVA",
                 "SCHEMA_REGISTRY_HEAP", "SCHEMA_REGISTRY_JAVA_OPTS", "KAFKA_LOCAL_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCHEMA_REGISTRY_CACHE", str(tmp_path / "cache"))
    return _load_script()


def test_defaults_and_the_url_clients_are_given(script: ModuleType, tmp_path: Path) -> None:
    args = script.parse_args(["start"])
    assert (args.command, args.port, args.run_dir) == ("start", 18081, None)
    assert script.run_dir(18081) == tmp_path / "cache" / "registry" / "18081"
    assert script.run_dir(18081, str(tmp_path / "r")) == tmp_path / "r"
    assert script.client_url(18081) == "http://127.0.0.1:18081/apis/ccompat/v7"
    assert script.REGISTRY_VERSION == "3.0.9"
    assert script.dist_dir() == tmp_path / "cache" / "apicurio-registry-app-3.0.9"


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_PORT", "28081")
    monkeypatch.setenv("SCHEMA_REGISTRY_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("SCHEMA_REGISTRY_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("SCHEMA_REGISTRY_VERSION", "3.3.3")
    script = _load_script()
    args = script.parse_args(["status"])
    assert args.port == 28081 and args.run_dir == str(tmp_path / "run")
    assert script.parse_args(["status", "--port", "5000"]).port == 5000
    assert script.dist_dir() == tmp_path / "c" / "apicurio-registry-app-3.3.3"
    monkeypatch.delenv("SCHEMA_REGISTRY_CACHE")
    monkeypatch.setenv("KAFKA_LOCAL_CACHE", str(tmp_path / "shared"))  # kafka-local's cache by default
    cache_root = _load_script().CACHE_ROOT
    assert cache_root == tmp_path / "shared"


@pytest.mark.parametrize("argv", [["restart"], ["start", "--port", "65535"], ["start", "--port", "0"]])
def test_bad_arguments_are_usage_errors(script: ModuleType, argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        script.parse_args(argv)
    assert exited.value.code == 2
    assert "schema-registry: error:" in capsys.readouterr().err


@pytest.mark.parametrize(("output", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('openjdk version "25" 2025-09-16', 25),
    ('openjdk version "21.0.2" 2024-01-16 LTS', 21),
    ('java version "1.8.0_292"', 8),
    ("Error: could not find libjava.so", None),
])
def test_java_version_is_read_from_java_version_output(script: ModuleType, output: str, major: int | None) -> None:
    assert script.parse_java_version(output) == major


def test_3_0_runs_on_java_17_and_later_versions_need_21(script: ModuleType) -> None:
    assert script.required_java("3.0.9") == 17
    assert script.required_java("2.6.13.Final") == 17
    assert script.required_java("3.1.0") == 21
    assert script.required_java("3.3.3") == 21


def test_the_first_new_enough_java_is_chosen(script: ModuleType) -> None:
    versions = {"/old/java": 11, "/broken/java": None, "/jdk17/java": 17, "/jdk25/java": 25}
    assert script.choose_java(list(versions), 17, versions.get) == ("/jdk17/java", 17)
    assert script.choose_java(list(versions), 21, versions.get) == ("/jdk25/java", 25)


def test_java_too_old_or_missing_is_one_clear_line(script: ModuleType) -> None:
    with pytest.raises(script.RegistryError) as too_old:
        script.choose_java(["/usr/bin/java"], 21, lambda _java: 17)
    message = str(too_old.value)
    assert "needs Java 21 or newer; found Java 17 (/usr/bin/java)" in message
    assert "JAVA_HOME" in message and "\n" not in message
    with pytest.raises(script.RegistryError, match=r"^java not found .*install a JDK 17 or newer"):
        script.choose_java(["/nowhere/java"], 17, lambda _java: None)


def test_an_explicit_java_is_the_only_candidate(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_JAVA", "/opt/jdk/bin/java")
    assert script.java_candidates() == ["/opt/jdk/bin/java"]
    monkeypatch.delenv("SCHEMA_REGISTRY_JAVA")
    monkeypatch.setenv("JAVA_HOME", "/nonexistent-jdk")
    candidates = script.java_candidates()
    assert "/nonexistent-jdk/bin/java" not in candidates  # only executables are listed
    assert len({os.path.realpath(c) for c in candidates}) == len(candidates)  # each JDK once


def test_the_server_listens_on_loopback_with_management_on_the_next_port(script: ModuleType, tmp_path: Path) -> None:
    env = script.server_environment(18081, tmp_path)
    assert env["QUARKUS_HTTP_HOST"] == "127.0.0.1" and env["QUARKUS_HTTP_PORT"] == "18081"
    assert env["QUARKUS_MANAGEMENT_HOST"] == "127.0.0.1" and env["QUARKUS_MANAGEMENT_PORT"] == "18082"
    assert env["APICURIO_STORAGE_SNAPSHOT_LOCATION"] == str(tmp_path)


def test_the_heap_is_capped(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = Path("/cache/apicurio-registry-app-3.0.9/apicurio-registry-app-3.0.9-runner.jar")
    command = script.java_command("/usr/bin/java", jar)
    assert command[0] == "/usr/bin/java" and "-Xmx256m" in command
    assert command[-2:] == ["-jar", str(jar)]
    monkeypatch.setenv("SCHEMA_REGISTRY_HEAP", "384m")
    monkeypatch.setenv("SCHEMA_REGISTRY_JAVA_OPTS", "-Dfoo=bar -XX:+PrintFlagsFinal")
    command = script.java_command("java", jar)
    assert "-Xmx384m" in command and command.index("-Dfoo=bar") < command.index("-jar")


def test_both_distribution_layouts_are_launched(script: ModuleType, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "apicurio-registry-app-3.0.9-runner.jar").touch()
    assert script.launcher(legacy).name == "apicurio-registry-app-3.0.9-runner.jar"
    fast = tmp_path / "fast"  # 3.3's archive: quarkus-app's content at its top
    (fast / "lib" / "boot").mkdir(parents=True)
    (fast / "quarkus-run.jar").touch()
    assert script.launcher(fast) == fast / "quarkus-run.jar"
    nested = tmp_path / "nested" / "quarkus-app"
    nested.mkdir(parents=True)
    (nested / "quarkus-run.jar").touch()
    assert script.launcher(tmp_path / "nested") == nested / "quarkus-run.jar"
    with pytest.raises(script.RegistryError, match=r"neither quarkus-run\.jar nor a \*-runner\.jar"):
        script.launcher(tmp_path)


def _tar(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(name)
            tar.addfile(info, io.BytesIO(name.encode()))
    return path


def test_long_file_names_survive_unpacking(script: ModuleType, tmp_path: Path) -> None:
    """The old dependency plugin cut names at 100 characters; the archive has longer ones."""
    long_name = ("lib/org.eclipse.microprofile.reactive-streams-operators."
                 "microprofile-reactive-streams-operators-api-3.0.1.jar")
    assert len(long_name) > 100
    script.unpack(_tar(tmp_path / "a.tar.gz", [long_name, "app-runner.jar"]), tmp_path / "out")
    assert (tmp_path / "out" / long_name).read_text() == long_name


def test_an_archive_cannot_write_outside_its_directory(script: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(script.RegistryError, match="unsafe entry"):
        script.unpack(_tar(tmp_path / "evil.tar.gz", ["../escaped.txt"]), tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_fetch_without_maven_is_a_clear_error(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script.shutil, "which", lambda _name: None)
    with pytest.raises(script.RegistryError, match=r"^mvn \(Apache Maven\) not found on PATH"):
        script.fetch_registry()


def test_a_fetched_distribution_is_not_fetched_again(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    script.dist_dir().mkdir(parents=True)
    (script.dist_dir() / ".complete").touch()
    monkeypatch.setattr(script.subprocess, "run", lambda *a, **k: pytest.fail("mvn was run"))
    assert script.fetch_registry() == script.dist_dir()


def test_a_taken_port_is_refused_before_anything_is_fetched(script: ModuleType, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script, "choose_java", lambda *_a: ("/usr/bin/java", 17))
    monkeypatch.setattr(script, "fetch_registry", lambda: pytest.fail("fetched although the port is taken"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(script.RegistryError) as taken:
            script.start(port, str(tmp_path / "run"))
    assert str(taken.value).startswith(f"port {port} on 127.0.0.1 is taken by another process")


def test_a_server_that_does_not_come_up_says_why(script: ModuleType) -> None:
    old_java = ["Error: LinkageError occurred while loading main class io.quarkus.runner.GeneratedMain",
                "\tjava.lang.UnsupportedClassVersionError: io/quarkus/runner/GeneratedMain has been compiled "
                "by a more recent version of the Java Runtime (class file version 65.0)"]
    message = script.not_ready_message(old_java, "/usr/bin/java", 17)
    assert message.startswith("Java 17 (/usr/bin/java) is too old for Apicurio Registry")
    assert "\n" not in message
    other = script.not_ready_message(["line one", "boom"], "/usr/bin/java", 17)
    assert other.startswith("the registry did not become ready; last log lines:\n") and other.endswith("boom")


def test_stack_frames_are_left_out_of_the_log_tail(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    log = ("INFO starting\nException in thread \"main\" java.lang.ExceptionInInitializerError\n"
           + "\tat io.quarkus.runner.GeneratedMain.main(Unknown Source)\n" * 40
           + "Caused by: java.lang.OutOfMemoryError: Java heap space\n\t... 12 more\n")
    tail = script.log_tail(log)
    assert tail == ["INFO starting", 'Exception in thread "main" java.lang.ExceptionInInitializerError',
                    "Caused by: java.lang.OutOfMemoryError: Java heap space"]
    monkeypatch.setenv("SCHEMA_REGISTRY_HEAP", "16m")
    assert script.not_ready_message(tail, "java", 17) == (
        "the registry ran out of heap while starting (-Xmx16m): raise SCHEMA_REGISTRY_HEAP")


def test_a_pid_file_naming_another_program_is_stale(script: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "registry.pid").write_text(str(os.getpid()))  # pytest, not the registry
    assert script.read_pid(tmp_path) is None
    (tmp_path / "registry.pid").write_text("not a pid")
    assert script.read_pid(tmp_path) is None


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "SCHEMA_REGISTRY_CACHE": str(tmp_path), "SCHEMA_REGISTRY_JAVA": str(tmp_path / "no-java")}
    run = subprocess.run([sys.executable, str(SCHEMA_REGISTRY), "start", "--port", "18999",
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith("schema-registry: error: java not found") and run.stderr.count("\n") == 1
    logs = subprocess.run([sys.executable, str(SCHEMA_REGISTRY), "logs", "--run-dir", str(tmp_path / "none")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert logs.returncode == 2 and "no log yet at" in logs.stderr
    status = subprocess.run([sys.executable, str(SCHEMA_REGISTRY), "status", "--run-dir", str(tmp_path / "none")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert status.returncode == 3 and "not running" in status.stdout


def test_the_script_passes_ruff_and_mypy() -> None:
    """tests/unit/test_static_checks.py names kafka-local only; this script is checked here."""
    for tool in (["ruff", "check"], ["mypy"]):
        out = subprocess.run([sys.executable, "-m", *tool, str(SCHEMA_REGISTRY)], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
