"""The GPO half on a real Chroma store: retrieval, persistence, idempotent writes, reuse across
tasks, a shared `chroma run` server, and refinement by a chat model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import SMALL_RUN, free_port
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from gradprompt.errors import GradpromptError
from gradprompt.graph import optimize
from gradprompt.store.embeddings import get_embedder
from gradprompt.store.trajectory import TrajectoryStore
from gradprompt.store.trajectory_record import TrajectoryRecord

# the shared small run, with the default best list and refinement reply bound
SMALL = {k: v for k, v in SMALL_RUN.items() if k not in ("keep_best", "refine_max_new_tokens")}
TEXTS = [
    "Let's think step by step.",
    "Think step by step and check each step.",
    "Answer with a single word.",
    "Compare the two numbers digit by digit.",
    "The capital of France is Paris.",
    "Explain your reasoning, then give the answer.",
]


def _record(text: str, i: int, model: str = "m1", task: str = "t1", run: str = "r1") -> TrajectoryRecord:
    return TrajectoryRecord(
        text=text,
        prompt_ids=[i, i + 1],
        task=task,
        model=model,
        run_id=run,
        step=i,
        source="gradient",
        score=0.1 * i,
        accuracy=1 - 0.1 * i,
    )


def test_retrieval_returns_the_most_similar_prompts_of_the_model(tmp_path):
    store = TrajectoryStore(tmp_path / "store")
    store.add([_record(t, i) for i, t in enumerate(TEXTS)])
    store.add([_record("Let's think step by step!", 99, model="other-model")])
    query = "Let us think about it step by step."
    hits = store.similar(query, model="m1", k=3)
    vectors = get_embedder().embed([query, *TEXTS])
    cosine = [sum(a * b for a, b in zip(vectors[0], v, strict=True)) for v in vectors[1:]]
    expected = [TEXTS[i] for i in sorted(range(len(TEXTS)), key=lambda i: -cosine[i])[:3]]
    assert [h.record.text for h in hits] == expected
    assert all(h.record.model == "m1" for h in hits)
    assert hits[0].similarity == pytest.approx(max(cosine), abs=1e-3)
    assert store.similar(query, model="other-model", k=3)[0].record.text == "Let's think step by step!"


def test_cross_task_retrieval_finds_other_tasks_crowded_out_by_the_own_one(tmp_path):
    store = TrajectoryStore(tmp_path / "store")
    own = [_record(f"Think step by step about part {i} of the question.", i, task="own") for i in range(40)]
    store.add([*own, _record("Reply in French only.", 50, task="other")])
    query = "Think step by step about the question."
    # the 32 nearest prompts are all the task's own: the search has to look past them
    (hit,) = store.similar(query, model="m1", k=1, exclude_task="own")
    assert hit.record.task == "other" and hit.record.text == "Reply in French only."
    assert store.similar(query, model="m1", k=1, task="own")[0].record.task == "own"
    assert store.similar(query, model="m2", k=1) == []


def test_a_store_with_one_collection_for_every_model_is_moved_on_open(tmp_path):
    import chromadb
    from chromadb.config import Settings

    from gradprompt.store.chroma_collections import MODEL_PROMPTS, PROMPTS

    location = tmp_path / "store"
    records = [_record(t, i, model="m1" if i % 2 else "m2") for i, t in enumerate(TEXTS)]
    client = chromadb.PersistentClient(path=str(location), settings=Settings(anonymized_telemetry=False))
    old = client.get_or_create_collection(PROMPTS, configuration={"hnsw": {"space": "cosine"}})
    old.add(
        ids=[r.id for r in records],
        documents=[r.text for r in records],
        embeddings=get_embedder().embed([r.text for r in records]),
        metadatas=[r.metadata() for r in records],
    )
    del old, client

    store = TrajectoryStore(location)
    assert sorted(store.records(), key=lambda r: r.step) == records
    assert store.count() == len(TEXTS)
    assert {h.record.model for h in store.similar(TEXTS[0], model="m2", k=5)} == {"m2"}
    assert store.similar(TEXTS[0], model="m2", k=1)[0].record.text == TEXTS[0]
    client = chromadb.PersistentClient(path=str(location), settings=Settings(anonymized_telemetry=False))
    names = sorted(c.name for c in client.list_collections())
    assert PROMPTS not in names and sum(n.startswith(MODEL_PROMPTS) for n in names) == 2


def test_dev_scores_of_other_splits_do_not_steer_a_run(tmp_path):
    from dataclasses import replace

    store = TrajectoryStore(tmp_path / "store")
    dev = replace(_record("Check each step.", 3), source="dev", score=0.2, accuracy=None, dev_accuracy=0.8)
    store.add([replace(dev, splits="split-A")])
    (same,) = store.similar("Check each step", model="m1", k=1, splits="split-A")
    (other,) = store.similar("Check each step", model="m1", k=1, splits="split-B")
    assert same.record.dev_accuracy == 0.8 and same.record.score == 0.2
    assert other.record.text == "Check each step." and other.record.dev_accuracy is None and other.record.score is None


def test_writes_are_idempotent_and_survive_a_restart(tmp_path):
    location = tmp_path / "store"
    code = textwrap.dedent(f"""
        from gradprompt.store.trajectory import TrajectoryStore
        from gradprompt.store.trajectory_record import TrajectoryRecord
        s = TrajectoryStore({str(location)!r})
        recs = [TrajectoryRecord(text=t, prompt_ids=[i], task="t", model="m", run_id="r", step=i,
                                 source="gradient", score=0.5) for i, t in enumerate({TEXTS!r})]
        s.add(recs)
        s.add(recs)  # a re-run node writes the same records again
        print(s.count())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(len(TEXTS))
    reopened = TrajectoryStore(location)
    assert reopened.count() == len(TEXTS)
    assert sorted(r.text for r in reopened.records(run_id="r")) == sorted(TEXTS)


@pytest.mark.heavy(25)
def test_second_task_retrieves_and_warm_starts_from_the_first(tmp_path):
    store = str(tmp_path / "store")
    first = optimize("builtin:compare", steps=2, store=store, run_dir=tmp_path, refine=False, **SMALL)
    recorded = TrajectoryStore(store).records(run_id=first.run_id)
    assert {r.source for r in recorded} >= {"current", "gradient", "dev"}
    assert sum(r.accepted for r in recorded if r.source != "dev") == 2  # one accepted update per step
    from gradprompt.graph import run_values
    from gradprompt.nodes.session import data_fingerprint, session, splits_fingerprint
    from gradprompt.store.trajectory_record import gradprompt_version

    sess = session(run_values(first.run_id, run_dir=tmp_path)["settings"])
    assert {(r.model, r.data, r.splits, r.version) for r in recorded} == {
        ("smollm2", data_fingerprint(sess), splits_fingerprint(sess), gradprompt_version())
    }
    assert gradprompt_version() != "unknown" and all(r.recorded > 1.7e9 for r in recorded)
    second = optimize(
        "builtin:arithmetic", steps=1, store=store, run_dir=tmp_path, refine=False, warm_start=True, **SMALL
    )
    retrieved = second.history[0]["retrieved"]
    assert any(r["task"] == "compare" for r in retrieved[1:]), retrieved

    warm = run_values(second.run_id, run_dir=tmp_path)["warm_start"]
    assert any(c["task"] == "compare" for c in warm["considered"])
    assert all("dev_accuracy" in c for c in warm["considered"])
    assert warm["rule"] == "race" and warm["seconds"] > 0 and "prompt" in warm["reason"]
    assert all(0 < c["dev_examples"] <= SMALL["dev"] for c in warm["considered"])


def test_prune_by_age_task_model_and_run_and_stats_show_size(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from helpers import call_cli

    monkeypatch.setattr("gradprompt.store.chroma_collections.PAGE", 2)  # reads of many pages, as in a large store

    location = tmp_path / "store"
    store = TrajectoryStore(location)
    old, new = 1_000_000_000.0, 2_000_000_000.0
    store.add([replace(_record(t, i, task="t1"), recorded=old) for i, t in enumerate(TEXTS[:3])])
    store.add([replace(_record(t, i, task="t2", run="r2"), recorded=new) for i, t in enumerate(TEXTS[3:])])
    store.add([_record("An undated record from an older version.", 7, model="m2", task="t3", run="r3")])
    for task in ("t1", "t2", "t3"):
        store.register_task(task, [f"a question of {task}"], "free")
    stats = store.stats()
    assert stats["records"] == 7 and stats["undated"] == 1 and stats["size_on_disk"] > 0
    assert stats["oldest"].startswith("2001-09-09") and stats["newest"].startswith("2033-05-18")

    with pytest.raises(GradpromptError, match="at least one of"):
        store.prune()
    dry = store.prune(before=1_500_000_000.0, dry_run=True)  # the undated record counts as old
    assert dry == {"deleted": 0, "matched": 4, "tasks": {"t1": 3, "t3": 1}, "tasks_forgotten": [], "dry_run": True}
    assert store.count() == 7
    assert store.prune(before=1_500_000_000.0, model="m1")["deleted"] == 3
    assert {r.task for r in store.records()} == {"t2", "t3"}
    offered = [t for t, _ in store.similar_tasks(["a question of t1"], exclude="none", k=5)]
    assert offered and "t1" not in offered  # a task with no records left is not offered for warm starts
    assert store.prune(task="t2", run_id="nope")["deleted"] == 0
    assert store.prune(task="t2", run_id="r2")["deleted"] == 3 and store.count() == 1

    out = call_cli("store", "stats", "--store", str(location), run_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1 records" in out.stdout and "MiB on disk" in out.stdout and "1 undated" in out.stdout
    out = call_cli("store", "prune", "--store", str(location), "--older-than", "1", "--json", run_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["deleted"] == 1 and TrajectoryStore(location).count() == 0
    # bad flags, answered in this process (the same entry point, without a second start-up)
    from gradprompt.graph.cli import main

    for flags, message in ((["--older-than", "soon"], "not a number of days"), ([], "at least one of --older-than")):
        with pytest.raises(SystemExit) as stop:
            main(["store", "prune", "--store", str(location), "--run-dir", str(tmp_path), *flags])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_no_trajectory_means_no_store(tmp_path):
    result = optimize(
        "builtin:compare", steps=1, store=str(tmp_path / "s"), trajectory=False, refine=False, run_dir=tmp_path, **SMALL
    )
    assert result.history[0]["retrieved"] == []
    assert not (tmp_path / "s").exists()


@pytest.fixture
def chroma_server(tmp_path):
    from gradprompt.store.chroma_server import serving

    with serving(tmp_path / "server", port=free_port()) as url:
        yield url


def test_two_processes_share_one_server(chroma_server):
    code = textwrap.dedent("""
        import sys
        from gradprompt.store.trajectory import TrajectoryStore
        from gradprompt.store.trajectory_record import TrajectoryRecord
        s = TrajectoryStore(sys.argv[1])
        for i in range(40):
            s.add([TrajectoryRecord(text=f"prompt {sys.argv[2]} number {i}", prompt_ids=[i], task="t", model="m",
                                    run_id=sys.argv[2], step=i, source="gradient", score=i / 40)])
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, chroma_server, name], stderr=subprocess.PIPE, text=True)
        for name in ("w1", "w2")
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
    store = TrajectoryStore(chroma_server)
    assert store.count() == 80
    assert len(store.records(run_id="w1")) == len(store.records(run_id="w2")) == 40


class ScriptedChat(BaseChatModel):
    """A chat model that always gives the same reply."""

    reply: str
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.calls += 1
        assert "at most" in messages[-1].content
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply))])


def test_refinement_candidates_reach_evaluation(tmp_path):
    good = "Let's think step by step and compare carefully."
    reply = (
        f"<prompt>{good}</prompt>\n<prompt></prompt>\n<prompt>" + " ".join(f"word{i}" for i in range(40)) + "</prompt>"
    )
    chat = ScriptedChat(reply=reply)
    result = optimize(
        "builtin:compare",
        steps=1,
        run_dir=tmp_path,
        store=str(tmp_path / "s"),
        chat_model=chat,
        edit_max=20,
        edit_min=5,
        **SMALL,
    )
    (step,) = result.history
    assert chat.calls == 1
    refined = [c for c in step["candidates"] if c["source"] == "refinement"]
    assert [c["text"] for c in refined] == [good]
    assert refined[0]["score"] is not None
    assert step["rejected"] == {"malformed": 1, "over_limit": 1, "held_before": 0}
    stored = TrajectoryStore(tmp_path / "s").records(run_id=result.run_id, source="refinement")
    assert [r.text for r in stored] == [good]


def test_local_model_refines_through_chat_huggingface(tmp_path, smollm2_rt):
    """The bundled model behind ChatHuggingFace gets the step's meta prompt and its reply is what
    the step records and parses (the 135M model rarely writes a usable prompt; the scripted chat
    model above pins the parsing)."""
    from langchain_core.callbacks import BaseCallbackHandler

    from gradprompt.graph import run_values
    from gradprompt.nodes.chat_model import local_chat_model
    from gradprompt.nodes.refine import parse_candidates

    class Seen(BaseCallbackHandler):
        def __init__(self):
            self.asked, self.replies = [], []

        def on_chat_model_start(self, serialized, messages, **kwargs):
            self.asked.append(messages[0])

        def on_llm_end(self, response, **kwargs):
            self.replies.append(response.generations[0][0].text)

    chat = local_chat_model(smollm2_rt, 24)
    assert type(chat).__name__ == "ChatHuggingFace"
    seen = Seen()
    result = optimize(
        "builtin:compare",
        steps=1,
        run_dir=tmp_path,
        store=str(tmp_path / "s"),
        refine=True,
        refine_max_new_tokens=24,
        chat_model=chat.with_config(callbacks=[seen]),
        **SMALL,
    )
    values = run_values(result.run_id, run_dir=tmp_path)
    step = result.history[0]
    assert values["refine_error"] == "" and step["refine_error"] == ""  # the chat model replied
    assert len(seen.asked) == 1 and step["prompt_text"] in seen.asked[0][-1].content  # the step's meta prompt
    assert seen.replies == [values["refine_reply"]] and values["refine_reply"].strip()
    assert chat.invoke(seen.asked[0]).content == values["refine_reply"]  # the model's own greedy reply
    kept, malformed, _ = parse_candidates(values["refine_reply"], step["prompt_text"], step["edit_limit"])
    assert step["rejected"]["malformed"] == malformed
    refined = [c["text"] for c in step["candidates"] if c["source"] == "refinement"]
    assert all(t in kept or t.strip() in kept for t in refined)


def test_edit_limit_bounds_every_candidate_and_positions_decay(tmp_path):
    from gradprompt.nodes.edit_limit import word_distance

    result = optimize(
        "builtin:compare",
        steps=3,
        run_dir=tmp_path,
        store=str(tmp_path / "s"),
        refine=False,
        moves="tokens",
        edit_positions=3,
        edit_max=6,
        edit_min=1,
        **SMALL,
    )
    limits = [h["edit_limit"] for h in result.history]
    assert limits == sorted(limits, reverse=True) and limits[-1] == 1
    for h in result.history:
        for c in h["candidates"]:
            assert word_distance(c["text"], h["prompt_text"]) <= h["edit_limit"]
    changed = [
        sum(a != b for a, b in zip(c["prompt"], h["prompt"], strict=False))
        for h in result.history[:1]
        for c in h["candidates"]
        if c["source"] == "gradient"
    ]
    assert max(changed) > 1  # the first step edits a window of positions
    from gradprompt.nodes.edit_limit import positions_for_step

    window = positions_for_step(limits[0], 6, 1, 3)
    assert window > 1 and result.history[1]["position"] == window  # the sweep moves past the whole window


def test_store_search_show_and_export_from_the_command_line(tmp_path):
    from helpers import call_cli

    location = str(tmp_path / "store")
    store = TrajectoryStore(location)
    store.add([_record(t, i) for i, t in enumerate(TEXTS)])
    store.add([_record("Reply in French only.", 50, task="t2", run="r2")])
    store.add([_record("Let's think step by step!", 99, model="other-model", run="r3")])

    def cli(*args: str):
        out = call_cli("store", *args, "--store", location, run_dir=tmp_path)
        assert out.returncode == 0, out.stderr
        return out.stdout

    query = "Let us think about it step by step."
    found = json.loads(cli("search", query, "--model", "m1", "-k", "3", "--json"))
    assert [h["text"] for h in found] == [h.record.text for h in store.similar(query, model="m1", k=3)]
    assert all(h["model"] == "m1" for h in found) and found[0]["similarity"] >= found[-1]["similarity"]
    only_t2 = json.loads(cli("search", query, "--model", "m1", "--task", "t2", "--json"))
    assert [h["text"] for h in only_t2] == ["Reply in French only."]
    printed = cli("search", query, "--model", "m1", "-k", "2")
    assert len(printed.splitlines()) == 2 and found[0]["text"] in printed.splitlines()[0]

    shown = json.loads(cli("show", "r1", "--json"))
    assert [r["text"] for r in shown] == TEXTS  # in step order
    missing = call_cli("store", "show", "nope", "--store", location, run_dir=tmp_path)
    assert missing.returncode != 0 and "no records of run 'nope'" in missing.stderr

    exported = json.loads(cli("export", str(tmp_path / "all.jsonl")))
    lines = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert exported["exported"] == len(lines) == len(TEXTS) + 2
    assert sorted(r["text"] for r in lines) == sorted([*TEXTS, "Reply in French only.", "Let's think step by step!"])
    assert not (tmp_path / "all.jsonl.tmp").exists()
