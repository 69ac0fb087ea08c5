"""What the CLI prints when nobody watches a terminal: plain progress lines in logs, only JSON under
--json, and no third-party bars or warnings, even on the first load that converts the model."""

from __future__ import annotations

import json
import re

import pytest
from helpers import SMALL_RUN, flags, run_cli

pytestmark = pytest.mark.model

TINY = flags({**SMALL_RUN, "train": 3, "dev": 3, "test": 3, "max_new_tokens": 6})
ESCAPES = re.compile(r"\x1b\[|\r")


@pytest.mark.heavy(35)
def test_json_run_prints_only_json_even_when_it_converts_the_model(tmp_path):
    fresh_cache = {"GRADPROMPT_CACHE_DIR": str(tmp_path / "cache")}  # forces the GGUF conversion
    out = run_cli(
        "optimize", "--task", "builtin:compare", "--steps", "1", *TINY, "--json", run_dir=tmp_path, env=fresh_cache
    )
    assert out.returncode == 0, out.stderr
    assert any((tmp_path / "cache" / "models").iterdir())  # the conversion did happen in this run
    assert out.stderr == ""
    result = json.loads(out.stdout)
    assert result["steps"] == 1 and "final" in result


@pytest.mark.heavy(15)
def test_a_run_in_a_log_prints_one_plain_line_per_step_and_a_summary(tmp_path):
    out = run_cli("optimize", "--task", "builtin:compare", "--steps", "2", *TINY, run_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not ESCAPES.search(out.stderr + out.stdout)  # no bars, no colour codes
    lines = out.stderr.splitlines()
    assert lines[0].startswith("run compare-") and "gradprompt resume" in lines[0]
    steps = [line for line in lines if re.search(r"\] step \d/2: (changed to|kept) ", line)]
    assert len(steps) == 2, out.stderr
    assert all(re.search(r"\(\d+/3 right", line) for line in steps)
    assert lines[-1].endswith("] done")
    assert len(lines) == 6, out.stderr  # run id, loaded, two steps, stopping, done: nothing else
    summary = out.stdout
    assert "initial" in summary and "final" in summary and "95% CI" in summary
    assert re.search(r"(kept the initial prompt|chose the optimized prompt|chose finalist \d+ of \d+)", summary)


def test_output_cut_short_by_its_reader_is_no_traceback(tmp_path):
    """`gradprompt runs list | head -1`: the reader closes the pipe early."""
    import subprocess
    import sys

    from helpers import ENV

    for i in range(400):  # more output than a pipe buffers
        folder = tmp_path / f"r{i}"
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({"run_id": f"r{i}", "settings": {}}))  # listed as damaged
    code = (
        "import sys; sys.argv = ['gradprompt', 'runs', 'list', '--json', '--run-dir', sys.argv[1]]\n"
        "from gradprompt.graph.cli import main; main()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    proc.stdout.read(1)
    proc.stdout.close()  # like `head -c 1`
    err = proc.stderr.read().decode()
    assert proc.wait() == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err
