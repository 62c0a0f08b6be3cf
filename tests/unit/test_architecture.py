"""The package's shape, checked from its imports (ast): no cycles, a pure core, Kafka at the edge.

* ``workers/core`` imports nothing of the package outside itself, except the error types;
* a Kafka client library (faust, mode, aiokafka, kafka-python, confluent-kafka) is imported
  only in the Kafka adapter layer (``workers/kafka``) and in the dev tools (``workers/dev``);
* the file and HTTP adapters (``workers/batch``, ``workers/serve``) import neither Kafka nor the dev tools;
* nothing that a production worker runs imports the dev tools (only the CLI, lazily, for the
  ``demo``/``drills``/``bench`` commands);
* no import cycle anywhere in the package, counting imports inside functions too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import REPO

PACKAGE = REPO / "workers"
KAFKA_CLIENTS = {"faust", "mode", "aiokafka", "kafka", "confluent_kafka"}
KAFKA_LAYERS = ("workers.kafka", "workers.dev")


def _module_name(path: Path) -> str:
    if not path.is_relative_to(REPO):
        return path.stem
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a file, at any depth (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            # "from workers.core import codec" imports the submodule workers.core.codec
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _graph() -> dict[str, list[tuple[str, int]]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, list[tuple[str, int]]] = {}
    for name, path in modules.items():
        edges = []
        for imported, line in _imports(path):
            if imported in modules and imported != name:
                edges.append((imported, line))
        graph[name] = edges
    return graph


def _all_imports() -> list[tuple[str, str, int]]:
    return [(_module_name(p), imported, line) for p in PACKAGE.rglob("*.py") for imported, line in _imports(p)]


def _in(module: str, *layers: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def find_cycle(graph: dict[str, list[tuple[str, int]]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target, _ in graph.get(node, []):
            if _in(node, target) or _in(target, node):
                continue  # a package and its own submodules (``__init__`` re-exports) are not a cycle
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_in_the_package():
    assert find_cycle(_graph()) is None


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"workers.a": [("workers.b", 1)], "workers.b": [("workers.c", 1)], "workers.c": [("workers.a", 3)]}
    assert find_cycle(graph) == ["workers.a", "workers.b", "workers.c", "workers.a"]


def test_the_core_imports_only_itself_and_the_errors():
    outside = [f"{module}:{line} imports {imported}" for module, imported, line in _all_imports()
               if _in(module, "workers.core") and _in(imported, "workers")
               and not _in(imported, "workers.core", "workers.errors")]
    assert outside == []


def test_kafka_clients_are_imported_only_in_the_kafka_layer_and_the_dev_tools():
    misplaced = [f"{module}:{line} imports {imported}" for module, imported, line in _all_imports()
                 if imported.split(".")[0] in KAFKA_CLIENTS and not _in(module, *KAFKA_LAYERS)]
    assert misplaced == []


def test_the_runtime_never_imports_the_dev_tools():
    misplaced = [f"{module}:{line} imports {imported}" for module, imported, line in _all_imports()
                 if _in(imported, "workers.dev") and not _in(module, "workers.dev", "workers.cli")]
    assert misplaced == []


@pytest.mark.parametrize("source", ["import kafka\n", "from aiokafka import AIOKafkaConsumer\n"])
def test_the_kafka_rule_sees_a_planted_import(tmp_path, source):
    planted = tmp_path / "planted.py"
    planted.write_text(source)
    assert {name.split(".")[0] for name, _ in _imports(planted)} & KAFKA_CLIENTS


def test_file_and_http_serving_run_without_kafka():
    """``workers score`` and ``workers serve`` are adapters on the core: no broker, no dev tools."""
    misplaced = [f"{module}:{line} imports {imported}" for module, imported, line in _all_imports()
                 if _in(module, "workers.batch", "workers.serve")
                 and (_in(imported, "workers.kafka", "workers.dev") or imported.split(".")[0] in KAFKA_CLIENTS)]
    assert misplaced == []


# What a producer, a consumer or an operator's command imports: none of these scores, and
# scikit-learn with scipy (and numba) takes seconds to import, paid by every short-lived command.
NOT_SCORING = ["workers.kafka.producer", "workers.kafka.consumer", "workers.tail", "workers.kafka.replay",
               "workers.kafka.admin", "workers.kafka.acls", "workers.kafka.audit", "workers.kafka.rollout_commands",
               "workers.pipelines", "workers.dev.demo"]


def test_commands_that_do_not_score_import_no_model_libraries():
    probe = ("import importlib, sys\n"
             f"for name in {NOT_SCORING!r}:\n"
             "    importlib.import_module(name)\n"
             "print(sorted(m for m in ('sklearn', 'scipy', 'numba', 'joblib') if m in sys.modules))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_the_model_libraries_probe_sees_a_scoring_import():
    probe = "import sys, workers.core.pipeline; print('sklearn' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert loaded.stdout.strip() == "True"
