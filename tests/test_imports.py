"""The package's import graph, read from the source with `ast`: no circle, and each wing (a subpackage of
bear_classifier) reaches only the wings its place allows. Every `import` counts, at the top of a module, inside a
function or under `TYPE_CHECKING`, so that a circle or a wrong-way arrow cannot come back hidden."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = "bear_classifier"
WINGS = ("model", "web", "training", "ship", "batch")
NEVER_REACHES = {
    "model": {"web", "training", "ship", "batch"},  # what a model is and how it answers: no server, no training
    "web": {"training", "ship", "batch"},  # the request path
    "ship": {"web", "training", "batch"},  # the Hub and the Space: files and facts, never the server or training
    "batch": {"training"},  # the app's answers for many photos
    "training": {"batch"},
}
"""Wing -> the wings that none of its modules reaches, directly or through others (the root's modules included)."""


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for the package (its subpackages' `__init__` under the subpackage's name) and
    app.py."""
    files = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {**files, "app": ROOT / "app.py"}


def wing_of(module: str) -> str | None:
    """ "model" for bear_classifier.model.predictor; None for the root's modules and app.py."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == PACKAGE else None


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules an import statement in `module` names (`from . import a, b` names the submodules a and b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module.split(".")
    if node.level:  # relative: from the module's own package (itself, for an __init__), up one more per extra dot
        base = base[: len(base) - node.level + is_package]
    else:
        base = []
    target = ".".join([*base, *([node.module] if node.module else [])])
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules (and app) it imports."""
    files = module_files()
    graph = {}
    for name, path in files.items():
        nodes = ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        is_package = path.name == "__init__.py"
        named = {m for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for m in imported(n, name, is_package)}
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


def test_each_wing_reaches_only_the_wings_its_place_allows():
    graph = import_graph()
    wrong = [
        f"{module} reaches {other}"
        for module in graph
        if wing_of(module)
        for other in sorted(reachable(graph, module))
        if wing_of(other) in NEVER_REACHES[wing_of(module)]
    ]
    assert not wrong


def test_the_serving_side_imports_no_training_module():
    """app.py and everything it reaches (serving, feedback, modelfile...) never import training code (matplotlib,
    pandas, papermill, the pretrained weights, the data folders, a run's folder, writing model.pkl)."""
    reached = reachable(import_graph(), "app")
    assert "bear_classifier.model.modelfile" in reached and not {m for m in reached if wing_of(m) == "training"}


def test_the_root_holds_few_modules():
    """The folders are the map: at the root only what every wing shares, and the app's entry to the model."""
    root = sorted(p.name for p in (ROOT / PACKAGE).glob("*.py") if p.name != "__init__.py")
    assert len(root) <= 8 and {p.name for p in (ROOT / PACKAGE).iterdir() if p.is_dir()} >= set(WINGS), root


def test_nothing_imports_bench_or_research():
    """bench/ and research/ measure the product from outside; what tests and benchmarks share lives in tests/support/."""
    offenders = []
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / PACKAGE).rglob("*.py"), ROOT / "app.py"]):
        nodes = ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        named = {m for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for m in imported(n, "", False)}
        offenders += [
            f"{path.relative_to(ROOT)}: {m}" for m in sorted(named) if m.split(".")[0] in ("bench", "research")
        ]
    assert not offenders


def test_the_graph_sees_relative_and_function_level_imports():
    """The parser itself: an import inside a function is an arrow too, and a relative one counts from its package."""
    graph = import_graph()
    assert "bear_classifier.serving" in graph["bear_classifier.batch.classify_common"]  # inside load_predictor
    assert {"bear_classifier.serving", "bear_classifier.launch"} <= graph["app"]
    assert "bear_classifier.serving" in graph["bear_classifier.launch"]  # inside Service.__init__
    node = ast.parse("from .images import open_image").body[0]
    assert imported(node, "bear_classifier.model.predictor", False)[0] == "bear_classifier.model.images"
    assert imported(node, "bear_classifier.model", True)[0] == "bear_classifier.model.images"
