"""smspolicy forward: run the forwarder (outbox -> upstream channels, reports and MO back)."""
from __future__ import annotations

import asyncio
import logging
import signal

from ._common import settings_and_policy

NAME = "forward"
HELP = "run the forwarder: send accepted messages to the upstream channels of the rules"


def add_arguments(p) -> None:
    p.add_argument("--rules", dest="rules_dir", help="rules folder with the channels (default ./rules)")
    p.add_argument("--data", dest="data_dir", help="data folder holding gateway.db (default ./var)")
    p.add_argument("--log-level", default="INFO")


async def _serve(settings, policy) -> int:
    from gateway.forwarder import STORE_FILE, Forwarder
    forwarder = Forwarder(settings, policy)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, forwarder.stop)
    described = ", ".join(
        f"{c.id} ({c.protocol} {c.http_url if c.protocol == 'http' else f'{c.host}:{c.port}'})"
        for c in policy.channels.values())
    pushing = ", ".join(a.id for a in forwarder.pusher.accounts) or "none"
    print(f"forwarder: store {settings.path(STORE_FILE)}, channels {described}; "
          f"report push for accounts {pushing}", flush=True)
    await forwarder.run()
    return 0


def run(args) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loaded = settings_and_policy(args, "forward")
    if isinstance(loaded, int):
        return loaded
    settings, policy = loaded
    return asyncio.run(_serve(settings, policy))
