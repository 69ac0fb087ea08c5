"""How long a command that loads no model takes to answer: ``gradprompt --help``, ``runs list`` and
``runs show``, each timed as a fresh process against the same command with the whole Python API
imported first (what every command paid when the package loaded torch, transformers and the nodes
up front). Commands alternate with their baseline, so a busy moment hits both.

    python benchmarks/cli_startup.py [--run-dir DIR] [--repeats 7] [--out benchmarks/results/cli_startup]

Without ``--run-dir`` the runs commands read an empty folder (``runs show`` needs a run and is left
out); with it, ``runs show`` reads the folder's first run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EAGER = "import gradprompt.graph.api; from gradprompt.graph.cli import main; main()"


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return took


def _first_run(run_dir: Path) -> str | None:
    listed = subprocess.run(
        [sys.executable, "-m", "gradprompt.graph.cli", "runs", "list", "--json", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    runs = json.loads(listed.stdout)
    return runs[0]["run_id"] if runs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="a runs folder to list and show (default: an empty one)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_startup")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be 1 or more (got {args.repeats})")
    with tempfile.TemporaryDirectory() as empty:
        run_dir = args.run_dir or Path(empty)
        commands = {"--help": ["--help"], "runs list": ["runs", "list", "--run-dir", str(run_dir)]}
        run_id = _first_run(run_dir) if args.run_dir else None
        if run_id:
            commands["runs show"] = ["runs", "show", run_id, "--run-dir", str(run_dir)]
        times: dict[str, dict[str, list[float]]] = {name: {"now": [], "eager": []} for name in commands}
        for _ in range(args.repeats):
            for name, cli_args in commands.items():
                times[name]["now"].append(_seconds([sys.executable, "-m", "gradprompt.graph.cli", *cli_args]))
                times[name]["eager"].append(_seconds([sys.executable, "-c", EAGER, *cli_args]))
    rows = {
        name: {
            "median_s": round(statistics.median(t["now"]), 3),
            "eager_median_s": round(statistics.median(t["eager"]), 3),
            "speedup": round(statistics.median(t["eager"]) / statistics.median(t["now"]), 1),
            "repeats": args.repeats,
        }
        for name, t in times.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"commands": rows, "cpus": os.cpu_count()}, indent=2) + "\n")
    lines = [
        f"Command start-up, median of {args.repeats} fresh processes each ({os.cpu_count()} CPUs)",
        "",
        "| command | now (s) | whole API imported first (s) | speed-up |",
        "|---|---|---|---|",
        *(
            f"| `{name}` | {r['median_s']:.2f} | {r['eager_median_s']:.2f} | {r['speedup']:.1f}x |"
            for name, r in rows.items()
        ),
    ]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
