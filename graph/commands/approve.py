"""``gradprompt approve``: answer a run waiting for approval from any shell."""

from __future__ import annotations

import argparse
import json

from gradprompt.graph.commands.common import where


def cmd_approve(args: argparse.Namespace) -> int:
    from gradprompt.graph.approval_protocol import approve

    answer = approve(args.run_id, args.action, args.prompt, **where(args))
    if args.json:
        print(json.dumps(answer))
    else:
        print(
            f"{args.action} recorded for step {answer['step']} of {args.run_id}; continue with "
            f"`gradprompt resume {args.run_id}`"
        )
    return 0


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    ap = sub.add_parser("approve", parents=[common], help="answer a run waiting for approval (then `resume`)")
    ap.add_argument("run_id")
    ap.add_argument("--action", required=True, choices=["approve", "reject", "edit"])
    ap.add_argument("--prompt", help="the prompt to use instead, with --action edit")
    ap.set_defaults(func=cmd_approve)
