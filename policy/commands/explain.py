"""smspolicy explain: the facts, every rule evaluated and the decision for one message."""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

NAME = "explain"
HELP = "show the facts, every rule evaluated (matched or not) and the decision for one message"


def add_arguments(p) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--rules", default="rules", metavar="DIR",
                       help="evaluate locally against this rules folder (default ./rules), with empty counters")
    where.add_argument("--target", metavar="HOST:PORT",
                       help="ask a running daemon (Evaluate with explain=true); it evaluates for real: "
                            "the message is counted against the limits and written to its decision log")
    p.add_argument("--account", required=True, help="the customer account id")
    p.add_argument("--to", action="append", required=True, metavar="NUMBER",
                   help="a destination; repeat for several")
    content = p.add_mutually_exclusive_group()
    content.add_argument("--text", default="", help="the content, encoded for --msg-fmt")
    content.add_argument("--hex", help="the content as raw bytes in hex")
    p.add_argument("--msg-fmt", type=int, default=8, help="CMPP Msg_Fmt (default 8, UCS2)")
    p.add_argument("--src-id", help="CMPP Src_Id (default: the account's access code; required with --target)")
    p.add_argument("--fee-code", default="", help="CMPP FeeCode")
    p.add_argument("--parts", type=int, default=1, help="Pk_total of a long SMS")
    p.add_argument("--at", help="the time to evaluate at, ISO 8601 with offset or epoch seconds "
                                "(default now; local evaluation only)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--tls-ca", metavar="PEM", help="with --target: the daemon's TLS CA certificate")
    p.add_argument("--timeout", type=float, default=10.0, help="with --target: seconds to wait")


def _content(args) -> bytes:
    if args.hex is not None:
        try:
            return bytes.fromhex(args.hex)
        except ValueError:
            raise SystemExit("smspolicy explain: --hex is not hexadecimal bytes") from None
    from ..facts.content import codec_for
    codec = codec_for(args.msg_fmt)
    try:
        return args.text.encode(codec)
    except UnicodeEncodeError:
        raise SystemExit(f"smspolicy explain: the text cannot be written in msg_fmt {args.msg_fmt} "
                         f"({codec}); use --hex") from None


def run(args) -> int:
    from ..tools.explain import render
    try:
        explanation = _remote(args) if args.target else _local(args)
    except _Refused as e:
        print(f"smspolicy explain: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(explanation.to_json(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(render(explanation))
    return 0


class _Refused(Exception):
    pass


def _local(args):
    from ..commands.audit import parse_time
    from ..daemon.pipeline import UnknownAccount
    from ..rules.errors import PolicyError
    from ..submission import Submission
    from ..tools.explain import from_decision
    from ..tools.offline import OfflinePolicy
    try:
        now = parse_time(args.at) if args.at else time.time()
    except argparse.ArgumentTypeError as e:
        raise _Refused(f"--at: {e}") from None
    try:
        offline = OfflinePolicy(args.rules)
    except PolicyError as e:
        raise _Refused(f"the rules in {args.rules} are not valid:\n" + "\n".join(map(str, e.problems))) from None
    with offline:
        account = offline.policy.accounts.get(args.account)
        if account is None:
            raise _Refused(f"no account {args.account!r} in {args.rules}")
        sub = Submission(request_id=f"explain-{uuid.uuid4().hex}", account_id=args.account,
                         frontend_id="smspolicy-explain",
                         src_id=account.access_code if args.src_id is None else args.src_id,
                         destinations=list(args.to), content=_content(args), msg_fmt=args.msg_fmt,
                         fee_code=args.fee_code, parts=args.parts)
        try:
            decision = offline.evaluate(sub, now, explain=True)
        except UnknownAccount as e:
            raise _Refused(str(e)) from None
        return from_decision(decision, offline.policy)


def _remote(args):
    import grpc

    from ..api.v1 import policy_pb2 as pb
    from ..api.v1 import policy_pb2_grpc as pbg
    from ..tools.explain import from_response
    if args.at:
        raise _Refused("--at is for local evaluation; a daemon evaluates at its own clock")
    if args.src_id is None:
        raise _Refused("--src-id is required with --target (the daemon's accounts are not read here)")
    if args.tls_ca:
        with open(args.tls_ca, "rb") as fh:
            channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(fh.read()))
    else:
        channel = grpc.insecure_channel(args.target)
    req = pb.EvaluateRequest(request_id=f"explain-{uuid.uuid4().hex}", account_id=args.account,
                             frontend_id="smspolicy-explain", access_mode=pb.ACCESS_MODE_CMPP,
                             src_id=args.src_id, destinations=list(args.to), content=_content(args),
                             msg_fmt=args.msg_fmt, fee_code=args.fee_code, parts=args.parts,
                             explain=True)
    try:
        with channel:
            resp = pbg.PolicyServiceStub(channel).Evaluate(req, timeout=args.timeout)
    except grpc.RpcError as e:
        raise _Refused(f"{args.target}: {e.code().name}: {e.details()}") from None
    return from_response(resp)
