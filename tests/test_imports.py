"""The package's import graph, read from the source with `ast`: no circle, and the serving side reaches no
training module. Every `import` counts, at the top of a module or inside a function, so that a circle cannot
come back hidden in a function."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = "bear_classifier"
TRAINING = {
    "bear_classifier.search",
    "bear_classifier.data",
    "bear_classifier.baseline",
    "bear_classifier.imagenet",
    "bear_classifier.train",
    "bear_classifier.candidates",
    "bear_classifier.evaluate",
    "bear_classifier.quantize",
    "bear_classifier.examples",
    "bear_classifier.promote",
    "bear_classifier.notebook",
}
"""Modules that only training needs (matplotlib, pandas, papermill, the pretrained weights, the data folders, a
run's folder)."""
WRITING = {"bear_classifier.export"}
"""Writing model.pkl (cloudpickle and its portable pickler): the app only reads one (`modelfile`)."""


def module_files() -> dict[str, Path]:
    """Module name -> file, for the package and app.py."""
    files = {f"{PACKAGE}.{p.stem}": p for p in sorted((ROOT / PACKAGE).glob("*.py")) if p.stem != "__init__"}
    return {**files, PACKAGE: ROOT / PACKAGE / "__init__.py", "app": ROOT / "app.py"}


def imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement names (`from . import a, b` names the submodules a and b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = PACKAGE if node.level else ""
    module = ".".join(part for part in (base, node.module) if part)
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules (and app) it imports."""
    files = module_files()
    graph = {}
    for name, path in files.items():
        nodes = ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        named = {m for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for m in imported(n)}
        graph[name] = {m for m in named if m in files and m != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for module in graph[todo.pop()] - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_the_package_has_no_import_circle():
    graph = import_graph()
    circles = sorted(m for m in graph if m in reachable(graph, m))
    assert not circles, f"modules on an import circle: {circles}"


def test_the_serving_side_imports_no_training_module():
    """app.py and everything it reaches (serving, feedback, modelfile...) never import training code."""
    assert not reachable(import_graph(), "app") & TRAINING


def test_the_serving_side_reads_model_files_and_never_writes_them():
    reached = reachable(import_graph(), "app")
    assert "bear_classifier.modelfile" in reached and not reached & WRITING


def test_the_tests_import_nothing_from_bench():
    """bench/ measures the product; what tests and benchmarks share lives in tests/support/."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        nodes = ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        named = {m for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for m in imported(n)}
        offenders += [f"{path.relative_to(ROOT)}: {m}" for m in sorted(named) if m.split(".")[0] == "bench"]
    assert not offenders


def test_the_graph_sees_relative_and_function_level_imports():
    """The parser itself: `from . import x` inside a function is an arrow too."""
    graph = import_graph()
    assert "bear_classifier.serving" in graph["bear_classifier.classify_common"]  # inside load_predictor
    assert {"bear_classifier.serving", "bear_classifier.feedback"} <= graph["app"]
