"""One import name: the installed project is ``gradprompt`` and nothing else, with every subpackage
of the top-level folders inside it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import gradprompt

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("graph", "nodes", "store")


def _declared() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def _on_disk() -> set[str]:
    found = {"gradprompt"}
    for folder in FOLDERS:
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            found.add(".".join(("gradprompt", *parts)))
    return found


def test_every_subpackage_of_the_folders_is_declared_under_gradprompt():
    assert _declared() == _on_disk()


def test_an_environment_gets_gradprompt_and_no_generic_module(tmp_path):
    """In a fresh interpreter away from the checkout, ``graph``, ``nodes`` and ``store`` are not
    importable, and the public API and the subpackages come from this checkout."""
    code = (
        "import importlib.util, json, gradprompt, gradprompt.nodes.runtime.decoding as d, gradprompt.store.trajectory\n"
        "print(json.dumps({'generic': [n for n in ('graph', 'nodes', 'store') if importlib.util.find_spec(n)],"
        " 'optimize': callable(gradprompt.optimize), 'decoding': d.__file__}))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["generic"] == []
    assert got["optimize"] is True
    assert Path(got["decoding"]).resolve() == (ROOT / "nodes" / "runtime" / "decoding.py").resolve()


def test_the_console_script_and_the_api_name_the_package():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "gradprompt"]
    assert script.value == "gradprompt.graph.cli:main"
    assert script.load() is gradprompt.graph.cli.main
    assert gradprompt.optimize is gradprompt.graph.api.optimize
    assert set(gradprompt.__all__) == {*gradprompt.graph.__all__, "GradpromptError"}


def test_public_names_are_the_api_whatever_was_imported_first(tmp_path):
    """The public names load on first use; importing every submodule before touching them (as a
    command does) must not leave a module where a function belongs. And the command line starts
    without the model code: ``--help`` and the parser load neither torch nor LangGraph, and listing
    runs (which compiles the graph to read their state) loads no torch."""
    code = (
        "import json, sys, pkgutil, importlib, types\n"
        "import gradprompt.graph.cli as cli\n"
        "cli.build_parser()\n"
        "light = [m for m in ('torch', 'transformers', 'langgraph', 'scipy') if m in sys.modules]\n"
        "from gradprompt.graph.run_index import list_runs\n"
        "listed = list_runs(run_dir='runs')\n"
        "light += [m for m in ('torch', 'transformers', 'scipy') if m in sys.modules]\n"
        "import gradprompt.graph as g\n"
        "for info in pkgutil.walk_packages(g.__path__, 'gradprompt.graph.'):\n"
        "    importlib.import_module(info.name)\n"
        "import gradprompt\n"
        "from gradprompt.graph import *\n"
        "bad = [n for n in g.__all__ if isinstance(getattr(g, n), types.ModuleType)]\n"
        "bad += [n for n in gradprompt.__all__ if isinstance(getattr(gradprompt, n), types.ModuleType)]\n"
        "print(json.dumps({'light': light, 'listed': listed, 'modules': bad, 'fork': g.fork.__module__}))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got == {"light": [], "listed": [], "modules": [], "fork": "gradprompt.graph.forking"}


def test_the_built_wheel_holds_only_the_gradprompt_package(tmp_path):
    """A wheel (what a non-editable install unpacks) puts the three folders inside ``gradprompt/``."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("gradprompt", *FOLDERS):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("gradprompt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"gradprompt", wheel.name.split("-py")[0] + ".dist-info"}
    modules = {n for n in names if n.endswith(".py")}
    expected = {
        f"gradprompt/{p.relative_to(ROOT).as_posix()}" for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
    }
    assert expected <= modules and "gradprompt/__init__.py" in modules
