"""The rules the code base keeps, checked on its source: the engine never imports Airflow, no module imports
another that imports it back (at the top or inside a function), imports sit at the top unless they are heavy,
and no function grows past about sixty lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"
# Imported inside the functions that need them: each costs seconds or hundreds of MB, and the Airflow side
# (DAG parsing, the API server's plugins) imports tasks/ without needing them.
HEAVY = {"torch", "transformers", "ctranslate2", "peft", "matplotlib", "pyarrow", "boto3", "botocore", "datasets"}
MAX_FUNCTION_LINES = 60


def _modules(root: Path) -> dict[str, ast.Module]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return found


MODULES = _modules(TASKS)


def _imported(module: str, tree: ast.Module) -> set[str]:
    """Every module `tree` imports, anywhere in it: `from tasks.x import y` counts as tasks.x.y when that is a
    module, else as tasks.x."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in MODULES else node.module)
    return names


def test_the_engine_never_imports_airflow():
    offenders = {module: sorted(n for n in _imported(module, tree) if n.split(".")[0] == "airflow")
                 for module, tree in MODULES.items()}
    assert {m: names for m, names in offenders.items() if names} == {}


def test_no_module_imports_another_that_imports_it_back():
    graph = {module: {n for n in _imported(module, tree) if n in MODULES and n != module}
             for module, tree in MODULES.items()}
    cycles = []

    def visit(module: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for target in sorted(graph[module]):
            if target in on_path:
                cycles.append(path[path.index(target):] + [target])
            elif target not in done:
                visit(target, path + [target], on_path | {target}, done)
        done.add(module)

    finished: set[str] = set()
    for module in sorted(graph):
        if module not in finished:
            visit(module, [module], {module}, finished)
    assert cycles == []


def test_imports_sit_at_the_top_unless_they_are_heavy():
    late = []
    for module, tree in MODULES.items():
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    roots = {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    roots = {(node.module or "").split(".")[0]}
                else:
                    continue
                late += [f"{module}.{function.name}: {root}" for root in roots - HEAVY]
    assert late == []


@pytest.mark.parametrize("folder", ["tasks", "plugins", "dags"])
def test_no_function_is_longer_than_sixty_lines(folder):
    long = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    assert long == []


def test_the_step_table_knows_every_step_and_the_launcher_uses_it():
    from tasks.steps import STEPS

    assert list(STEPS) == ["pull", "validate", "split", "train", "curve", "champion", "evaluate", "gate", "publish"]
    assert all(callable(step.run) and callable(step.result) for step in STEPS.values())
    assert [name for name, step in STEPS.items() if step.data_parallel] == ["train"]
