"""smspolicy serve: run the policy daemon."""
from __future__ import annotations

import logging

from ..settings import SettingsError, load_settings

NAME = "serve"
HELP = "run the gRPC policy daemon on the rules folder"


def add_arguments(p) -> None:
    p.add_argument("--listen", help="gRPC address (default 127.0.0.1:50051)")
    p.add_argument("--rules", dest="rules_dir", help="rules folder (default ./rules)")
    p.add_argument("--data", dest="data_dir", help="data folder for SQLite files (default ./var)")
    p.add_argument("--counters", dest="counters_backend", choices=("sqlite", "redis", "none"))
    p.add_argument("--redis-url")
    p.add_argument("--daemon-id")
    p.add_argument("--metrics-listen")
    p.add_argument("--log-level", default="INFO")


def run(args) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: getattr(args, k) for k in ("listen", "rules_dir", "data_dir", "counters_backend",
                                                 "redis_url", "daemon_id", "metrics_listen")}
    try:
        settings = load_settings(args.config, overrides=overrides)
    except SettingsError as e:
        print(f"smspolicy: {e}")
        return 2
    from ..counters import CounterFileBusy
    from ..daemon.server import Daemon
    from ..engine import RuleCompileError
    from ..rules.errors import PolicyError
    try:
        daemon = Daemon(settings)
    except PolicyError as e:
        for problem in e.problems:
            print(problem)
        print(f"smspolicy: the rules in {settings.rules_dir} are not valid; not starting")
        return 1
    except RuleCompileError as e:  # `check` should have caught it; say what, never a traceback
        for problem in e.problems:
            print(problem)
        print(f"smspolicy: the rules engine cannot run the rules in {settings.rules_dir}; not starting")
        return 1
    except CounterFileBusy as e:  # another daemon owns counters.db: say who, do not start
        print(f"smspolicy: {e}; not starting")
        return 1
    except ConnectionError as e:  # the Redis the daemons share does not answer
        print(f"smspolicy: {e}; not starting")
        return 1
    daemon.install_signal_handlers()
    daemon.start()
    print(f"policy daemon listening on {settings.listen} (rules {daemon.runtime.current().version})", flush=True)
    try:
        daemon.wait()
    finally:
        daemon.stop()
    return 0
