"""The graph served by `langgraph dev`, driven through the LangGraph SDK as Studio drives it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "task": "builtin:compare",
    "steps": 1,
    "train": 8,
    "dev": 4,
    "test": 4,
    "batch_size": 2,
    "max_new_tokens": 8,
    "n_evaluate": 2,
    "top_k": 5,
    "refine": False,
    "human_approval": True,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    exe = shutil.which("langgraph") or str(Path(sys.executable).parent / "langgraph")
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            exe,
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(ROOT / "langgraph.json"),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    import httpx

    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
    else:
        proc.kill()
        pytest.fail("langgraph dev did not start")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


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
