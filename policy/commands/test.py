"""smspolicy test: run the policy test suites of a rules folder (rules/tests/*.yaml)."""
from __future__ import annotations

import sys

NAME = "test"
HELP = "run the YAML policy test suites against a rules folder; list rules no test exercises"


def add_arguments(p) -> None:
    p.add_argument("rules_dir", nargs="?", default="rules", metavar="RULES_DIR",
                   help="the rules folder (default ./rules); suites are read from RULES_DIR/tests")
    p.add_argument("--suites", metavar="DIR", help="read the suites from DIR instead")
    p.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    p.add_argument("--strict", action="store_true",
                   help="rules or limits that no case exercises fail the run (else a warning)")
    p.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    p.add_argument("--segment-db", default="", help="segment database (default: the phone package's)")


def run(args) -> int:
    from ..rules.errors import PolicyError
    from ..tools.suites import run_suites, write_junit
    try:
        report = run_suites(args.rules_dir, args.suites, args.segment_db)
    except PolicyError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"smspolicy test: the rules in {args.rules_dir} are not valid", file=sys.stderr)
        return 2
    out = sys.stdout
    shown = None  # the suite file whose name was printed last
    for r in report.results:
        if not (args.quiet and r.ok) and r.case.file != shown:
            shown = r.case.file
            out.write(f"{shown}\n")
        if r.error is not None:
            out.write(f"  ERROR {r.error}\n")
        elif not r.ok:
            out.write(f"  FAIL  {r.case.name}  ({r.case.where})\n")
            for line in r.diff:
                out.write(f"        {line}\n")
        elif not args.quiet:
            out.write(f"  ok    {r.case.name}\n")
    for error in report.load_errors:
        out.write(f"ERROR {error}\n")
    if args.junit:
        write_junit(report, args.junit, args.strict)

    failed, errors = len(report.failed), len(report.errors) + len(report.load_errors)
    passed = len(report.results) - len(report.failed) - len(report.errors)
    out.write(f"\n{len(report.results)} cases in {len(report.suites)} suites: {passed} passed, "
              f"{failed} failed, {errors} errors ({report.seconds:.2f} s)\n")
    rules, limits = report.uncovered_rules, report.uncovered_limits
    out.write(f"coverage: {len(report.rules) - len(rules)}/{len(report.rules)} rules, "
              f"{len(report.limits) - len(limits)}/{len(report.limits)} limits exercised\n")
    level = "error" if args.strict else "warning"
    if rules:
        out.write(f"{level}: no test exercises rule(s): {', '.join(rules)}\n")
    if limits:
        out.write(f"{level}: no test makes limit(s) refuse a recipient: {', '.join(limits)}\n")
    if not report.ok:
        return 1
    return 1 if args.strict and (rules or limits) else 0
