"""What a model has been asked to do: forward calls, tokens read and generated, seconds inside it.

Benchmarks and reports need the cost of a run, not only its wall time: how many model calls and
tokens an optimization spent, and which share of a step the model itself took (the rest is Python,
retrieval and bookkeeping). Hooks on the model count every forward, whoever calls it; backward
passes are timed where the gradient is taken (:meth:`ModelUsage.timed`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass
class UsageCounts:
    calls: int = 0  # forward calls (one per decode step, prefill or scoring pass)
    tokens_in: int = 0  # token positions fed to the model, padding included
    tokens_generated: int = 0  # reasoning and answer tokens produced by greedy decoding
    backward_calls: int = 0
    model_seconds: float = 0.0  # inside forward and backward passes

    def __sub__(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["model_seconds"] = round(out["model_seconds"], 3)
        return out


class ModelUsage:
    """Running totals for one model; take :meth:`snapshot` before and after a piece of work."""

    def __init__(self, model: torch.nn.Module):
        self.counts = UsageCounts()
        self._depth = 0
        self._started = 0.0
        self._device = next(model.parameters()).device
        model.register_forward_pre_hook(self._before, with_kwargs=True)
        model.register_forward_hook(self._after)
        # the decode's prefill calls the decoder and the output layer directly (to keep only the
        # argmax of most positions); nested calls from the model itself are not counted twice
        parts = [getattr(model, "get_decoder", lambda: None)(), getattr(model, "get_output_embeddings", lambda: None)()]
        for part in parts:
            if isinstance(part, torch.nn.Module) and part is not model:
                part.register_forward_pre_hook(self._before, with_kwargs=True)
                part.register_forward_hook(self._after)

    def _sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _before(self, module, args, kwargs) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.is_floating_point():  # the output layer, fed hidden states
            ids = ids[..., 0]
        if ids is None:
            embeds = kwargs.get("inputs_embeds")
            ids = embeds[..., 0] if embeds is not None else None
        self.counts.calls += 1
        self.counts.tokens_in += int(ids.numel()) if ids is not None else 0
        self._sync()
        self._started = time.perf_counter()

    def _after(self, module, args, output) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._sync()
            self.counts.model_seconds += time.perf_counter() - self._started

    def generated(self, n: int) -> None:
        self.counts.tokens_generated += n

    @contextmanager
    def timed(self):
        """Count a backward pass (hooks do not see it)."""
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.counts.model_seconds += time.perf_counter() - start
            self.counts.backward_calls += 1

    def snapshot(self) -> UsageCounts:
        return UsageCounts(**{f.name: getattr(self.counts, f.name) for f in fields(self.counts)})


def usage_of(model: torch.nn.Module) -> ModelUsage:
    """The model's one counter, created with its hooks on first use."""
    usage = getattr(model, "_gradprompt_usage", None)
    if usage is None:
        usage = ModelUsage(model)
        model._gradprompt_usage = usage
    return usage
