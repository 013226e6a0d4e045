"""smspolicy balance: query or top up a prepaid balance on a running daemon (AdminService)."""
from __future__ import annotations

import grpc

from ..settings import load_settings

NAME = "balance"
HELP = "query or top up an account's prepaid balance (fen) through the daemon's admin API"


def add_arguments(p) -> None:
    p.add_argument("account", help="account id")
    p.add_argument("--top-up", type=int, default=None, metavar="FEN",
                   help="add this many fen (negative to correct downwards)")
    p.add_argument("--target", help="daemon address (default: settings listen)")
    p.add_argument("--token", help="admin token (default: settings admin_token)")


def run(args) -> int:
    from ..api.v1 import policy_pb2 as pb
    from ..api.v1 import policy_pb2_grpc as pbg
    settings = load_settings(args.config)
    token = args.token if args.token is not None else settings.admin_token
    meta = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(args.target or settings.listen) as channel:
        admin = pbg.AdminServiceStub(channel)
        try:
            if args.top_up is not None:
                resp = admin.TopUp(pb.TopUpRequest(account_id=args.account, amount=args.top_up),
                                   metadata=meta, timeout=10)
            else:
                resp = admin.GetBalance(pb.BalanceRequest(account_id=args.account), metadata=meta, timeout=10)
        except grpc.RpcError as e:
            print(f"smspolicy balance: {e.code().name}: {e.details()}")
            return 1
    print(f"{resp.account_id} {resp.billing} balance {resp.balance} fen")
    return 0
