"""A trajectory store keeps to the embedding model it was filled with: vectors of two models are
not comparable, so a store filled with one is refused under another, with the flag that fixes it."""

from __future__ import annotations

import shutil

import pytest

from gradprompt.errors import GradpromptError
from gradprompt.store.embeddings import bundled_embedding_path
from gradprompt.store.trajectory import TrajectoryStore
from gradprompt.store.trajectory_record import TrajectoryRecord


def _record(text: str) -> TrajectoryRecord:
    return TrajectoryRecord(
        text=text, prompt_ids=[1, 2], task="compare", model="m", run_id="r", step=0, source="gradient", score=0.5
    )


def test_a_store_is_refused_under_another_embedding_model(tmp_path):
    other = tmp_path / "other-model"
    shutil.copytree(bundled_embedding_path(), other)  # the same weights under another name is another model

    bundled = TrajectoryStore(tmp_path / "a")
    bundled.add([_record("Think step by step.")])
    with pytest.raises(GradpromptError, match=r"holds embeddings of 'minilm'.*pass --embeddings minilm"):
        TrajectoryStore(tmp_path / "a", embeddings=str(other)).similar("Think.", model="m", k=1)
    assert bundled.similar("Think.", model="m", k=1)  # the store itself is fine

    custom = TrajectoryStore(tmp_path / "b", embeddings=str(other))
    custom.add([_record("Answer briefly.")])
    assert custom.similar("Answer.", model="m", k=1)[0].record.text == "Answer briefly."
    with pytest.raises(GradpromptError, match=rf"holds embeddings of '{other}'.*--store with another folder"):
        TrajectoryStore(tmp_path / "b").add([_record("Another prompt.")])
    assert TrajectoryStore(tmp_path / "b").stats()["records"] == 1  # reading needs no embeddings
