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

from gradprompt.graph import (  # noqa: E402 (the path above decides where these come from)
    OptimizationResult,
    Predictor,
    RunStopped,
    build_graph,
    evaluate_prompt,
    evaluate_prompts,
    fork,
    list_runs,
    load,
    optimize,
    prompt_template,
    remove_runs,
    report,
    resume,
    run_values,
)

__all__ = [
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
]
