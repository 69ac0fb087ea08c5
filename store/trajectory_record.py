"""What the trajectory holds: one record per prompt a run evaluated, with its scores, and how two
records of the same prompt rank."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache


@dataclass(frozen=True)
class TrajectoryRecord:
    text: str
    prompt_ids: list[int]
    task: str
    model: str
    run_id: str
    step: int
    source: str  # initial | current | gradient | retrieval | refinement | human | dev
    accepted: bool = False
    score: float | None = None  # error rate + small NLL weight on the examples scored, lower is better
    accuracy: float | None = None  # accuracy on the run's selection pool (or the part a race reached)
    dev_accuracy: float | None = None
    decided_by: str = "optimizer"
    examples: int | None = None  # how many examples the accuracy is measured on
    splits: str | None = None  # fingerprint of (task data, seed, split sizes) the scores belong to
    data: str | None = None  # fingerprint of the task's examples
    version: str | None = None  # gradprompt version that wrote the record
    recorded: float | None = None  # when, in seconds since the epoch

    @property
    def id(self) -> str:
        key = f"{self.run_id}|{self.step}|{self.source}|{','.join(map(str, self.prompt_ids))}"
        return hashlib.sha1(key.encode()).hexdigest()

    def metadata(self) -> dict:
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("text", "prompt_ids")}
        meta["prompt_ids"] = json.dumps(self.prompt_ids)
        return {k: v for k, v in meta.items() if v is not None}

    @classmethod
    def from_chroma(cls, document: str, meta: dict) -> TrajectoryRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in meta.items() if k in known and k != "prompt_ids"}
        return cls(text=document, prompt_ids=json.loads(meta.get("prompt_ids", "[]")), **values)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    record: TrajectoryRecord
    similarity: float


@lru_cache(maxsize=1)
def gradprompt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradprompt")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def record_rank(r: TrajectoryRecord) -> tuple:
    dev = -(r.dev_accuracy if r.dev_accuracy is not None else -1.0)
    return (dev, r.score if r.score is not None else float("inf"))


def better_record(a: TrajectoryRecord, b: TrajectoryRecord) -> bool:
    return record_rank(a) < record_rank(b)
