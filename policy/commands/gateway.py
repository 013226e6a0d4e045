"""smspolicy gateway: run the customer-facing CMPP front-end beside the policy daemon."""
from __future__ import annotations

import asyncio
import logging
import signal

from ..settings import SettingsError, load_settings

NAME = "gateway"
HELP = "run the CMPP front-end (customers log in and submit here; the daemon decides)"


def add_arguments(p) -> None:
    p.add_argument("--listen", dest="gateway_listen", help="CMPP address (default 127.0.0.1:7890)")
    p.add_argument("--policy", dest="policy_target",
                   help="the policy daemon's gRPC address (default 127.0.0.1:50051)")
    p.add_argument("--data", dest="data_dir", help="data folder; the store is gateway.db there")
    p.add_argument("--gateway-id", dest="gateway_id", help="names this front-end in request ids")
    p.add_argument("--log-level", default="INFO")


def run(args) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: getattr(args, k) for k in ("gateway_listen", "policy_target", "data_dir",
                                                 "gateway_id")}
    try:
        settings = load_settings(args.config, overrides=overrides)
    except SettingsError as e:
        print(f"smspolicy: {e}")
        return 2
    return asyncio.run(_serve(settings))


async def _serve(settings) -> int:
    from gateway.frontend import FrontEnd
    fe = FrontEnd(settings)
    try:
        host, port = await fe.start()
    except OSError as e:
        print(f"smspolicy: cannot listen on {settings.gateway_listen}: {e.strerror or e}")
        return 1
    print(f"CMPP gateway listening on {host}:{port} (policy daemon {settings.policy_target})",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fe.stop()
    return 0
