"""smspolicy http-api: the HTTP customer API (docs/http-api.md) beside the policy daemon."""
from __future__ import annotations

import asyncio
import logging
import signal

from ..settings import SettingsError, load_settings

NAME = "http-api"
HELP = "run the HTTP customer API (signed JSON requests: submit, p2p submit, reports, balance)"


def add_arguments(p) -> None:
    p.add_argument("--listen", dest="http_listen", help="HTTP address (default 127.0.0.1:8080)")
    p.add_argument("--policy", dest="policy_target",
                   help="the policy daemon's gRPC address (default 127.0.0.1:50051)")
    p.add_argument("--data", dest="data_dir", help="data folder; the store is gateway.db there")
    p.add_argument("--gateway-code", type=int, default=None,
                   help="ISMG code inside the Msg_Ids this API issues; must differ from every "
                        "CMPP front-end's (default: the gateway_code setting + 1)")
    p.add_argument("--log-level", default="INFO")


def run(args) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: getattr(args, k) for k in ("http_listen", "policy_target", "data_dir")}
    try:
        settings = load_settings(args.config, overrides=overrides)
    except SettingsError as e:
        print(f"smspolicy http-api: {e}")
        return 2
    code = settings.gateway_code + 1 if args.gateway_code is None else args.gateway_code
    if not 0 <= code < 1 << 22:
        print(f"smspolicy http-api: --gateway-code {code} does not fit 22 bits")
        return 2
    return asyncio.run(_serve(settings, code))


async def _serve(settings, gateway_code: int) -> int:
    from gateway.http_api import ApiServer
    server = ApiServer(settings, gateway_code)
    try:
        host, port = await server.start()
    except OSError as e:
        print(f"smspolicy http-api: cannot listen on {settings.http_listen}: {e.strerror or e}")
        await server.stop()
        return 1
    print(f"HTTP API listening on http://{host}:{port}/ (policy daemon {settings.policy_target}, "
          f"Msg_Id gateway code {gateway_code})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0
