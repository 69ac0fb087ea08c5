"""Both places runs live offer exactly the :class:`Runs` interface, with the same parameters, so
the graph layer can use either without asking which it has."""

from __future__ import annotations

import inspect

import pytest

from gradprompt.store.checkpoints import RunFolder, open_runs
from gradprompt.store.postgres_runs import PostgresRuns
from gradprompt.store.runs import Runs


def _members(cls) -> dict[str, object]:
    return {n: m for n, m in vars(cls).items() if not n.startswith("_")}


@pytest.mark.parametrize("impl", [RunFolder, PostgresRuns])
def test_each_place_implements_exactly_the_interface(impl):
    wanted, got = _members(Runs), _members(impl)
    assert set(got) == set(wanted)  # a public method on one place only would not be reachable through Runs
    for name, member in wanted.items():
        if isinstance(member, property):
            assert isinstance(got[name], property), name
            continue
        assert list(inspect.signature(got[name]).parameters) == list(inspect.signature(member).parameters), name


def test_a_runs_folder_is_runs(tmp_path):
    assert isinstance(open_runs(tmp_path), Runs)
