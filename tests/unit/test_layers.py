"""The layers import one way: graph/ over nodes/ over store/ over the package's base modules
(errors, quiet), and no two modules import each other, even inside a function."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# lowest first; a module may import its own layer and the layers below it
LAYERS = ("base", "store", "nodes", "graph", "api")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts if parts[0] == "gradprompt" else ["gradprompt", *parts])


def _modules() -> dict[str, Path]:
    found = {}
    for folder in ("gradprompt", "graph", "nodes", "store"):
        for path in (ROOT / folder).rglob("*.py"):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    if module == "gradprompt":
        return "api"
    part = module.split(".")[1]
    return part if part in ("graph", "nodes", "store") else "base"


def _imports(name: str, path: Path) -> set[str]:
    """Every other gradprompt module ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gradprompt":
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "gradprompt")
    return {m for m in out if m in MODULES and m != name}


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


@pytest.mark.parametrize(("lower", "upper"), list(itertools.combinations(LAYERS, 2)))
def test_a_lower_layer_never_imports_a_higher_one(lower, upper):
    upward = sorted(
        f"{m} imports {target}"
        for m, targets in IMPORTS.items()
        if _layer(m) == lower
        for target in targets
        if _layer(target) == upper
    )
    assert upward == []


@pytest.mark.parametrize(("lower", "upper"), [("store", "nodes"), ("nodes", "graph"), ("store", "graph")])
def test_the_higher_layer_does_use_the_lower_one(lower, upper):
    """The direction is real, not vacuous: each upper layer leans on the one below."""
    assert any(_layer(t) == lower for m, ts in IMPORTS.items() if _layer(m) == upper for t in ts)


def test_no_two_modules_import_each_other_even_through_others():
    """No import cycle of any length (a lazy import inside a function counts: it hides a cycle,
    it does not remove it)."""
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(IMPORTS[module]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(IMPORTS):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checks_see_the_imports_they_judge():
    """The parser finds imports made inside functions, so the checks above can fail."""
    assert "gradprompt.store.postgres_runs" in IMPORTS["gradprompt.store.checkpoints"]  # a lazy import
    assert "gradprompt.graph" in IMPORTS["gradprompt"]


def test_store_imports_and_opens_runs_without_loading_the_graph_or_the_nodes(tmp_path):
    """At run time too: every store module imported and a runs folder opened, and no module of the
    layers above is loaded."""
    code = (
        "import sys, pkgutil, importlib, gradprompt.store as store\n"
        "for m in pkgutil.iter_modules(store.__path__): importlib.import_module(f'gradprompt.store.{m.name}')\n"
        "from gradprompt.store.checkpoints import open_runs\n"
        "runs = open_runs(sys.argv[1])\n"
        "with runs.persistence() as (saver, rollouts): pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('gradprompt.graph', 'gradprompt.nodes'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
