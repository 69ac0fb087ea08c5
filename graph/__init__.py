"""gradprompt's public API: the optimizer graph and the functions that run it."""

from graph.api import (
    OptimizationResult,
    RunStopped,
    evaluate_prompt,
    fork,
    list_runs,
    optimize,
    report,
    resume,
    run_values,
)
from graph.builder import build_graph

__all__ = [
    "OptimizationResult",
    "RunStopped",
    "build_graph",
    "evaluate_prompt",
    "fork",
    "list_runs",
    "optimize",
    "report",
    "resume",
    "run_values",
]
