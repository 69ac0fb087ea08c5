"""``gradprompt store``: look into, prune and export the trajectory store runs share."""

from __future__ import annotations

import argparse
import json
import time

from gradprompt.errors import GradpromptError


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (e.g. 30 or 0.5)")
    return days


def cmd_store(args: argparse.Namespace) -> int:
    from gradprompt.store.trajectory import TrajectoryStore

    store = TrajectoryStore(args.store, args.embeddings)
    if args.store_command == "stats":
        out = store.stats()
    elif args.store_command == "search":
        hits = store.similar(args.text, model=args.model, k=args.k, task=args.task)
        out = [{**h.record.to_json(), "similarity": round(h.similarity, 4)} for h in hits]
    elif args.store_command == "show":
        out = [r.to_json() for r in sorted(store.records(run_id=args.run_id), key=lambda r: (r.step, r.source))]
        if not out:
            raise GradpromptError(f"the store at {store.location} has no records of run {args.run_id!r}")
    elif args.store_command == "prune":
        before = None if args.older_than is None else time.time() - 86400 * args.older_than
        out = store.prune(before=before, task=args.task, model=args.model, run_id=args.run, dry_run=args.dry_run)
    else:
        n = store.export(args.file)
        out = {"exported": n, "file": args.file}
    if args.json or args.store_command == "export":
        print(json.dumps(out, indent=2))
    elif args.store_command == "stats":
        size = "size unknown (a server)" if out["size_on_disk"] is None else f"{out['size_on_disk'] / 2**20:.1f} MiB"
        print(
            f"{out['records']} records ({out['distinct_prompts']} distinct prompts) from {out['runs']} runs "
            f"in {out['location']}, {size} on disk"
        )
        dated = [f"recorded {out['oldest']} to {out['newest']}"] if out["oldest"] else []
        if dated or out["undated"]:
            print("  " + ", ".join(dated + [f"{out['undated']} undated"] * bool(out["undated"])))
        for key in ("tasks", "models", "sources", "versions"):
            print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in out[key].items()))
    elif args.store_command == "prune":
        verb = "would delete" if out["dry_run"] else "deleted"
        per_task = ", ".join(f"{k} {v}" for k, v in out["tasks"].items())
        print(f"{verb} {out['matched']} records" + (f" ({per_task})" if per_task else ""))
    else:
        for r in out:
            sim = f"sim {r['similarity']:.3f} " if "similarity" in r else ""
            value = r.get("accuracy") if r.get("accuracy") is not None else r.get("dev_accuracy")
            acc = "-" if value is None else f"{value:.2f}"
            mark = "*" if r.get("accepted") else " "
            print(f"{mark}{sim}step {r['step']:>3} {r['source']:10s} acc {acc:>4s} {r['task']}: {r['text']!r}")
    return 0


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    st = sub.add_parser("store", help="look into the trajectory store shared by runs")
    st_sub = st.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    store_common = argparse.ArgumentParser(add_help=False, parents=[common])
    store_common.add_argument("--store", help="store folder or http://HOST:PORT (default $GRADPROMPT_HOME/trajectory)")
    store_common.add_argument(
        "--embeddings",
        default="minilm",
        metavar="MODEL",
        help="the embedding model the store was filled with: minilm (bundled) or a sentence-transformers folder",
    )
    st_sub.add_parser(
        "stats", parents=[store_common], help="size on disk, dates, records per task, model, source and version"
    )
    search = st_sub.add_parser("search", parents=[store_common], help="prompts most similar to TEXT")
    search.add_argument("text")
    search.add_argument("--model", default="smollm2", help="only prompts recorded for this model")
    search.add_argument("--task", help="only prompts of this task (its name, e.g. navigate)")
    search.add_argument("-k", type=int, default=10, help="how many")
    show_store = st_sub.add_parser("show", parents=[store_common], help="every record of one run")
    show_store.add_argument("run_id")
    prune = st_sub.add_parser(
        "prune", parents=[store_common], help="delete records by age, task, model or run (all given must match)"
    )
    prune.add_argument("--older-than", type=_positive_days, metavar="DAYS", help="recorded more than DAYS days ago")
    prune.add_argument("--task", help="of this task (its name, e.g. navigate)")
    prune.add_argument("--model", help="recorded for this model")
    prune.add_argument("--run", help="written by this run id")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    export = st_sub.add_parser("export", parents=[store_common], help="write every record to a JSONL file")
    export.add_argument("file")
    st.set_defaults(func=cmd_store)
