"""The local-model runtime every node shares: one loaded model, its chat layout, batched greedy
generation, and the vocabulary facts the candidate search needs.

It holds no per-run state, so one runtime serves every run in a process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from functools import cached_property, lru_cache

import torch

from gradprompt.errors import GradpromptError
from gradprompt.nodes.runtime.batching import pad, run_chunked
from gradprompt.nodes.runtime.chat_layout import ChatLayout, Encoded, Placement
from gradprompt.nodes.runtime.decoding import Decoded, DecodeJob, reason_and_answer
from gradprompt.nodes.runtime.model_loading import LoadedModel, load_model
from gradprompt.nodes.runtime.progress_bars import progress_bar
from gradprompt.nodes.runtime.usage import usage_of

# The GReaTer authors' candidate filter: ASCII letters with an optional leading space, or the
# full stop and comma tokens. Byte fragments, accents, CJK, zero-width and other symbols are out.
PLAIN_TOKEN = re.compile(r" ?[A-Za-z]+|[.,]")
SENTENCE_END = re.compile(r"[.!?]\s*$")


GRAD_TOKENS_CPU = 1024
GRAD_TOKENS_CUDA = 65536

_MASKS: dict[tuple, torch.Tensor] = {}


def plain_token_mask(tokenizer, rows: int) -> torch.Tensor:
    """The allowed-token mask (on the CPU) for ``tokenizer`` over ``rows`` embedding rows, decoded
    once per distinct vocabulary in this process: decoding every token is the slow part, and
    every runtime of the same model would otherwise repeat it."""
    vocab = tokenizer.get_vocab()
    key = (rows, len(tokenizer), hash(tuple(sorted(vocab.items()))), tuple(tokenizer.all_special_ids))
    if key not in _MASKS:
        n = min(rows, len(tokenizer))
        texts = tokenizer.batch_decode([[i] for i in range(n)])
        mask = torch.zeros(rows, dtype=torch.bool)
        mask[:n] = torch.tensor([bool(PLAIN_TOKEN.fullmatch(t)) for t in texts])
        mask[[i for i in tokenizer.all_special_ids if i < rows]] = False
        _MASKS[key] = mask
    return _MASKS[key]


def _by_question(job: DecodeJob) -> tuple:
    """Chunk order: questions of similar length together, and one question's rows (its
    candidates) side by side, so they land in one chunk and share its prefix."""
    return (job.prompt[0], job.context[: job.prompt[0]], len(job.context))


class ModelRuntime:
    """A model plus everything derived from it once: layout, stop ids, allowed-token mask."""

    def __init__(
        self,
        loaded: LoadedModel,
        placement: Placement | str = Placement.AFTER,
        max_batch: int = 32,
        grad_batch_tokens: int | None = None,
    ):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        self.layout = ChatLayout(self.tokenizer, placement)
        self.max_batch = max_batch
        # tokens per forward + backward of the gradient: what bounds the activations kept for the
        # backward (on a GPU the whole minibatch usually fits in one)
        default_tokens = GRAD_TOKENS_CUDA if self.device.type == "cuda" else GRAD_TOKENS_CPU
        self.grad_batch_tokens = grad_batch_tokens or default_tokens
        self.embedding_matrix = self.model.get_input_embeddings().weight
        self.extractor_ids = lru_cache(maxsize=65536)(self.layout.text_ids)
        self.usage = usage_of(self.model)

    @classmethod
    def from_spec(
        cls,
        model: str = "smollm2",
        placement: str = "after",
        device: str | None = None,
        dtype: str | None = None,
        max_batch: int = 32,
    ) -> ModelRuntime:
        return cls(load_model(model, device, dtype), placement, max_batch)

    # ----- token facts ---------------------------------------------------------------------------
    @cached_property
    def stop_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(source)
        return frozenset(ids)

    @cached_property
    def pad_id(self) -> int:
        if self.tokenizer.pad_token_id is not None:
            return int(self.tokenizer.pad_token_id)
        return min(self.stop_ids) if self.stop_ids else 0

    @cached_property
    def reading_layout(self) -> ChatLayout:
        """The prompt alone as a whole user's message: how fluent it reads, whatever the run's placement."""
        return ChatLayout(self.tokenizer, Placement.BEFORE, separator="")

    @cached_property
    def context_limit(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", None) or 4096)

    @cached_property
    def allowed_tokens(self) -> torch.Tensor:
        """Bool mask over the embedding rows: ASCII words (optionally space-led), '.' and ',';
        never special tokens.

        Computed once per tokenizer (runtimes of one model with other placements or dtypes share
        it); the step itself never loops over the vocabulary in Python.
        """
        return plain_token_mask(self.tokenizer, self.embedding_matrix.shape[0]).to(self.device)

    def ends_sentence(self, token_id: int) -> bool:
        return bool(SENTENCE_END.search(self.tokenizer.decode([token_id])))

    def encode_prompt(self, text: str) -> list[int]:
        return list(self.layout.text_ids(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ----- generation ----------------------------------------------------------------------------
    def check_fits(self, length: int, what: str) -> None:
        if length > self.context_limit:
            raise GradpromptError(
                f"{what} needs {length} tokens but the model's context holds {self.context_limit}: "
                "shorten the prompt or question, or lower --max-new-tokens"
            )

    @torch.no_grad()
    def _generate_chunk(self, seqs: list[Sequence[int]], max_new_tokens: int) -> list[tuple[int, ...]]:
        ids, mask = pad(seqs, self.pad_id, "left", self.device)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.stop_ids) or None,
        )
        new = out[:, ids.shape[1] :].tolist()
        result = []
        for row in new:
            cut = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
            result.append(tuple(row[:cut]))
        return result

    def generate(self, seqs: Sequence[Sequence[int]], max_new_tokens: int) -> list[tuple[int, ...]]:
        """Greedy continuations of many sequences, batched with left padding, each cut at its
        first stop token (which is not returned)."""
        if not seqs:
            return []
        longest = max(len(s) for s in seqs)
        self.check_fits(longest + max_new_tokens, "a question with the prompt and its reasoning")
        out = run_chunked(
            list(seqs), lambda chunk: self._generate_chunk(chunk, max_new_tokens), self.max_batch, key=len
        )
        self.usage.generated(sum(len(o) for o in out))
        return out

    def reason_and_answer(
        self,
        jobs: Sequence[DecodeJob],
        max_new_tokens: int,
        max_answer_tokens: int,
        lookahead: int = 16,
        label: str | None = None,
    ) -> list[Decoded]:
        """Reasoning, extractor and answer for many rows in chunks of ``max_batch``; see
        :mod:`nodes.runtime.decoding`. A ``label`` shows a progress bar over the rows."""
        if not jobs:
            return []
        longest = max(len(j.context) + len(j.extractor) for j in jobs)
        self.check_fits(longest + max_new_tokens + max_answer_tokens, "a question with the prompt and its reasoning")

        with progress_bar(label, total=len(jobs), unit="rows") if label else nullcontext() as bar:

            def chunk(items: list[DecodeJob]) -> list[Decoded]:
                return reason_and_answer(
                    self.model,
                    items,
                    max_new_tokens=max_new_tokens,
                    max_answer_tokens=max_answer_tokens,
                    stop_ids=self.stop_ids,
                    pad_id=self.pad_id,
                    device=self.device,
                    lookahead=lookahead,
                    on_done=bar.advance if bar is not None else None,
                )

            # rows of one example with different candidates land in one chunk and share its prefix
            out = run_chunked(list(jobs), chunk, self.max_batch, key=_by_question)
        self.usage.generated(sum(len(d.reasoning) + len(d.answer) for d in out))
        return out

    def contexts(self, questions: Sequence[str], prompt_ids: Sequence[int]) -> list[Encoded]:
        return [self.layout.encode(q, prompt_ids) for q in questions]
