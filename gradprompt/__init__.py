"""gradprompt: prompt optimization for language models you run yourself.

One import name for the whole project: ``gradprompt.optimize(...)`` and the rest of the public API
below, with the graph, its nodes and the stores as ``gradprompt.graph``, ``gradprompt.nodes`` and
``gradprompt.store``. In the repository those three live in top-level folders (``graph/``,
``nodes/``, ``store/``); the installed package maps them under this name, so installing gradprompt
adds no generic top-level module such as ``graph`` or ``store`` to an environment.
"""

from __future__ import annotations

from pathlib import Path

# A source checkout imported through its folder (PYTHONPATH, or a benchmark adding the checkout to
# sys.path) finds its own graph/, nodes/ and store/ beside this folder, not those of the checkout
# that happens to be installed; an installed wheel holds them inside this folder.
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "nodes" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))

from gradprompt.errors import GradpromptError as GradpromptError  # noqa: E402 (light: no model code)

# The rest of the public API loads on first use (it brings torch, transformers and LangGraph):
# importing a light module such as gradprompt.errors does not load the whole graph first.
_PUBLIC = {
    "OptimizationResult",
    "Predictor",
    "RunStopped",
    "build_graph",
    "evaluate_prompt",
    "evaluate_prompts",
    "fork",
    "list_runs",
    "load",
    "optimize",
    "prompt_template",
    "remove_runs",
    "report",
    "resume",
    "run_values",
}
__all__ = sorted({*_PUBLIC, "GradpromptError"})


def __getattr__(name: str):
    if name in _PUBLIC:
        from gradprompt import graph

        return getattr(graph, name)
    raise AttributeError(f"module 'gradprompt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
