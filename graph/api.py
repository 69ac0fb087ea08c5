"""The Python API in one place: start, resume, fork and inspect runs, answer approvals, and score
a prompt the way runs do. Each function lives in the module named after its concept (lifecycle,
approval protocol, run index, fork, evaluation, predict, export); this module gathers them."""

from gradprompt.graph.approval_protocol import ApprovalPending, Approver, approve, pending_request, pending_runs
from gradprompt.graph.evaluation import evaluate_prompt, evaluate_prompts, report
from gradprompt.graph.export import prompt_template
from gradprompt.graph.forking import fork
from gradprompt.graph.lifecycle import (
    NoCheckpointYet,
    OptimizationResult,
    RunStopped,
    Update,
    make_settings,
    optimize,
    resume,
    start_run,
)
from gradprompt.graph.predict import Prediction, Predictor, load
from gradprompt.graph.removal import remove_runs
from gradprompt.graph.run_index import list_runs, run_status, run_values
from gradprompt.graph.threads import config

__all__ = [
    "ApprovalPending",
    "Approver",
    "NoCheckpointYet",
    "OptimizationResult",
    "Prediction",
    "Predictor",
    "RunStopped",
    "Update",
    "approve",
    "config",
    "evaluate_prompt",
    "evaluate_prompts",
    "fork",
    "list_runs",
    "load",
    "make_settings",
    "optimize",
    "pending_request",
    "pending_runs",
    "prompt_template",
    "remove_runs",
    "report",
    "resume",
    "run_status",
    "run_values",
    "start_run",
]
