"""Examples and a metric from Python: `optimize(examples=[...] or a DataFrame, metric=fn)` on the
tiny model. The metric decides every accuracy, the examples travel with the run, a run killed
mid-step resumes in another process, and a metric that cannot be imported there is one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import helpers
import pytest
from helpers import TINY_MODEL_RUN

from gradprompt.errors import GradpromptError
from gradprompt.graph import optimize, run_values

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
SMALL = {**TINY_MODEL_RUN, "train": 4, "dev": 4, "test": 4}
ROWS = [
    {"question": f"Is {a} larger than {b}? Answer Yes or No.", "answer": "Yes" if a > b else "No"}
    for a, b in [(3, 9), (8, 2), (7, 1), (4, 6), (9, 5), (1, 2), (6, 3), (2, 8), (5, 4), (0, 7), (9, 1), (3, 4)]
]


def test_the_metric_decides_every_accuracy(tmp_path, on_tiny_model):
    helpers.METRIC_CALLS.clear()
    result = optimize(examples=ROWS, metric=helpers.always_right, steps=1, run_dir=tmp_path, **SMALL)
    assert helpers.METRIC_CALLS and {g for _, g in helpers.METRIC_CALLS} == {"Yes", "No"}
    assert result.scores["baseline"]["test"] == 1.0 and result.scores["best"]["dev"] == 1.0
    assert result.history[0]["current"]["accuracy"] == 1.0
    assert result.task.startswith("examples:examples@")
    settings = run_values(result.run_id, run_dir=tmp_path)["settings"]
    assert settings["metric"] == "helpers:always_right"

    # without the metric the same examples are judged by the built-in correctness
    plain = optimize(examples=ROWS, steps=1, run_dir=tmp_path, **SMALL)
    assert plain.task == result.task and plain.scores["baseline"]["test"] < 1.0


def test_a_dataframe_with_named_columns_and_a_numeric_metric(tmp_path, on_tiny_model):
    import pandas  # a dev dependency: make setup installs it

    frame = pandas.DataFrame({"text": [r["question"] for r in ROWS], "label": [r["answer"] for r in ROWS]})
    result = optimize(
        examples=frame,
        question_field="text",
        answer_field="label",
        metric="helpers:half_credit",
        name="compare",
        steps=1,
        run_dir=tmp_path,
        **SMALL,
    )
    assert result.task.startswith("examples:compare@")
    assert result.scores["baseline"]["test"] == 1.0  # 0.5 counts as right


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"examples": [{"question": "Q?"}]}, "example 0 has no 'answer'"),
        ({"examples": "Q? A"}, "examples must be a list"),
        ({"examples": ROWS, "metric": lambda p, g: True}, "has no import path"),
        ({"examples": ROWS, "metric": "helpers:no_such_metric"}, "module helpers has no no_such_metric"),
        ({"examples": ROWS, "task": "builtin:compare"}, "either task"),
    ],
)
def test_bad_examples_or_metrics_are_one_clear_error(tmp_path, kwargs, message):
    with pytest.raises(GradpromptError, match=message):
        optimize(run_dir=tmp_path, **kwargs)


def _python(code: str, *, with_tests: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS) if with_tests else ""}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


ON_TINY = """
    import sys
    sys.path.insert(0, {tests!r})
    import gradprompt.nodes.session
    from gradprompt.nodes.runtime.model_runtime import ModelRuntime
    from tiny_model import tiny_loaded
    rt = ModelRuntime(tiny_loaded())
    gradprompt.nodes.session._runtime = lambda *args: rt
"""


def test_a_run_from_examples_resumes_after_a_kill_and_needs_its_metric(tmp_path):
    runs = str(tmp_path)
    killed = _python(
        ON_TINY.format(tests=str(TESTS))
        + f"""
    import os, signal
    import helpers
    from gradprompt.graph import optimize

    seen = []
    def kill(node, update, settings):
        seen.append(node)
        if seen.count("reason") == 2:  # step 1's reasoning is checkpointed
            os.kill(os.getpid(), signal.SIGKILL)

    optimize(examples={ROWS!r}, metric=helpers.always_right, steps=3, run_dir={runs!r}, run_id="r",
             on_update=kill, **{SMALL!r})
    """
    )
    assert killed.returncode == -9, killed.stderr
    values = run_values("r", run_dir=tmp_path)
    assert values["step"] == 1 and values["next"] == ["propose"] and values["status"] == "stopped"

    # another process without the metric's module on its path: one clear error, nothing run
    refused = _python(
        f"""
    from gradprompt.graph import resume
    resume("r", run_dir={runs!r})
    """,
        with_tests=False,
    )
    assert refused.returncode == 1
    assert "cannot import the run's metric helpers:always_right" in refused.stderr.strip().splitlines()[-1]
    assert run_values("r", run_dir=tmp_path)["step"] == 1

    resumed = _python(
        ON_TINY.format(tests=str(TESTS))
        + f"""
    import helpers
    from gradprompt.graph import resume
    result = resume("r", run_dir={runs!r})
    print(result.steps, result.scores["baseline"]["test"], len(helpers.METRIC_CALLS) > 0)
    """
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["3", "1.0", "True"]
