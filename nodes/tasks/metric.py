"""A metric of the user's own, named by import path so a resumed run finds it again.

``metric(prediction_text, gold) -> bool | float`` replaces the built-in correctness wherever a run
measures accuracy (rollouts, racing, the final choice, reports): the text is what the readout read
as the answer. The search's paired tests count right and wrong, so a number counts as right at 0.5
or more. The gradient still follows the gold answer's log-probability, since a metric gives no
gradient.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache

from gradprompt.errors import GradpromptError

Metric = Callable[[str, str], bool | float]


def metric_path(metric: Metric | str) -> str:
    """``module:qualified.name`` of a metric function, checked to import back to the same object."""
    if isinstance(metric, str):
        load_metric(metric)
        return metric
    if not callable(metric):
        raise GradpromptError(f"metric must be a function (prediction_text, gold) -> bool | float, got {metric!r}")
    module, name = getattr(metric, "__module__", None), getattr(metric, "__qualname__", "")
    if not module or "<" in name:
        raise GradpromptError(
            f"metric {name or metric!r} has no import path (a lambda or a function defined inside another): define "
            "it at the top level of a module so a resumed run can import it again"
        )
    path = f"{module}:{name}"
    if load_metric(path) is not metric:
        raise GradpromptError(f"metric {path} does not import back to the function given: define it at module level")
    return path


@lru_cache(maxsize=16)
def load_metric(path: str) -> Metric:
    """The metric at ``module:name``, or one clear error saying why it cannot be found."""
    module_name, sep, name = path.partition(":")
    if not sep or not module_name or not name:
        raise GradpromptError(f"metric {path!r} is not an import path like mypackage.scoring:exact_match")
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        raise GradpromptError(
            f"cannot import the run's metric {path} ({exc}): make the module importable (install it, or run from "
            "the folder that holds it / set PYTHONPATH), then resume again"
        ) from None
    for part in name.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise GradpromptError(f"the run's metric {path} is gone: module {module_name} has no {name}")
    if not callable(target):
        raise GradpromptError(f"the run's metric {path} is not a function")
    return target


def judged(metric: Metric, prediction: str, gold: str) -> bool:
    """The metric's verdict as right or wrong (a number counts as right at 0.5 or more)."""
    value = metric(prediction, gold)
    if isinstance(value, bool):
        return value
    try:
        return float(value) >= 0.5
    except (TypeError, ValueError):
        raise GradpromptError(f"the metric returned {value!r} for {prediction!r}: return a bool or a number") from None
