"""smspolicy demo: a customer's session against a running stack (`smspolicy up`).

Logs in to the front-end as the demo account 900001 / 888888 and sends sample traffic: an
accepted message with the registered signature, a blacklisted number, a keyword hit, a group
send, a long message, and a limit breach by repetition. For each message it prints the
SUBMIT_RESP and every recipient's final status report (the daemon's decision when it refused,
else the upstream's final state).
"""
from __future__ import annotations

import random
import socket
import time
from datetime import datetime
from zoneinfo import ZoneInfo

NAME = "demo"
HELP = "send sample traffic as account 900001 to a running stack and print each outcome"

SIGNATURE = "【云信科技】"
# The report codes the demo can meet, from the platform's code table (docs: seed error codes)
MEANINGS = {
    "DELIVRD": "delivered to the handset",
    "UNDELIV": "the carrier could not deliver it",
    "EXPIRED": "validity expired before delivery",
    "REJECTD": "the carrier rejected it",
    "UNKNOWN": "the upstream never reported a final state",
    "MA:0001": "全局黑名单号码 (global blacklist number)",
    "MA:0002": "内容非法 (illegal content: keyword hit)",
    "MA:0006": "系统拒绝 (refused in manual review)",
    "MA:0022": "下发次数超限 (too many messages to this number)",
    "MA:0023": "客户黑名单号码 (the customer's own blacklist)",
    "MA:0028": "全局黑名单号段 (blacklisted number segment)",
    "MA:0041": "账户日发送量超限 (account volume limit)",
    "MA:0042": "号码和内容超限 (same content to this number too often)",
    "MO:0254": "转发提交超时 (the upstream did not answer)",
    "MO:0255": "转发提交过程中，连接断开 (link to the upstream lost)",
    "MO:200": "不支持分条短信 (the channel takes no long messages)",
    "MO:201": "http通道提交失败 (the HTTP channel failed)",
}
SUBMIT_RESULTS = {0: "accepted", 8: "flow control, send again", 17: "signature not registered"}


def add_arguments(p) -> None:
    p.add_argument("--gateway", help="front-end address (default: the gateway_listen setting)")
    p.add_argument("--rules", dest="rules_dir", help="rules folder, for the platform time zone")
    p.add_argument("--account", default="900001")
    p.add_argument("--secret", default="888888")
    p.add_argument("--src-id", default="106900001", help="Src_Id (the account's access code)")
    p.add_argument("--wait", type=float, default=30.0,
                   help="seconds to wait for the last status reports (default 30)")


class Customer:
    """A blocking CMPP 2.x SP client: enough to log in, submit and collect reports."""

    def __init__(self, address: tuple[str, int], version: int = 0x21):
        from gateway.cmpp import Framer
        self.version = version
        self.sock = socket.create_connection(address, timeout=10)
        self.framer = Framer(version)
        self.seq = 0
        self.reports: list = []

    def _send(self, packet) -> None:
        from gateway.cmpp import encode
        self.sock.sendall(encode(packet, self.version))

    def _next(self):
        from gateway.cmpp import ActiveTest, ActiveTestResp, Deliver, DeliverResp, parse_report
        while True:
            packet = self.framer.next_packet()
            if packet is None:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("the front-end closed the connection")
                self.framer.feed(data)
            elif isinstance(packet, Deliver):
                if packet.registered_delivery == 1:
                    self.reports.append(parse_report(packet, self.version))
                self._send(DeliverResp(packet.sequence_id, packet.msg_id, 0))
            elif isinstance(packet, ActiveTest):
                self._send(ActiveTestResp(packet.sequence_id))
            else:
                return packet

    def _request(self, packet):
        self._send(packet)
        while (answer := self._next()).sequence_id != packet.sequence_id:
            pass
        return answer

    def _seq(self) -> int:
        self.seq += 1
        return self.seq

    def login(self, account: str, secret: str, tz: ZoneInfo) -> int:
        from gateway.cmpp import Connect, authenticator_source, timestamp_now
        ts = timestamp_now(datetime.now(tz))
        return self._request(Connect(self._seq(), account, authenticator_source(account, secret, ts),
                                     self.version, ts)).status

    def submit(self, account: str, src_id: str, dests: list[str], text: str) -> list:
        """SUBMIT_RESPs, one per part (a long text goes as UCS2 parts with UDH)."""
        from gateway.cmpp import Submit, split_ucs2
        parts = split_ucs2(text, ref=random.randrange(256))
        return [self._request(Submit(
            self._seq(), pk_total=len(parts), pk_number=n, registered_delivery=1,
            tp_udhi=1 if len(parts) > 1 else 0, msg_fmt=8, msg_src=account, src_id=src_id,
            dest_terminal_ids=tuple(dests), msg_content=body)) for n, body in enumerate(parts, 1)]

    def wait_reports(self, wanted: set[int], seconds: float) -> dict[int, object]:
        deadline = time.monotonic() + seconds
        while True:
            got = {r.msg_id: r for r in self.reports if r.msg_id in wanted}
            left = deadline - time.monotonic()
            if len(got) == len(wanted) or left <= 0:
                return got
            self.sock.settimeout(min(left, 1.0))
            try:
                self._next()
            except socket.timeout:
                pass
            finally:
                self.sock.settimeout(10)


def _samples() -> list[tuple[str, list[str], str, int]]:
    """(what it shows, recipients, text, times sent); fresh numbers each run so that earlier
    runs' counts do not change the outcome."""
    base = random.randrange(10000)
    num = [f"1391234{(base + i) % 10000:04d}" for i in range(6)]  # CMCC: channel ch-cmcc
    code = random.randrange(100000, 999999)
    long_text = (SIGNATURE + "尊敬的客户，您好！您订购的商品已于今日发货，快递单号将在二十四小时内"
                 "以短信方式通知您。如需修改收货地址或预约派送时间，请回复本短信或拨打客服热线，"
                 "我们将竭诚为您服务。本次订单已累计积分二百八十分，可在会员中心兑换优惠券或礼品，"
                 "积分有效期为一年。感谢您对云信科技的支持，祝您生活愉快！退订回T")
    return [
        ("accepted, registered signature", [num[0]], f"{SIGNATURE}您的验证码是{code}，5分钟内有效。", 1),
        ("blacklisted number", ["13900000001"], f"{SIGNATURE}会员积分即将到期，请及时使用。", 1),
        ("keyword hit", [num[1]], f"{SIGNATURE}百家乐线上娱乐，注册即送彩金", 1),
        ("group send", [num[2], num[3], "13700000001"], f"{SIGNATURE}本周六门店会员日，全场八折。", 1),
        ("long message (customer sends 3 parts, forwarder re-splits)", [num[4]], long_text, 1),
        ("limit breach by repetition (same content, same number, 6 times)", [num[5]],
         f"{SIGNATURE}您的快递已到驿站，取件码{code}。", 6),
    ]


def run(args) -> int:
    from ..rules.loader import load_policy
    from ..settings import SettingsError, load_settings
    try:
        settings = load_settings(args.config, overrides={"rules_dir": args.rules_dir})
    except SettingsError as e:
        print(f"smspolicy demo: {e}")
        return 2
    try:
        tz = ZoneInfo(load_policy(settings.rules_dir).platform.timezone)
    except Exception:  # the demo still works from anywhere the rules are not at hand
        tz = ZoneInfo("Asia/Shanghai")
    host, _, port = (args.gateway or settings.gateway_listen).rpartition(":")
    try:
        customer = Customer((host or "127.0.0.1", int(port)))
    except OSError as e:
        print(f"smspolicy demo: cannot reach the front-end at {host}:{port}: {e} "
              f"(is `smspolicy up` running?)")
        return 1
    status = customer.login(args.account, args.secret, tz)
    if status != 0:
        print(f"smspolicy demo: login of {args.account} refused with status {status}")
        return 1
    print(f"logged in to {host}:{port} as {args.account}\n")
    sent = []  # (label, text, [(Msg_Ids of a recipient, its number)], [Result per part])
    for label, dests, text, times in _samples():
        for _ in range(times):
            resps = customer.submit(args.account, args.src_id, dests, text)
            # one Msg_Id per recipient: SUBMIT_RESP carries the first, recipient i has first + i
            expect = [([r.msg_id + i for r in resps if r.result == 0], dest)
                      for i, dest in enumerate(dests)]
            sent.append((label, text, expect, [r.result for r in resps]))
    wanted = {m for _, _, expect, _ in sent for ids, _ in expect for m in ids}
    reports = customer.wait_reports(wanted, args.wait)
    groups: dict[str, list] = {}
    for label, text, expect, results in sent:
        groups.setdefault(label, []).append((text, expect, results))
    for label, sends in groups.items():
        text = sends[0][0]
        print(f"== {label}\n   {text if len(text) <= 40 else text[:40] + '…'}")
        for n, (_, expect, results) in enumerate(sends, 1):
            result = next((r for r in results if r), 0)
            counter = f"#{n} " if len(sends) > 1 else ""
            print(f"   {counter}SUBMIT_RESP Result {result} ({SUBMIT_RESULTS.get(result, 'refused')}"
                  f"{f', {len(results)} parts' if len(results) > 1 else ''})")
            for ids, dest in expect:
                stats = [reports[m].stat if m in reports else "(no report yet)" for m in ids]
                stat = stats[0] if len(set(stats)) == 1 else "/".join(stats)
                parts = f" x{len(ids)} parts" if len(ids) > 1 else ""
                print(f"     {dest}: {stat:8}{parts}  {MEANINGS.get(stat, '')}")
        print()
    missing = wanted - reports.keys()
    if missing:
        print(f"{len(missing)} reports did not arrive within {args.wait:g} s")
        return 1
    return 0
