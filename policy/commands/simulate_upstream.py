"""smspolicy simulate-upstream: a CMPP 2.x/3.0 SMSC (plus an HTTP channel) to forward to.

Faults are injected by markers in the message text (#fault:result=13, #fault:noresp,
#fault:drop, #fault:delay=2, #fault:stat=EXPIRED), by commands on the control port, or at random
rates; see gateway/simulator/faults.py and control.py.
"""
from __future__ import annotations

import asyncio
import logging
import signal

NAME = "simulate-upstream"
HELP = "run the bundled upstream SMSC simulator (CMPP 2.x/3.0, fault injection, MO on request)"


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def add_arguments(p) -> None:
    p.add_argument("--listen", help="CMPP address (default: the simulator_listen setting)")
    p.add_argument("--control", default="127.0.0.1:0",
                   help="control port address (default 127.0.0.1:0, an ephemeral port)")
    p.add_argument("--http-listen", default="",
                   help="also serve the HTTP channel on HOST:PORT (default: off)")
    p.add_argument("--accounts", default="",
                   help="ACCOUNT:SECRET,... accepted at login (default: the channels of --rules)")
    p.add_argument("--rules", help="take accounts from the channels of this rules folder "
                                   "(default without --accounts: the rules_dir setting)")
    p.add_argument("--version", default="0x30",
                   help="highest CMPP version served: 0x20, 0x21 or 0x30 (default 0x30)")
    p.add_argument("--report-delay", type=float, default=0.2, help="seconds before a report")
    p.add_argument("--delivrd-ratio", type=float, default=1.0,
                   help="share of reports that are DELIVRD, the rest UNDELIV (default 1.0)")
    p.add_argument("--seed", type=int, help="seed for report states and random faults")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share of SUBMITs that drop the link")
    p.add_argument("--noresp-rate", type=float, default=0.0, help="share of SUBMITs never answered")
    p.add_argument("--error-rate", type=float, default=0.0,
                   help="share of SUBMITs answered with --error-result")
    p.add_argument("--error-result", type=int, default=8, help="Result of those (default 8)")
    p.add_argument("--gateway-code", type=int, default=7, help="ISMG code inside our Msg_Ids")
    p.add_argument("--log-level", default="INFO")


def _accounts(args, settings) -> dict[str, str]:
    accounts = {}
    rules = args.rules or (None if args.accounts else settings.rules_dir)
    if rules:
        from ..rules.loader import load_policy
        for channel in load_policy(rules).channels.values():
            # an HTTP channel may go without an account: its sign is then md5(secret + time)
            if channel.account or channel.protocol == "http":
                accounts[channel.account] = channel.secret
    for item in filter(None, args.accounts.split(",")):
        account, sep, secret = item.partition(":")
        if not sep or not account:
            raise ValueError(f"--accounts: expected ACCOUNT:SECRET, got {item!r}")
        accounts[account] = secret
    if not accounts:
        raise ValueError("no accounts: give --accounts ACCOUNT:SECRET,... or --rules")
    return accounts


def _names(accounts) -> str:
    return ", ".join(sorted(a or "(HTTP without account)" for a in accounts))


async def _serve(args, settings) -> None:
    from gateway.simulator import FaultPlan, FaultRates, HttpChannel, Simulator
    from gateway.simulator.control import serve_control

    accounts = _accounts(args, settings)
    plan = FaultPlan(FaultRates(args.drop_rate, args.noresp_rate, args.error_rate,
                                args.error_result), args.delivrd_ratio, args.seed)
    sim = Simulator(accounts, version=int(args.version, 0), report_delay=args.report_delay,
                    plan=plan, gateway_code=args.gateway_code)
    host, port = await sim.start(*_address(args.listen or settings.simulator_listen))
    control = await serve_control(sim, *_address(args.control))
    chost, cport = control.sockets[0].getsockname()[:2]
    http = None
    if args.http_listen:
        http = await HttpChannel(accounts, plan).start(*_address(args.http_listen))
        hhost, hport = http.sockets[0].getsockname()[:2]
        print(f"upstream simulator: HTTP channel on http://{hhost}:{hport}/", flush=True)
    # last: the line that says everything is listening
    print(f"upstream simulator: CMPP (up to 0x{sim.version:02x}) on {host}:{port}, "
          f"control on {chost}:{cport}, accounts {_names(accounts)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    control.close()
    if http:
        http.close()
    await sim.close()


def run(args) -> int:
    from ..rules.errors import PolicyError
    from ..settings import SettingsError, load_settings
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
        asyncio.run(_serve(args, settings))
    except (SettingsError, PolicyError, ValueError) as e:
        print(f"smspolicy simulate-upstream: {e}")
        return 2
    except OSError as e:
        print(f"smspolicy simulate-upstream: cannot listen: {e}")
        return 1
    return 0
