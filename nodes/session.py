"""What every node of a run shares: the model, the task, its splits and the rollout cache.

The graph state holds only JSON; these live here. The driver builds a run's session once and hands
it to the nodes in the runtime context (:mod:`nodes.context`); underneath, the model and the task
are cached by the settings that determine them, so nothing loads twice in a process and a resumed
run in a new process rebuilds exactly the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from gradprompt.nodes.runtime.model_runtime import ModelRuntime
from gradprompt.nodes.settings import RunSettings
from gradprompt.nodes.tasks import Splits, Task, load_task
from gradprompt.nodes.tasks.readout import Readout, readout_of


@dataclass(frozen=True)
class Session:
    settings: RunSettings
    rt: ModelRuntime
    task: Task
    splits: Splits
    cache_store: Any = None  # the graph's LangGraph store, where the run's rollout cache lives

    @property
    def readout(self) -> Readout:
        """How this run reads answers: every rollout, score and gradient of the run uses it."""
        s = self.settings
        return readout_of(self.task.answer_format, s.readout, s.max_new_tokens, s.metric)


@lru_cache(maxsize=4)
def _runtime(model: str, device: str, dtype: str, placement: str, max_batch: int) -> ModelRuntime:
    return ModelRuntime.from_spec(model, placement=placement, device=device, dtype=dtype, max_batch=max_batch)


@lru_cache(maxsize=16)
def _task(spec: str, question_field: str | None, answer_field: str | None) -> Task:
    return load_task(spec, question_field, answer_field)


@lru_cache(maxsize=16)
def _splits(
    spec: str, question_field: str | None, answer_field: str | None, seed: int, train: int, dev: int, test: int
) -> Splits:
    return _task(spec, question_field, answer_field).split(seed, train, dev, test)


def session(settings: RunSettings | dict, cache_store=None) -> Session:
    """The shared objects for a run's settings (a dict is what the graph state carries), with the
    LangGraph store that holds its rollout cache (None: the process's in-memory cache)."""
    s = settings if isinstance(settings, RunSettings) else RunSettings.model_validate(settings)
    task = _task(s.task, s.question_field, s.answer_field)
    splits = _splits(s.task, s.question_field, s.answer_field, s.seed, s.train, s.dev, s.test)
    rt = _runtime(s.model, s.device, s.dtype, s.placement, s.max_batch)
    return Session(s, rt, task, splits, cache_store)


def load_inputs(settings: RunSettings) -> tuple[Task, Splits]:
    """Load and split the task without touching the model, so bad input fails before a model load."""
    s = settings
    return _task(s.task, s.question_field, s.answer_field), _splits(
        s.task, s.question_field, s.answer_field, s.seed, s.train, s.dev, s.test
    )


def selection_pool(sess: Session) -> list:
    """The run's training split in its fixed racing order: every prompt is scored on these."""
    from gradprompt.nodes.greater import pool_order

    return pool_order(sess.splits.train, sess.settings.seed)


def gradient_examples(sess: Session, step: int) -> list:
    """The pool examples ``step`` takes its gradient on (a function of seed and step alone)."""
    from gradprompt.nodes.greater import gradient_batch

    pool = selection_pool(sess)
    return [pool[i] for i in gradient_batch(pool, sess.settings.batch_size, sess.settings.seed, step)]


def rollout_cache(sess: Session):
    """The run's (prompt, example) rollout cache in its LangGraph store."""
    from gradprompt.nodes.rollout_cache import RolloutCache

    return RolloutCache(sess.cache_store, rollout_namespace(sess.settings))


def rollout_namespace(settings: RunSettings) -> tuple[str, ...]:
    """Where a run's rollouts are cached: runs whose results cannot differ share it. Needs the
    task's answer format (read from its data), never the model."""
    from gradprompt.nodes.rollout_cache import cache_namespace, rollout_fingerprint

    task, _ = load_inputs(settings)
    readout = readout_of(task.answer_format, settings.readout, settings.max_new_tokens, settings.metric)
    return cache_namespace(rollout_fingerprint(settings, readout))


def rollouts(sess: Session, examples, prompts, drafts=None, label: str | None = None) -> list:
    """Rollouts of ``prompts`` on ``examples``, rolling out only what the run has not yet."""
    from gradprompt.nodes.greater import rollout

    return rollout(
        sess.rt,
        sess.readout,
        examples,
        prompts,
        sess.settings.max_new_tokens,
        drafts=drafts,
        label=label,
        cache=rollout_cache(sess),
    )


def scored(sess: Session, prompt, source: str, rollout=None, step: int | None = None, **extra) -> dict:
    """A prompt as the state records it, with its results on the examples it was rolled out on."""
    from gradprompt.nodes.readability import readability

    text = sess.rt.decode(prompt)
    out = {"prompt": list(prompt), "text": text, "source": source, "known_words": readability(text)["known_words"]}
    out.update(extra)
    if rollout is not None:
        out.update(
            accuracy=rollout.accuracy,
            right=sum(rollout.correct),
            examples=len(rollout.correct),
            gold_logprob=rollout.gold_logprob,
            nll=rollout.nll,
            score=rollout.score(sess.settings.score_nll_weight),
        )
    if step is not None:
        out["step"] = step
    return out


@lru_cache(maxsize=16)
def _data_fingerprint(spec: str, question_field: str | None, answer_field: str | None) -> str:
    import hashlib

    task = _task(spec, question_field, answer_field)
    data = hashlib.sha1()
    for e in [*task.examples, *task.held_out]:
        data.update(f"{e.question}\x1f{e.answer}\x1e".encode())
    return data.hexdigest()[:16]


def data_fingerprint(sess: Session) -> str:
    """Which task data a record was scored on: the same name can hold other examples on another
    machine or after an edit of the file, and scores on other data are not comparable."""
    s = sess.settings
    return _data_fingerprint(s.task, s.question_field, s.answer_field)


def splits_fingerprint(sess: Session) -> str:
    """Which examples a run's dev and test scores were measured on: task data, seed, split sizes.
    A dev score recorded under another fingerprint may have seen this run's test examples."""
    import hashlib

    from gradprompt.nodes.tasks.task import SPLIT_METHOD

    s = sess.settings
    key = f"{data_fingerprint(sess)}|{s.seed}|{s.train}|{s.dev}|{s.test}|{SPLIT_METHOD}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def trajectory_record(sess: Session, state: dict, **fields):
    """A trajectory record of this run's step, carrying what a later run needs to judge it: the
    model, the task data and splits it was scored on, the gradprompt version and when."""
    import time

    from gradprompt.store.trajectory_record import TrajectoryRecord, gradprompt_version

    return TrajectoryRecord(
        task=sess.task.name,
        model=sess.settings.model,
        run_id=state["run_id"],
        step=state["step"],
        splits=splits_fingerprint(sess),
        data=data_fingerprint(sess),
        version=gradprompt_version(),
        recorded=round(time.time(), 3),
        **fields,
    )


def trajectory_of(sess: Session):
    """The run's trajectory store, or None when the run keeps no trajectory."""
    if not sess.settings.trajectory:
        return None
    from gradprompt.store.trajectory import open_store

    return open_store(sess.settings.store, sess.settings.embeddings)


def step_edit_limit(sess: Session, step: int) -> int:
    """The word edit limit of ``step`` (counted from 0 here, from 1 in the schedule)."""
    from gradprompt.nodes.edit_limit import edit_limit

    s = sess.settings
    return edit_limit(s.edit_schedule, step + 1, s.steps, s.edit_max, s.edit_min)
