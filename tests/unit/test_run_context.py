"""A run's resources reach its nodes through LangGraph's runtime context: the driver builds the
session once per run, each node gets that one with the graph's store as its rollout cache, and a
caller with none (the server) or a run whose settings changed mid-run gets the right one loaded."""

from __future__ import annotations

import copy
from dataclasses import replace

from helpers import TINY_MODEL_RUN
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore

import gradprompt.graph.builder
import gradprompt.graph.lifecycle
from gradprompt.graph import optimize, run_values
from gradprompt.graph.builder import build_graph, run_runtime
from gradprompt.nodes.context import Context
from gradprompt.nodes.session import session
from gradprompt.nodes.settings import RunSettings


def _own(sess):
    """The session with splits of its own: told apart from one loaded again from the caches."""
    return replace(sess, splits=copy.copy(sess.splits))


def _state(**settings) -> dict:
    return {"run_id": "r", "settings": RunSettings(task="builtin:compare", **settings).model_dump()}


def test_the_driver_session_reaches_the_node_with_the_graph_store(on_tiny_model):
    state = _state(**TINY_MODEL_RUN)
    built = _own(session(state["settings"]))
    store = InMemoryStore()
    got = run_runtime(state, Runtime(context=Context(chat_model="chat", session=built), store=store))
    sess = got.context.session
    assert sess.cache_store is store and got.store is store
    assert sess.rt is built.rt and sess.task is built.task and sess.splits is built.splits
    assert got.context.chat_model == "chat"


def test_a_caller_without_a_session_gets_the_one_of_the_run_settings(on_tiny_model):
    state = _state(**TINY_MODEL_RUN)
    for context in (None, Context()):  # the server passes no context, or an empty one
        sess = run_runtime(state, Runtime(context=context)).context.session
        assert sess.settings == RunSettings.model_validate(state["settings"])
        assert sess.cache_store is None


def test_a_session_sent_as_json_is_ignored(on_tiny_model):
    state = _state(**TINY_MODEL_RUN)
    sess = run_runtime(state, Runtime(context=Context(session={"settings": "made up"}))).context.session
    assert sess.settings == RunSettings.model_validate(state["settings"])


def test_settings_changed_mid_run_replace_the_driver_session(on_tiny_model):
    built = session(_state(**TINY_MODEL_RUN)["settings"])
    changed = _state(**{**TINY_MODEL_RUN, "dev": 2})
    sess = run_runtime(changed, Runtime(context=Context(session=built))).context.session
    assert sess.settings.dev == 2 and len(sess.splits.dev) == 2


def test_a_run_builds_its_session_once_and_every_node_uses_it(tmp_path, on_tiny_model, monkeypatch):
    built: list = []

    def counted(settings, cache_store=None):
        built.append(_own(session(settings, cache_store)))
        return built[-1]

    monkeypatch.setattr(gradprompt.graph.lifecycle, "session", counted)
    seen: list = []
    original = run_runtime

    def watched(state, runtime):
        got = original(state, runtime)
        seen.append(got.context.session)
        return got

    monkeypatch.setattr(gradprompt.graph.builder, "run_runtime", watched)
    result = optimize("builtin:compare", steps=2, run_dir=tmp_path, run_id="once", **TINY_MODEL_RUN)
    assert result.steps == 2
    assert len(built) == 1  # once for the run, not once per node
    assert len(seen) > 10  # prepare, two steps of nine nodes, finalize
    assert all(s.splits is built[0].splits and replace(s, cache_store=None) == built[0] for s in seen)
    assert all(s.cache_store is seen[0].cache_store is not None for s in seen)


def test_the_graph_publishes_its_input_and_context_schemas():
    """What LangGraph's server and Studio show for a run's input and context."""
    graph = build_graph()
    assert {"run_id", "settings"} <= set(graph.get_input_jsonschema()["properties"])
    assert {"final", "history", "prompt_text"} <= set(graph.get_output_jsonschema()["properties"])
    assert "chat_model" in graph.get_context_jsonschema()["properties"]


def test_the_drivers_model_load_counts_in_the_spent_time(tmp_path, on_tiny_model, monkeypatch):
    """Loading the model is part of what a time budget counts, whoever loads it: here the driver's
    clock says the load took 1,000 s."""
    import time

    class LoadClock:
        def __init__(self):
            self.readings = iter([0.0, 1000.0])  # before and after the session is built

        def perf_counter(self) -> float:
            return next(self.readings, time.perf_counter())

        def __getattr__(self, name):
            return getattr(time, name)

    monkeypatch.setattr(gradprompt.graph.lifecycle, "time", LoadClock())
    optimize("builtin:compare", steps=1, run_dir=tmp_path, run_id="slow", **TINY_MODEL_RUN)
    spent = run_values("slow", run_dir=tmp_path)["spent"]["seconds"]
    assert 1000 <= spent < 1000 + 600  # the load once, with the nodes' own time
