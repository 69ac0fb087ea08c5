"""``gradprompt predict``: answer new questions with a run's prompt, read the way the run read
answers; and ``gradprompt runs export``: the prompt for use elsewhere."""

from __future__ import annotations

import argparse
import json
import sys

from gradprompt.graph.commands.common import where

PROMPT_HELP = "final (the run's choice, default), initial (its starting prompt) or any other prompt text"


def _interval(acc: dict) -> str:
    low, high = acc["ci95"]
    return f"{acc['accuracy']:.3f} [95% CI {low:.2f}, {high:.2f}] ({acc['right']} of {acc['n']})"


def cmd_predict(args: argparse.Namespace) -> int:
    from gradprompt.graph.predict import load, predict_file

    predictor = load(args.run_id, args.prompt, device=args.device, **where(args))
    predictions, summary = predict_file(predictor, args.input, args.out, args.question_field, args.answer_field)
    # without --out the rows are the output (one JSON object a line) and the summary goes to stderr
    said = sys.stdout if args.out else sys.stderr
    if args.out is None:
        for p in predictions:
            print(json.dumps(p.to_json()))
    if args.json:
        print(json.dumps(summary, indent=2), file=said)
        return 0
    where_to = f" into {args.out}" if args.out else ""
    print(
        f"answered {summary['rows']} questions{where_to} with the {predictor.which} prompt {predictor.prompt_text!r}",
        file=said,
    )
    counts = ", ".join(f"{a!r} {n}" for a, n in summary["answers"].items())
    print(f"answers given: {counts}", file=said)
    if summary["accuracy"]:
        print(f"accuracy on the gold answers given: {_interval(summary['accuracy'])}", file=said)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gradprompt.graph.export import export
    from gradprompt.graph.predict import load, write_atomically

    text = export(load(args.run_id, args.prompt, **where(args)), args.format)
    if args.out:
        from pathlib import Path

        write_atomically(Path(args.out), [text])
        print(f"wrote the {args.format} export of run {args.run_id} to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    pr = sub.add_parser(
        "predict",
        parents=[common],
        help="answer new questions with a run's prompt, read the way the run read answers",
        usage="%(prog)s RUN_ID --input FILE [--out FILE] [--prompt final|initial|TEXT] [options]",
        description="Answer every question of a JSONL or CSV file with the run's model, prompt, chat layout, "
        "extractor and readout. Writes one JSON object per input (the answer; every allowed answer's "
        "probability for a closed answer set; the reasoning when there is any). With gold answers in the "
        "file, prints the accuracy with its 95% interval.",
    )
    pr.add_argument("run_id", metavar="RUN_ID")
    pr.add_argument("--input", required=True, metavar="FILE", help="questions, as .jsonl or .csv")
    pr.add_argument("--out", metavar="FILE", help="write the answers here (all or nothing); default: stdout")
    pr.add_argument("--prompt", default="final", help=PROMPT_HELP)
    pr.add_argument("--question-field", metavar="F", help="the field holding the question (default: the run's)")
    pr.add_argument("--answer-field", metavar="F", help="the field holding a gold answer (optional)")
    pr.add_argument("--device", help="run the model here instead of the run's device (cpu, cuda, mps)")
    pr.set_defaults(func=cmd_predict)


def add_export_parser(runs_sub, common: argparse.ArgumentParser) -> None:
    ex = runs_sub.add_parser(
        "export",
        parents=[common],
        help="a run's prompt as text, as JSON with its reading, or as a LangChain ChatPromptTemplate",
        description="text: the prompt alone. json: the prompt with everything its reading needs (placement, "
        "chat template, extractor, allowed answers, model) and the run's scores with intervals. langchain: a "
        "ChatPromptTemplate in LangChain's serialisation (langchain_core.load.loads) that lays the prompt out "
        "the way the run measured it.",
    )
    ex.add_argument("run_id", metavar="RUN_ID")
    ex.add_argument("--format", default="text", choices=["text", "json", "langchain"], help="(default text)")
    ex.add_argument("--prompt", default="final", help=PROMPT_HELP)
    ex.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    ex.set_defaults(func=cmd_export)
