"""Help that fits the command: each command lists only the settings it reads (evaluate's are
recorded while it runs), optimize's flags come in groups, and its help ends with examples."""

from __future__ import annotations

import re

import pytest

import gradprompt.nodes.session
from gradprompt.graph.cli import build_parser
from gradprompt.graph.commands.flags import GROUPS, OPTIMIZE_FIELDS, SWEEP_FIELDS
from gradprompt.nodes.settings import RunSettings

FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def _help(*command: str) -> str:
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # the COMMAND choices
        sub = action.choices[command[0]]
    for name in command[1:]:
        sub = sub._subparsers._group_actions[0].choices[name]
    return sub.format_help()


def _setting_flags(text: str) -> set[str]:
    fields = {f.replace("_", "-"): f for f in RunSettings.model_fields if f != "task"}
    return {fields[f.removeprefix("no-")] for f in FLAG.findall(text) if f.removeprefix("no-") in fields}


def test_every_setting_is_in_exactly_one_group():
    grouped = [name for names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(set(RunSettings.model_fields) - {"task"})


def test_evaluate_lists_exactly_the_settings_it_reads(tiny_rt, monkeypatch):
    from gradprompt.graph.evaluation import evaluate_prompts

    monkeypatch.setattr(gradprompt.nodes.session, "_runtime", lambda *args: tiny_rt)
    read: set[str] = set()
    plain = RunSettings.__getattribute__

    def spy(self, name):
        if name in RunSettings.model_fields:
            read.add(name)
        return plain(self, name)

    monkeypatch.setattr(RunSettings, "__getattribute__", spy)
    evaluate_prompts("builtin:compare", ["Answer.", "Think."], dev=3, max_new_tokens=2, show=1)
    monkeypatch.undo()
    assert _setting_flags(_help("evaluate")) == read - {"task"}


def test_optimize_offers_every_setting_in_groups_and_ends_with_examples():
    text = _help("optimize")
    assert _setting_flags(text) == OPTIMIZE_FIELDS
    for title in GROUPS:
        assert f"\n{title}:\n" in text
    examples = text.split("\nexamples:\n")[1]
    commands = [line.strip() for line in examples.splitlines() if line.strip().startswith("gradprompt optimize")]
    assert len(commands) == 3
    before_first = examples.split(commands[0])[0].lower()
    assert "cpu" in before_first and "--steps 4" in commands[0]
    assert max(len(line) for line in text.splitlines()) <= 100


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        (("sweep",), SWEEP_FIELDS),
        (("resume",), frozenset()),
        (("runs", "list"), frozenset()),
        (("runs", "rm"), frozenset()),
        (("report",), frozenset()),
        (("approve",), frozenset()),
    ],
)
def test_other_commands_list_only_their_settings(command, fields):
    assert _setting_flags(_help(*command)) == fields


def test_store_commands_take_the_embedding_model():
    for action in ("stats", "search", "prune", "show", "export"):
        assert "--embeddings" in _help("store", action)
