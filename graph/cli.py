"""``gradprompt``: optimize, resume, inspect, fork and evaluate from the command line.

Every run is checkpointed after each node; Ctrl-C stops at the next node boundary and prints the
command that continues the run. Each verb lives in its own module under :mod:`graph.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys

from gradprompt.errors import GradpromptError
from gradprompt.graph.commands import approve, evaluate, optimize, predict, report, runs, store, sweep
from gradprompt.graph.commands.common import common_flags

COMMANDS = (optimize, runs, approve, evaluate, predict, report, sweep, store)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradprompt",
        description="Find the instruction that makes your local model answer better: gradients over its own "
        "reasoning (GReaTer) in a checkpointed LangGraph run.",
        epilog="Start with: gradprompt optimize --task builtin:compare --steps 4",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_flags()
    for command in COMMANDS:
        command.add_parsers(sub, common)
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    # Third-party bars and warnings have no place in our output; progress is ours (see _progress).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from gradprompt.nodes.runtime.progress_bars import quiet

    try:
        with quiet(getattr(args, "json", False)):
            code = args.func(args)
    except GradpromptError as exc:
        print(f"gradprompt: {exc}", file=sys.stderr)
        code = {"RunStopped": 130, "ApprovalPending": 3}.get(type(exc).__name__, 2)
    except KeyboardInterrupt:
        print("gradprompt: interrupted; `gradprompt runs list` shows the run to resume", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # the reader went away (`gradprompt runs show ID | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    raise SystemExit(code)


if __name__ == "__main__":
    main()
