"""gradprompt's public API: the optimizer graph and the functions that run it.

The names below load on first use: they bring torch, transformers and LangGraph, which a light
command (``gradprompt runs list``, ``gradprompt --help``) or module (``gradprompt.graph.cli``) never
needs, so importing anything under ``gradprompt.graph`` does not pay for the model code first.
"""

from __future__ import annotations

import importlib

# public name -> the module that holds it
_WHERE = {
    **dict.fromkeys(
        (
            "OptimizationResult",
            "Predictor",
            "RunStopped",
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
        ),
        "gradprompt.graph.api",
    ),
    "build_graph": "gradprompt.graph.builder",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = globals()[name] = getattr(importlib.import_module(_WHERE[name]), name)
        return value
    raise AttributeError(f"module 'gradprompt.graph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
