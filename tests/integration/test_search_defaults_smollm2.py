"""The default search on the bundled model: the baselines race before step 0, gradient word moves
and phrase edits are raced side by side, every prompt the run holds is made of dictionary words,
and the per-source counts reach `runs show` and the report. (The other integration tests turn the
baseline race and phrase edits off to test one mechanism at a time.)"""

from __future__ import annotations

import pytest
from helpers import SMALL_RUN, run_cli

from gradprompt.graph import optimize, run_values
from gradprompt.graph.run_report import build_report
from gradprompt.nodes.proposers import source_totals
from gradprompt.nodes.readability import readability
from gradprompt.nodes.runtime.scoring import reading_nll
from gradprompt.nodes.session import session

INITIAL = "Compare the two numbers and answer yes or no."


@pytest.mark.heavy(15)
def test_default_search_holds_words_and_counts_every_source(tmp_path):
    fluency = {"fluency_max_cost": 10.0, "fluency_weight": 1.0, "reading_top_k": 10}
    settings = {**SMALL_RUN, "train": 6, "baselines": True, "phrase_edits": 2, "refine": None, **fluency}
    result = optimize(
        "builtin:compare", initial_prompt=INITIAL, steps=2, run_dir=tmp_path, trajectory=False, **settings
    )
    values = run_values(result.run_id, run_dir=tmp_path)
    rt = session(values["settings"]).rt
    names = {b["baseline"] for b in values["baselines"]}
    assert names == {"initial", "empty", "step by step", "answer format"}
    start = values["start"]
    assert start["name"] in names and start["reason"]
    assert values["history"][0]["prompt_text"] == start["text"]  # step 0 edits where the search started
    assert values["final"]["baseline"]["text"] == INITIAL  # judged against the user's own prompt
    assert set(values["final"]["rules"]) == {"fixed_sequence", "pool_order", "shared_alpha", "bonferroni", "margin"}
    # dev tests the search's start first when a baseline won the race, then the search's prompts
    on_dev = [d["text"] for d in values["final"]["dev_candidates"]]
    assert on_dev[0] == INITIAL and (on_dev[1] == start["text"]) == (start["name"] != "initial")
    assert values["final"]["tests"][0]["candidate"] == 0

    for h in values["history"]:
        held = [h["accepted"]["text"], *(c["text"] for c in h["candidates"])]
        for text in held:
            assert readability(text)["non_words"] == [], text  # no fragment, no non-word
        counts = h["sources"]
        assert "refinement" not in counts  # no chat model named: no refinement
        assert counts["gradient"]["offered"] >= 1
        for source, row in counts.items():
            assert row["raced"] == sum(c["source"] == source for c in h["candidates"])
        # with the fluency limit on, every word move and phrase edit raced keeps to it, measured anew
        own = [c for c in h["candidates"] if c["source"] in ("gradient", "phrase")]
        assert own and all(c["fluency_cost"] <= 10.0 for c in own)
        before = reading_nll(rt, [tuple(h["prompt"])])[0]
        after = reading_nll(rt, [tuple(c["prompt"]) for c in own])
        assert [c["fluency_cost"] for c in own] == pytest.approx([a - before for a in after], abs=0.05)
    # phrase edits race beside the gradient's moves (a short prompt may offer none at a step)
    assert sum(h["sources"].get("phrase", {}).get("offered", 0) for h in values["history"]) >= 1
    best = values["final"]["best"]
    assert best["known_words"] == 1.0

    totals = source_totals(values["history"])
    report = build_report(values)
    for source, row in totals.items():
        assert report.sources[source] == row
    shown = run_cli("runs", "show", result.run_id, run_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "candidates by source" in shown.stdout
    assert f"gradient   {totals['gradient']['offered']:5d}" in shown.stdout
