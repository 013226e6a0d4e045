"""smspolicy review: the manual audit queue (messages held by audit mode "manual").

    smspolicy review list                 held messages, oldest first
    smspolicy review show ID              one held message in full
    smspolicy review approve ID [ID...]   forward it (once: a second approve finds nothing held)
    smspolicy review reject ID [ID...]    refuse it: the customer gets MA:0006

The queue is the gateway store (held rows of its outbox), so it survives restarts and is shared
by every front-end and forwarder on the data folder.
"""
from __future__ import annotations

import os
from datetime import datetime

NAME = "review"
HELP = "list, show, approve or reject messages held for manual audit"


def add_arguments(p) -> None:
    p.add_argument("--data", dest="data_dir", help="data folder holding gateway.db (default ./var)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="held messages, oldest first")
    listing.add_argument("--limit", type=int, default=100)
    sub.add_parser("show", help="one held message in full").add_argument("id", type=int)
    for action, text in (("approve", "forward the messages"),
                         ("reject", "refuse the messages (MA:0006 to the customer)")):
        sub.add_parser(action, help=text).add_argument("ids", type=int, nargs="+", metavar="ID")


def _text(row) -> str:
    from gateway.cmpp import decode_content
    return decode_content(row.content, row.msg_fmt)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def run(args) -> int:
    from gateway.forwarder import STORE_FILE
    from gateway.store import GatewayStore

    from ..settings import SettingsError, load_settings
    try:
        settings = load_settings(args.config, overrides={"data_dir": args.data_dir})
    except SettingsError as e:
        print(f"smspolicy review: {e}")
        return 2
    path = settings.path(STORE_FILE)
    if not os.path.exists(path):
        print(f"smspolicy review: no gateway store at {path} (is --data right?)")
        return 2
    store = GatewayStore(path)
    try:
        return _ACTIONS[args.action](store, args)
    finally:
        store.close()


def _list(store, args) -> int:
    rows = store.held_messages(args.limit)
    if not rows:
        print("no messages held for review")
        return 0
    print(f"{'id':>6}  {'held since':19}  {'account':8} {'recipient':13} {'channel':14} content")
    for r in rows:
        text = _text(r).replace("\n", " ")
        print(f"{r.id:>6}  {_when(r.submit_time)}  {r.account_id:8} {r.dest:13} "
              f"{r.channel_id:14} {text[:40]}{'…' if len(text) > 40 else ''}")
    print(f"{len(rows)} held")
    return 0


def _show(store, args) -> int:
    row = next((r for r in store.held_messages(1_000_000) if r.id == args.id), None)
    if row is None:
        print(f"smspolicy review: message {args.id} is not held (already approved or rejected, "
              f"or no such id)")
        return 1
    for label, value in (("id", row.id), ("account", row.account_id), ("recipient", row.dest),
                         ("source (Src_Id)", row.src_id), ("channel", row.channel_id),
                         ("customer Msg_Id", " ".join(map(str, row.msg_ids))),
                         ("submitted", _when(row.submit_time)), ("decision", row.decision_id),
                         ("request", row.request_id), ("segments", row.segments),
                         ("Msg_Fmt", row.msg_fmt), ("content", _text(row))):
        print(f"{label:>16}: {value}")
    return 0


def _decide(method: str, done: str):
    def act(store, args) -> int:
        failed = 0
        for outbox_id in args.ids:
            if getattr(store, method)(outbox_id):
                print(f"{outbox_id}: {done}")
            else:
                failed += 1
                print(f"{outbox_id}: not held (already approved or rejected, or no such id)")
        return 1 if failed else 0
    return act


_ACTIONS = {
    "list": _list,
    "show": _show,
    "approve": _decide("approve", "approved, will be forwarded"),
    "reject": _decide("reject_held", "rejected, the customer gets MA:0006"),
}
