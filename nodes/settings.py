"""Settings of one GReaTer step, validated once so bad values fail before any model work."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StepSettings(BaseModel):
    """Defaults are scaled for a CPU; the authors used 1024 reasoning tokens, 50 training
    examples and 125 steps on GPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(
        8, ge=1, description="pool examples the step's gradient is taken on (drawn afresh from the pool each step)"
    )
    max_new_tokens: int = Field(
        128, ge=0, description="bound on generated reasoning tokens (0: direct answers, read right after the prompt)"
    )
    readout: Literal["choice", "generate"] = Field(
        "choice",
        description="how a closed answer set (letters, yes/no, labels, ...) is read: choice takes the allowed "
        "answer the model finds most likely after the extractor; generate parses what it writes there",
    )
    top_k: int = Field(10, ge=1, description="top-k of each example's next-token distribution")
    group_size: int = Field(5, ge=1, description="examples per intersection group")
    n_groups: int = Field(6, ge=1, description="intersection groups whose union gives candidates")
    n_evaluate: int = Field(6, ge=1, description="gradient-ranked candidates raced by regeneration each step")
    temperature: float = Field(0.2, gt=0, description="answer logits are divided by this in the loss")
    grad_nll_weight: float = Field(0.2, ge=0, description="weight of prompt NLL in the gradient loss")
    score_nll_weight: float = Field(
        0.02, ge=0, description="weight of prompt NLL in the recorded score (error rate + weight x NLL)"
    )
    fluency_weight: float = Field(
        0.0,
        ge=0,
        description="weight of fluency against the gradient when word moves are chosen: each move is ranked "
        "by its gradient and by how much it raises the prompt's NLL read on its own, words before and after "
        "the edit included (0: gradient only)",
    )
    fluency_max_cost: float | None = Field(
        None,
        description="a word move or phrase edit that adds more than this NLL (nats) to the prompt read on its "
        "own, as a whole message, is not raced, nor a retrieved prompt (bundled model: natural one-word edits add "
        "-1 to +10, token soup +24 to +29; default none: no limit)",
    )
    reading_top_k: int = Field(
        0,
        ge=0,
        description="also offer the top-k words the model expects at the slot of the prompt read on its own, "
        "as an instruction, beside GReaTer's question-conditioned top-k (0: GReaTer's only)",
    )
    moves: Literal["words", "tokens"] = Field(
        "words",
        description="unit of a gradient edit: words (replace, insert or delete a whole word, so every prompt "
        "stays made of words) or tokens (GReaTer's one token per position; the paper variant's default)",
    )
    phrase_edits: int = Field(
        2, ge=0, description="model-free phrase edits raced per step (delete, swap, add back; 0: none)"
    )
    variant: Literal["official", "paper"] = Field(
        "official", description="official: evaluate top candidates by regeneration; paper: take the gradient argmax"
    )
    keep_best: int = Field(10, ge=1, description="best prompts (scored on the whole pool) kept across steps")
    race_slices: tuple[int, ...] = Field(
        (8, 16, 32),
        description="pool examples after which racing candidates are compared with the current prompt "
        "(comma-separated; the whole pool always comes last)",
    )
    race_alpha: float = Field(
        0.2, gt=0, lt=1, description="a racing candidate stops when a paired test puts it behind at this level"
    )
    acceptance: Literal["always", "not_worse", "better"] = Field(
        "always",
        description="when a step moves to its best candidate: always, not_worse (unless worse than the "
        "current prompt on the pool) or better (only with more pool examples right)",
    )
    final_candidates: int = Field(3, ge=1, description="best prompts compared with the initial one on dev")
    final_alpha: float = Field(0.05, gt=0, lt=1, description="significance level for replacing the initial prompt")
    final_rule: Literal["shared_alpha", "fixed_sequence", "pool_order", "bonferroni", "margin"] = Field(
        "shared_alpha",
        description="how dev decides: shared_alpha (the search's start, when a baseline won the race before "
        "step 0, and the search's finalists in pool order are tested at final_alpha / 2 each, a passed test "
        "handing its level on), fixed_sequence (the start first, then the finalists in pool order, each at "
        "final_alpha, stopping at the first failure), pool_order (the same in pool order alone), bonferroni "
        "(the dev leader at final_alpha / finalists) or margin (fixed sequence on the per-example "
        "gold-answer margin, with accuracy not worse)",
    )

    @model_validator(mode="before")
    @classmethod
    def _paper_moves_tokens(cls, data):
        """The paper variant reproduces GReaTer, whose edits are single tokens, unless told otherwise."""
        if isinstance(data, dict) and data.get("variant") == "paper" and "moves" not in data:
            return {**data, "moves": "tokens"}
        return data

    @field_validator("race_slices", mode="before")
    @classmethod
    def _slices(cls, value):
        """Accept "8,16,32" from the command line as well as a list."""
        if isinstance(value, str):
            try:
                value = [int(v) for v in value.replace(" ", "").split(",") if v]
            except ValueError:
                raise ValueError(f"race slices are example counts like 8,16,32, got {value!r}") from None
        if any(int(v) < 1 for v in value):
            raise ValueError("race slices must be positive example counts")
        return tuple(sorted(int(v) for v in value))


DEFAULT_PROMPT = "Let's think step by step."


class RunSettings(StepSettings):
    """Everything a run needs, stored with its checkpoints so ``resume RUN_ID`` needs nothing else."""

    task: str = Field(
        ..., description="task spec: builtin:NAME, bbh:PATH, gsm8k:PATH, folio:PATH, jsonl:PATH, csv:PATH"
    )
    model: str = Field("smollm2", description="bundled short name, local folder, .gguf file or hub id")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    placement: Literal["after", "before", "system"] = Field("after", description="where the prompt goes in the chat")
    question_field: str | None = Field(None, description="question field of a jsonl/csv task")
    metric: str | None = Field(
        None,
        description="module:function judging (prediction_text, gold) -> bool or number (>= 0.5 is right) instead "
        "of the built-in correctness; the module must be importable wherever the run resumes",
    )
    answer_field: str | None = Field(None, description="answer field of a jsonl/csv task")
    initial_prompt: str = Field(
        DEFAULT_PROMPT, description="your prompt: the search starts from it (or a better baseline) and must beat it"
    )
    baselines: bool = Field(
        True,
        description='before step 0, race the initial prompt, the empty prompt and "Let\'s think step by step." '
        "(and a warm start's prompt) on the pool and start from the best",
    )
    seed: int = Field(0, description="seeds the splits, the pool order, the gradient batches and the candidate groups")
    train: int = Field(50, ge=1, description="training examples: the selection pool every candidate is raced on")
    dev: int = Field(100, ge=1, description="dev examples: the final prompt must beat the initial one on these")
    test: int = Field(100, ge=0, description="test examples: reported, never used for choosing")
    steps: int = Field(20, ge=0, description="optimization steps (one edit position each)")
    time_budget: float | None = Field(
        None,
        gt=0,
        description="stop the search once this much time was spent in the run, over all its processes "
        "(e.g. 20m, 1h30m, 90s; a bare number is seconds); the step under way and the final dev/test "
        "evaluation still finish",
    )
    max_rollouts: int | None = Field(
        None,
        ge=1,
        description="stop the search once the run has generated this many (prompt, example) rollouts "
        "(cached ones are free); the step under way and the final evaluation still finish",
    )
    patience: int | None = Field(None, ge=1, description="stop after this many steps without a better prompt")
    target_accuracy: float | None = Field(
        None, gt=0, le=1, description="stop once the current prompt reaches this accuracy on the pool"
    )
    max_batch: int = Field(32, ge=1, description="rows per model call (halved automatically on CUDA out-of-memory)")
    human_approval: bool = Field(False, description="pause before every update for a person to approve, reject or edit")
    # GPO: the trajectory as update direction
    trajectory: bool = Field(True, description="record every candidate in the trajectory store and retrieve from it")
    store: str | None = Field(
        None,
        description="trajectory store: a folder, or http://HOST:PORT of a `chroma run` server "
        "(default $GRADPROMPT_HOME/trajectory)",
    )
    embeddings: str = Field(
        "minilm",
        description="sentence-transformers model that embeds prompts for the trajectory store: minilm (bundled "
        "all-MiniLM-L6-v2) or a local model folder; a store keeps to the model it was filled with",
    )
    retrieve_k: int = Field(5, ge=0, description="similar past prompts retrieved per step")
    cross_task: bool = Field(True, description="also retrieve prompts recorded for other tasks (same model)")
    warm_start: bool = Field(
        False,
        description="start from the best stored prompt of similar earlier tasks if it beats the initial one on dev",
    )
    warm_start_rule: Literal["race", "best"] = Field(
        "race",
        description="race: stored prompts race the initial one on dev, dropping those a paired test puts behind, "
        "and one replaces it only with a significant dev lead (final_alpha over the finishers); best: the "
        "highest dev accuracy wins, whatever the margin",
    )
    edit_schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="how the per-step edit limit decays over the run"
    )
    edit_max: int = Field(50, ge=1, description="edit limit (words) at the first step")
    edit_min: int = Field(10, ge=1, description="edit limit (words) at the last step")
    edit_positions: int = Field(
        1,
        ge=1,
        description="token positions one gradient proposal may change at the first step (token moves); "
        "decays with the edit limit to 1 (1 is GReaTer's one token per step)",
    )
    refine: bool | None = Field(
        None,
        description="GPO generation-based update: a chat model rewrites the prompt (default: on when a chat "
        "model is passed in, off otherwise; on without one uses the run's own model)",
    )
    refine_patience: int = Field(
        3, ge=1, description="stop refining after this many steps in a row without a usable candidate"
    )
    refine_candidates: int = Field(2, ge=1, description="whole-prompt candidates asked of the chat model per step")
    refine_max_new_tokens: int = Field(160, ge=16, description="bound on the chat model's reply")

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value):
        """Accept 20m, 1h30m, 90s or 1.5h as well as seconds."""
        if value is None or isinstance(value, int | float):
            return value
        text = str(value).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"a time budget is like 20m, 1h30m, 90s or 1.5h, got {value!r}")
        return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)

    def label(self) -> str:
        """Short human description of what produced a result."""
        return f"{self.variant} variant, {self.model}, seed {self.seed}"
