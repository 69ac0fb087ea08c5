"""``gradprompt report``: a run's report as one HTML file or Markdown with pictures."""

from __future__ import annotations

import argparse
import json

from gradprompt.graph.commands.common import where


def cmd_report(args: argparse.Namespace) -> int:
    from gradprompt.graph.api import report

    path = report(args.run_id, out=args.out, fmt=args.format, score_dev=args.score_dev, **where(args))
    print(json.dumps({"report": str(path)}) if args.json else f"report written to {path}")
    return 0


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    rep = sub.add_parser(
        "report", parents=[common], help="write a run's report: scores, prompt diffs, sources, timings"
    )
    rep.add_argument("run_id")
    rep.add_argument("--out", help="folder for the report (default: the run's folder)")
    rep.add_argument("--format", choices=["html", "md"], default="html", help="one HTML file, or Markdown + PNGs")
    rep.add_argument("--score-dev", action="store_true", help="also score every step's prompt on dev (loads the model)")
    rep.set_defaults(func=cmd_report)
