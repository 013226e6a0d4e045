"""smspolicy replay: re-evaluate logged decisions from their recorded facts and counter values."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from .audit import parse_time

NAME = "replay"
HELP = ("re-evaluate logged decisions: exactly under the rules versions that made them "
        "(any difference is an error), or under a candidate rules folder (a diff)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="decision log files or globs, e.g. 'var/decisions-*.db' (several daemons' logs "
                        "and rotated files may be given together)")
    p.add_argument("--rules", metavar="CANDIDATE_DIR",
                   help="evaluate under this rules folder and print what would change; without it "
                        "every decision is replayed under its own rules version and must be identical")
    p.add_argument("--versions", default=os.path.join("var", "versions.db"), metavar="FILE",
                   help="the version store holding every rules version the daemon loaded (exact replay; "
                        "default var/versions.db)")
    p.add_argument("--since", type=parse_time, help="from this time (inclusive); ISO 8601 or epoch")
    p.add_argument("--until", type=parse_time, help="up to this time (exclusive); ISO 8601 or epoch")
    p.add_argument("--account", help="only this account")
    p.add_argument("--number", help="only decisions to this destination number")
    p.add_argument("--code", help="only decisions with this result code, e.g. MA:0001 or 17")
    p.add_argument("--rule", help="only decisions this rule decided or matched in shadow mode")
    p.add_argument("--version", help="only decisions made under this rules version (or id prefix)")
    p.add_argument("--shadow", action="store_true", help="only decisions where a shadow rule matched")
    p.add_argument("--limit", type=int, help="at most this many decisions")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="write every mismatch / change as CSV")
    out.add_argument("--json", metavar="FILE", help="write the summary and every mismatch / change as JSON")
    p.add_argument("--workers", type=int,
                   help="worker processes (default: up to 2 for slices of 20,000 decisions or more)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--no-cache", action="store_true",
                   help="run the rules engine for every recipient, even when an earlier one had the same facts")


def run(args) -> int:
    import sqlite3

    from ..rules.errors import PolicyError
    from ..tools.replay import CACHE_SIZE
    from ..tools.replay_report import render_diff, render_exact, write_rows
    from ..tools.replay_run import Slice, replay

    if args.rules is None and not os.path.isfile(args.versions):
        print(f"smspolicy replay: no version store at {args.versions}; give the daemon's "
              f"versions.db with --versions (exact replay needs the rules versions)", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("smspolicy replay: --workers must be at least 1", file=sys.stderr)
        return 2
    slice_ = Slice(tuple(args.logs), since=args.since, until=args.until, account=args.account,
                   number=args.number, code=args.code, rule=args.rule, version=args.version,
                   shadow_only=args.shadow, limit=args.limit)
    dest = args.csv or args.json
    with tempfile.TemporaryDirectory(prefix="smspolicy-replay-") as tmp:
        rows = os.path.join(tmp, "rows.jsonl") if dest else None
        try:
            report = replay(slice_, versions=None if args.rules else args.versions,
                            candidate=args.rules, workers=args.workers,
                            progress=not args.no_progress,
                            rows_path=rows, cache_size=0 if args.no_cache else CACHE_SIZE)
        except PolicyError as e:
            for problem in e.problems:
                print(problem, file=sys.stderr)
            print(f"smspolicy replay: the candidate rules in {args.rules} are not valid", file=sys.stderr)
            return 2
        except (FileNotFoundError, ValueError, sqlite3.Error) as e:
            print(f"smspolicy replay: error: {e}", file=sys.stderr)
            return 2
        count = write_rows(rows, dest, "csv" if args.csv else "json", report) if dest else 0
        try:
            sys.stdout.write(render_diff(report) if args.rules else render_exact(report))
            if dest:
                print(f"wrote {count:,} rows to {dest}")
        except BrokenPipeError:   # `| head`; the exit status still tells the outcome
            sys.stderr.close()
    if args.rules is None and not report.ok:
        return 1
    return 0
