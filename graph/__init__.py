"""gradprompt's public API: the optimizer graph and the functions that run it."""

from gradprompt.graph.api import (
    OptimizationResult,
    Predictor,
    RunStopped,
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
from gradprompt.graph.builder import build_graph

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
