"""`smspolicy audit verify|query`: check decision logs for tampering, find decisions."""
from __future__ import annotations

import argparse
import datetime
import json
import sqlite3
import sys

from ..audit.query import query
from ..audit.verify import verify

NAME = "audit"
HELP = "verify and query decision logs"

_LOGS_HELP = ("decision log files or globs, e.g. 'var/decisions*.db'; the logs of several daemons "
              "and all rotated files of each may be given together")


def parse_time(text: str) -> float:
    """Epoch seconds, or ISO 8601; an ISO time without offset is the machine's local time."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch seconds nor ISO 8601 (e.g. 2024-05-01T08:00:00+08:00)") from None
    return moment.astimezone().timestamp() if moment.tzinfo is None else moment.timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    v = sub.add_parser("verify", help="check hash chains; exit 1 with the first problem",
                       description="Recompute the hash chain of every given log (grouped by chain, "
                                   "rotated files in order) and report the first edited, inserted, "
                                   "deleted or reordered record, or a missing file.")
    v.add_argument("logs", nargs="+", metavar="LOG", help=_LOGS_HELP)
    q = sub.add_parser("query", help="find decisions (table, or JSON lines with --json)",
                       description="Decisions matching every given filter, oldest first.")
    q.add_argument("logs", nargs="+", metavar="LOG", help=_LOGS_HELP)
    q.add_argument("--account", help="account id")
    q.add_argument("--number", help="destination number (86/+86/0086 prefix optional)")
    q.add_argument("--code", help="a result code, e.g. MA:0001 or 17")
    q.add_argument("--rule", help="a rule id (deciding, or matching in shadow mode)")
    q.add_argument("--since", type=parse_time, help="from this time (inclusive); ISO 8601 or epoch")
    q.add_argument("--until", type=parse_time, help="up to this time (exclusive); ISO 8601 or epoch")
    q.add_argument("--version", help="rules version id, or a prefix of it")
    q.add_argument("--shadow", action="store_true", help="only decisions where a shadow rule matched")
    q.add_argument("--limit", type=int, help="at most this many decisions")
    q.add_argument("--json", action="store_true", help="one JSON object per line, every field")


def run(args: argparse.Namespace) -> int:
    try:
        if args.audit_command == "verify":
            return _verify(args)
        return _query(args)
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"smspolicy audit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # `| head`
        sys.stderr.close()
        return 0


def _verify(args) -> int:
    report = verify(args.logs)
    for note in report.notes:
        print(f"note: {note}")
    for chain in report.chains:
        print(f"chain {chain.chain_id[:12]}: {len(chain.files)} file(s), seq {chain.first_seq}-{chain.last_seq}, "
              f"head {chain.last_hash}")
    if report.ok:
        print(f"OK: {report.records} records in {len(report.files)} file(s), {len(report.chains)} chain(s)")
        return 0
    for problem in report.problems:
        print(f"FAILED: {problem}")
    print(f"{report.records} records verified before the first problem")
    return 1


_TABLE = [("TIME", 25), ("SEQ", 8), ("ACCOUNT", 10), ("SRC", 14), ("DESTINATIONS", 17),
          ("CODES", 20), ("RULES", 24), ("SHADOW", 16), ("VERSION", 12)]


def _query(args) -> int:
    records = query(args.logs, account=args.account, number=args.number, code=args.code,
                    rule=args.rule, since=args.since, until=args.until, version=args.version,
                    shadow_only=args.shadow, limit=args.limit)
    out = sys.stdout
    if args.json:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return 0
    out.write(_line([name for name, _ in _TABLE]))
    for r in records:
        dests = r["destinations"] or []
        shown = (dests[0] + (f" +{len(dests) - 1}" if len(dests) > 1 else "")) if dests else ""
        when = datetime.datetime.fromtimestamp(r["ts"]).astimezone().isoformat(timespec="seconds")
        out.write(_line([when, str(r["seq"]), r["account_id"] or "", r["src_id"] or "", shown,
                         r["codes"], r["rules"], r["shadow_rules"], (r["rules_version"] or "")[:12]]))
    return 0


def _line(cells: list[str]) -> str:
    parts = []
    for (_, width), cell in zip(_TABLE, cells):
        parts.append(cell if len(cell) <= width else cell[:width - 1] + "…")
    return "  ".join(p.ljust(w) for p, (_, w) in zip(parts, _TABLE)).rstrip() + "\n"
