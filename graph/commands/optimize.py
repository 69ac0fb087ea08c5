"""``gradprompt optimize`` and ``gradprompt resume``: start a run, or continue one, with progress."""

from __future__ import annotations

import argparse
import sys

from gradprompt.graph.commands.common import approver, print_result, progress, where
from gradprompt.graph.commands.flags import OPTIMIZE_FIELDS, add_settings_flags, settings_from

EXAMPLES = """examples:
  # quick on a CPU (a few minutes): four steps of a built-in task on the bundled model
  gradprompt optimize --task builtin:compare --steps 4 --train 16 --dev 40 --test 40 \\
      --max-new-tokens 32

  # classification read directly (no reasoning), approving each update at the terminal
  gradprompt optimize --task jsonl:reviews.jsonl --question-field text --answer-field label \\
      --max-new-tokens 0 --steps 20 --dev 200 --approve

  # the paper's setting on a GPU, stopping after 20 minutes
  gradprompt optimize --task bbh:data/navigate.json --model ./Llama-3-8B-Instruct \\
      --device cuda --max-new-tokens 1024 --steps 125 --time-budget 20m
"""


def cmd_optimize(args: argparse.Namespace) -> int:
    from gradprompt.graph.api import make_settings, start_run

    if args.approve:
        args.human_approval = True
    settings = make_settings(args.task, **settings_from(args))
    display = progress(args)
    with display:
        result = start_run(
            settings,
            **where(args),
            run_id=args.run_id,
            on_update=display.update,
            on_start=None
            if args.json
            else (lambda rid: print(f"run {rid} (resume with `gradprompt resume {rid}`)", file=sys.stderr)),
            approver=approver(args),
        )
    print_result(result, args.json)
    return 0


def resume_and_report(args: argparse.Namespace, run_id: str) -> int:
    from gradprompt.graph.api import resume

    display = progress(args)
    with display:
        result = resume(run_id, **where(args), on_update=display.update, approver=approver(args))
    print_result(result, args.json)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    return resume_and_report(args, args.run_id)


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    opt = sub.add_parser(
        "optimize",
        parents=[common],
        help="optimize a prompt for a task",
        usage="%(prog)s --task TASK [options]",
        description="Optimize a prompt for a task and report baseline vs optimized accuracy.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = opt.add_argument_group("what to optimize")
    what.add_argument(
        "--task",
        required=True,
        help="builtin:NAME (arithmetic, compare, category), bbh:FILE.json, gsm8k:FILE_OR_DIR, "
        "folio:FILE_OR_DIR, jsonl:FILE or csv:FILE",
    )
    what.add_argument("--run-id", help="name the run (default: task name + time)")
    what.add_argument(
        "--approve",
        action="store_true",
        help="a person approves, rejects or edits every update (asked at the terminal; without one "
        "the run waits for `gradprompt approve`)",
    )
    add_settings_flags(opt, OPTIMIZE_FIELDS)
    opt.set_defaults(func=cmd_optimize)

    res = sub.add_parser(
        "resume",
        parents=[common],
        help="continue a stopped or killed run",
        description="Continue a run from its last checkpoint (a finished run prints its result). A run waiting "
        "for approval asks at the terminal, or applies the answer given with `gradprompt approve`.",
    )
    res.add_argument("run_id")
    res.set_defaults(func=cmd_resume)
