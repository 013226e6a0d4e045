"""smspolicy check: validate a rules folder the way the daemon will load it."""
from __future__ import annotations

import sys

NAME = "check"
HELP = "validate a rules folder: print every problem with file:line:column, or a summary"


def add_arguments(p) -> None:
    p.add_argument("rules_dir", nargs="?", default="rules", metavar="RULES_DIR",
                   help="the rules folder (default ./rules)")


def run(args) -> int:
    from ..rules.errors import PolicyError
    from ..rules.loader import load_policy
    try:
        policy = load_policy(args.rules_dir)
    except PolicyError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 1
    stages = {"submit": 0, "recipient": 0}
    for rule in policy.rules:
        stages[rule.stage] += 1
    shadow = sum(rule.mode == "shadow" for rule in policy.rules)
    print(f"OK: {len(policy.rules)} rules ({stages['submit']} submit, {stages['recipient']} recipient, "
          f"{shadow} shadow), {len(policy.accounts)} accounts, {len(policy.channels)} channels, "
          f"{len(policy.lists)} lists, {len(policy.keyword_groups)} keyword groups, "
          f"{len(policy.templates)} templates, {len(policy.limits)} limits, version {policy.version}")
    return 0
