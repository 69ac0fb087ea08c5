"""The graph served by `langgraph dev`, driven through the LangGraph SDK as Studio drives it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import SMALL_RUN, free_port, serve, stop, venv_tool

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {**SMALL_RUN, "task": "builtin:compare", "steps": 1, "refine": False, "human_approval": True}


@pytest.fixture
def server(tmp_path):
    port = free_port()
    command = [
        venv_tool("langgraph"),
        "dev",
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(ROOT / "langgraph.json"),
    ]
    log = (tmp_path / "server.log").open("w")
    proc = serve(
        command,
        port,
        "langgraph dev",
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"},
    )
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def test_studio_flow_with_an_approval(server):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assistants = client.assistants.search(graph_id="gradprompt")
    assert assistants, "the server should serve the gradprompt graph"
    thread = client.threads.create()
    client.runs.wait(thread["thread_id"], "gradprompt", input={"settings": SETTINGS})
    state = client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["approve"]
    (interrupt,) = [i for task in state["tasks"] for i in task["interrupts"]]
    assert interrupt["value"]["step"] == 0 and interrupt["value"]["proposed"]["text"]
    client.runs.wait(thread["thread_id"], "gradprompt", command={"resume": {"action": "approve"}})
    final = client.threads.get_state(thread["thread_id"])
    assert final["next"] == []
    values = final["values"]
    assert values["history"][0]["accepted"]["by"] == "human"
    assert values["final"]["best"]["dev_accuracy"] is not None
