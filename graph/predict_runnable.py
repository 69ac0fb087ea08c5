"""A run's predictor as a LangChain ``Runnable``, so the optimized prompt drops into a chain with
the reading it was measured under."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from gradprompt.errors import GradpromptError


def _question(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("question"), str):
        return value["question"]
    raise GradpromptError(
        f"the predictor takes a question as a string or a dict with a 'question' string, not {type(value).__name__}"
    )


class PredictorRunnable(Runnable[Any, str]):
    """Question in, answer out. ``batch`` sends every input through one batched decode rather
    than one decode per input."""

    def __init__(self, predictor):
        self.predictor = predictor

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        return self.batch([input], config)[0]

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        if not inputs:
            return []
        return [p.answer for p in self.predictor.predict([_question(i) for i in inputs])]
