"""The reference workload of the performance targets (issue 2, issue 3), generated from a seed.

    python -m bench.workload DIR [--quick] [--seed N] [--messages N]

writes DIR/ as a rules folder (`smspolicy check DIR` passes on it) and prints what it holds:

  lists       1,000,000 blacklisted numbers: global (2 files), 10 customer lists, 5 channel
              lists, the API-blacklist seed, and 4 files in the watched file-blacklist folder;
              10,000 segment entries (global, channel and customer segment lists); every big
              list is an entry file, one number per line
  keywords    5,000 generated words in 10 groups: the 4 group ids the shipped rules test, and 6 more
  templates   500 filed templates (40 for each of 10 content-filing accounts, 100 global)
  accounts    50, each showing the settings of the shipped ones in a realistic mix
  channels    20: nationwide per carrier, regional, HTTP, and the special-case channels
  rules       40: the shipped 32 (rules/policy.yaml) and 8 more over the new groups and lists
  limits      the shipped rules/limits.yaml, unchanged (its demo limits name account 900001)

and `Workload.messages(n)` yields a deterministic stream of Submissions: 1-3 recipients,
20-300 characters (some long), mostly accepted, with every kind of refusal mixed in.

Determinism: the same seed and sizes give byte-identical files and the same stream, given the
same segment database (the `phone` package's phone.dat; its version is in `summary()`).
Listed numbers end in 0000-4999 and the stream's clean numbers in 5000-9999, so clean
recipients are never listed by accident without keeping a million-entry set around.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "rules"
SEED = 20240601


@dataclass(frozen=True)
class Sizes:
    numbers: int = 1_000_000
    segments: int = 10_000
    keywords: int = 5_000
    templates: int = 500


FULL = Sizes()
QUICK = Sizes(numbers=100_000, segments=2_000, keywords=1_000, templates=100)

ACCOUNTS = 50
KEYWORD_GROUPS = ("gambling", "fraud", "sensitive", "loans", "drugs", "adult", "weapons",
                  "counterfeit", "pyramid", "spam")
# how the listed numbers split over the scopes (fractions of Sizes.numbers)
NUMBER_SPLIT = {"global": 0.60, "customer": 0.20, "channel": 0.10, "api": 0.02, "file": 0.08}
CUSTOMER_LISTS = (1, 3, 4, 7, 11, 12, 21, 25, 27, 29)   # accounts with their own blacklist
CHANNEL_LISTED = ("ch-cmcc-a", "ch-cmcc-b", "ch-cucc-a", "ch-ctcc-a", "ch-gd-cmcc")
FILE_BLACKLIST_FILES = 4
SAMPLE = 2_000   # listed numbers per list kept for the stream
MAX_CONTENT = 300

# Notification text the stream and the templates are made of. The keywords are drawn from a
# block of rare characters that none of these use, so only injected keywords ever hit.
PHRASES = (
    "尊敬的客户，您好", "您的验证码是", "分钟内有效，请勿泄露给他人", "您的订单", "已发货，快递单号",
    "请注意查收", "您本月账单金额为", "元，请于", "前完成还款", "感谢您的支持", "如有疑问请致电客服热线",
    "会员积分即将到期", "欢迎再次光临", "本店新品上市，全场八折优惠", "活动时间", "退订回T", "您预约的",
    "将于", "开始，请准时到场", "您的包裹已到达", "请凭取件码", "到驿站领取", "您的账户于", "发生一笔交易",
    "您的快递正在派送中，派送员电话", "温馨提示：", "天气转凉，注意保暖", "您参加的活动已开奖",
    "详情请登录官方网站查看", "您的宽带将于", "到期，请及时续费", "您的车辆年检即将到期", "您的话费余额不足",
    "请及时充值以免影响使用", "您已成功办理", "业务，次月生效", "您的会员等级已升级为", "本次消费获得积分",
    "您的航班", "已开始办理登机手续", "您的体检报告已生成", "请于工作日到前台领取", "您的退款已原路返回",
    "预计到账时间", "您的密码已修改成功", "若非本人操作请立即联系我们", "您关注的商品已降价",
    "您的预约已确认", "门店地址", "营业时间为每天上午九点至晚上十点", "您的发票已开具",
    "您的保单即将到期", "请及时办理续保", "您的房屋租金", "已收到，谢谢", "课程提醒：", "今晚八点直播开讲",
)
SIGNATURE_NAMES = tuple(f"{a}{b}" for a in ("云信", "华讯", "星河", "蓝海", "天宇", "博远", "恒通", "金石",
                                            "东方", "盛世")
                        for b in ("科技", "银行", "商城", "物流", "教育", "医疗", "保险", "航空"))
# A filed template names its business ("杭州西湖店：..."), which keeps templates apart
CITIES = ("北京", "上海", "广州", "深圳", "杭州", "南京", "苏州", "成都", "重庆", "武汉", "西安", "长沙",
          "郑州", "济南", "青岛", "厦门", "福州", "合肥", "昆明", "贵阳", "南宁", "天津", "沈阳", "大连",
          "哈尔滨", "长春", "太原", "石家庄", "南昌", "海口")
SHOPS = ("一号店", "旗舰店", "中心店", "东门店", "西湖店", "万达店", "银泰店", "高新店", "滨江店", "新城店",
         "营业厅", "服务中心", "体验店", "分行", "支行", "门诊部", "校区", "仓库", "站点", "专卖店")
TEMPLATE_VARS = ("code", "name", "order", "amount", "date", "time", "minutes", "tracking", "store")
KEYWORD_BLOCK = range(0x9B3C, 0x9C7F)   # 鬼 魚 鳥 radicals: rare in notifications
URL_HOSTS = ("t.cn", "dwz.cn", "url.cn")


def _keyword_chars() -> list[str]:
    used = set("".join(PHRASES + SIGNATURE_NAMES + CITIES + SHOPS))
    return [c for c in map(chr, KEYWORD_BLOCK) if c not in used]


def _channels() -> list[dict]:
    """The 20 channels: nationwide per carrier, regional, HTTP, and one per special case."""
    sim = {"host": "127.0.0.1", "port": 7891}
    out = []

    def ch(cid, name, carriers, login, **extra):
        out.append({"id": cid, "name": name, "carriers": carriers, **sim,
                    "account": f"1{login:05d}", "secret": f"sim-{cid}", **extra})

    ch("ch-cmcc-a", "移动主通道A", ["cmcc", "cbn"], 1, rate=500, connections=2)
    ch("ch-cmcc-b", "移动主通道B", ["cmcc"], 2, rate=500)
    ch("ch-cucc-a", "联通主通道A", ["cucc"], 3, rate=300)
    ch("ch-cucc-b", "联通主通道B", ["cucc"], 4, rate=300)
    ch("ch-ctcc-a", "电信主通道A", ["ctcc"], 5, rate=300)
    ch("ch-ctcc-b", "电信主通道B", ["ctcc"], 6, rate=300)
    ch("ch-cbn", "广电通道", ["cbn"], 7)
    out.append({"id": "ch-3net-http", "name": "三网合一 HTTP 通道", "carriers": ["cmcc", "cucc", "ctcc", "cbn"],
                "protocol": "http", "http_url": "http://127.0.0.1:7892/sms/submit", "rate": 100})
    ch("ch-gd-cmcc", "移动广东通道", ["cmcc"], 9, regions=["广东"])
    ch("ch-js-cmcc", "移动江苏通道", ["cmcc"], 10, regions=["江苏"])
    ch("ch-bj-cucc", "联通北京通道", ["cucc"], 11, regions=["北京"])
    ch("ch-sh-cucc", "联通上海通道", ["cucc"], 12, regions=["上海"])
    ch("ch-zj-ctcc", "电信浙江通道", ["ctcc"], 13, regions=["浙江"])
    ch("ch-sc-ctcc", "电信四川通道", ["ctcc"], 14, regions=["四川"])
    ch("ch-cmcc-maint", "移动备用通道（维护中）", ["cmcc"], 15, run_mode="reject")
    ch("ch-cmcc-nolong", "移动营销通道（不支持长短信）", ["cmcc"], 16, supports_long=False)
    ch("ch-cucc-short", "联通短内容通道", ["cucc"], 17, max_length=120)
    ch("ch-ctcc-ucs2", "电信 UCS2 通道", ["ctcc"], 18, formats=[8])
    ch("ch-cmcc-gbk", "移动 GBK 通道", ["cmcc"], 19, formats=[0, 15])
    ch("ch-cucc-backup", "联通备用通道", ["cucc"], 20, rate=100)
    return out


NATIONWIDE = ("ch-cmcc-a", "ch-cucc-a", "ch-ctcc-a", "ch-cbn")
REGIONAL = ("ch-gd-cmcc", "ch-js-cmcc", "ch-bj-cucc", "ch-sh-cucc", "ch-zj-ctcc", "ch-sc-ctcc")
SPECIAL_FIRST = ("ch-cmcc-maint", "ch-cmcc-nolong", "ch-cucc-short", "ch-ctcc-ucs2", "ch-cmcc-gbk")


@dataclass
class AccountSpec:
    """What the stream needs to know about an account to write plausible traffic for it."""
    id: str
    access_code: str
    signatures: tuple[str, ...]
    weight: float
    doc: dict
    direct: bool = False
    filing: bool = False
    fee_codes: tuple[str, ...] = ()
    templates: list[str] = field(default_factory=list)   # ids of its own filed templates


class Workload:
    """Everything of one seed and size: write it with `write(dest)`, stream it with `messages`."""

    def __init__(self, sizes: Sizes = FULL, seed: int = SEED):
        self.sizes = sizes
        self.seed = seed
        from policy.facts.segments import SegmentDB
        self.segment_db = SegmentDB.load()
        self._segs = _valid_segments(self.segment_db)
        self.accounts = self._accounts()
        self.channels = _channels()
        self.keywords = self._keywords()
        self.templates = self._templates()
        self.segment_lists = self._segment_lists()
        self._listed_prefixes = {p for entries in self.segment_lists.values() for p in entries}
        self.samples: dict[str, list[str]] = {}   # list id (or file name) -> some of its numbers
        self.unassigned = self._unassigned_segments()

    def _rng(self, part: str) -> random.Random:
        return random.Random(f"{self.seed}:{part}")

    # ------------------------------------------------------------------ the policy objects
    def _accounts(self) -> list[AccountSpec]:
        rnd = self._rng("accounts")
        specs = []
        for i in range(1, ACCOUNTS + 1):
            aid = f"{900000 + i}"
            code = f"1069{i:05d}"
            sigs = tuple(rnd.sample(SIGNATURE_NAMES, rnd.choice((1, 1, 2, 3))))
            doc: dict = {"id": aid, "name": f"基准客户{i:02d}", "secret": f"bench-{aid}",
                         "bound_ips": ["127.0.0.0/8"], "access_code": code,
                         "signature_check": i % 10 not in (0, 5, 9), "signatures": [f"【{s}】" for s in sigs]}
            spec = AccountSpec(aid, code, sigs, weight=1 / i ** 0.8, doc=doc)
            if i in (2, 21, 22, 23, 24):
                doc.update(billing="prepaid", balance=10 ** 9)
            if 11 <= i <= 20:
                doc["content_filing"] = "reject"
                spec.filing = True
            if i == 8:
                doc["audit_mode"] = "manual"
            if i == 9:
                doc["audit_mode"] = "reject"
            if i in (10, 30, 31):
                doc["blocked_regions"] = {10: ["北京", "广东/深圳"], 30: ["西藏", "新疆"], 31: ["上海"]}[i]
            if i in (13, 33, 43):
                doc["send_window"] = "00:00-23:59"
            if i in (5, 35):
                doc["channel_mode"] = "direct"
                spec.direct = True
            if i in (6, 26):
                doc["allow_extension"] = False
            if i in (6, 36):
                doc["one_customer_one_signature"] = True
            if i in (16, 46):
                doc["intercept_mode"] = "pass"
            if i in (14, 44):
                doc["msg_formats"] = [0, 8, 15]
            if i in (2, 42):
                doc["fee_codes"] = ["000000", "000010"]
                spec.fee_codes = ("000000", "000010")
            doc["channels"] = self._route(i, rnd)
            specs.append(spec)
        return specs

    @staticmethod
    def _route(i: int, rnd: random.Random) -> list[str]:
        if i == 50:
            return list(REGIONAL)   # regional only: most recipients have no route (MA:0003)
        first = [SPECIAL_FIRST[(i // 10) % len(SPECIAL_FIRST)]] if i % 10 == 7 else []
        regional = rnd.sample(REGIONAL, rnd.choice((0, 0, 1, 2)))
        nationwide = list(NATIONWIDE) if i % 12 else list(NATIONWIDE[:3])   # some lack cbn
        if i % 4 == 1:
            nationwide = ["ch-cmcc-b", "ch-cucc-b", "ch-ctcc-b", "ch-cbn"]
        if i % 9 == 4:
            nationwide.append("ch-3net-http")
        return first + regional + nationwide

    def _keywords(self) -> dict[str, list[str]]:
        rnd = self._rng("keywords")
        chars = _keyword_chars()
        per_group = self.sizes.keywords // len(KEYWORD_GROUPS)
        seen: set[str] = set()
        groups = {}
        for gid in KEYWORD_GROUPS:
            words = []
            while len(words) < per_group:
                w = "".join(rnd.choices(chars, k=rnd.choice((2, 3, 3, 4))))
                if w not in seen:
                    seen.add(w)
                    words.append(w)
            groups[gid] = words
        return groups

    def _templates(self) -> list[dict]:
        """Account-specific templates for the 10 filing accounts, the rest global."""
        rnd = self._rng("templates")
        filing = [a for a in self.accounts if a.filing]
        own = self.sizes.templates * 4 // 5 // len(filing)
        out, texts = [], set()
        owners = [a for a in filing for _ in range(own)]
        owners += [None] * (self.sizes.templates - len(owners))
        for n, owner in enumerate(owners):
            while True:
                a, b, c = rnd.sample(PHRASES, 3)
                v1, v2 = rnd.sample(TEMPLATE_VARS, 2)
                text = f"{rnd.choice(CITIES)}{rnd.choice(SHOPS)}：{a}{{{v1}}}{b}{{{v2}}}{c}"
                if text not in texts:
                    break
            texts.add(text)
            t = {"id": f"tpl-{n:04d}", "text": text}
            if owner is not None:
                t["account"] = owner.id
                owner.templates.append(t["id"])
            out.append(t)
        return out

    def _segment_lists(self) -> dict[str, list[str]]:
        """list id -> prefixes: global 40%, 5 channel lists 50%, 2 customer lists 10%."""
        rnd = self._rng("segments")
        n = self.sizes.segments
        chosen = iter(rnd.sample(self._segs, n))
        out = {"bench-global-segments": [next(chosen) for _ in range(n * 4 // 10)]}
        # a few 6-digit prefixes (10 segments each), so the lookup tries two prefix lengths
        for k in range(0, len(out["bench-global-segments"]), 100):
            out["bench-global-segments"][k] = out["bench-global-segments"][k][:6]
        for cid in CHANNEL_LISTED:
            out[f"{cid}-segments"] = [next(chosen) for _ in range(n // 10)]
        for i in (3, 4):
            out[f"customer-{900000 + i}-segments"] = [next(chosen) for _ in range(n // 20)]
        return out

    def _unassigned_segments(self) -> list[str]:
        """Segments a valid mobile number can have that are not in the segment database (MA:0014)."""
        from policy.facts.numbers import is_valid_mobile
        rnd = self._rng("unassigned")
        assigned = set(self._segs)
        out = []
        while len(out) < 50:
            seg = f"1{rnd.choice('3456789')}{rnd.randrange(100000):05d}"
            if seg not in assigned and is_valid_mobile(seg + "0000"):
                out.append(seg)
        return out

    def _listed_numbers(self, count: int, rnd: random.Random, seen: set[int]) -> list[str]:
        segs, nseg = self._segs, len(self._segs)
        out = []
        while len(out) < count:
            n = int(segs[rnd.randrange(nseg)]) * 10000 + rnd.randrange(5000)
            if n not in seen:
                seen.add(n)
                out.append(str(n))
        return out

    # ------------------------------------------------------------------ writing the folder
    def write(self, dest: Path) -> Path:
        """Writes the rules folder into `dest` (emptied first); returns it."""
        dest = Path(dest)
        if dest.exists():
            shutil.rmtree(dest)
        (dest / "lists").mkdir(parents=True)
        (dest / "blacklist-files").mkdir()
        shutil.copy(SHIPPED / "platform.yaml", dest / "platform.yaml")
        shutil.copy(SHIPPED / "limits.yaml", dest / "limits.yaml")
        lists = self._write_number_lists(dest)
        for lid, prefixes in self.segment_lists.items():
            _write_lines(dest / "lists" / f"{lid}.txt", prefixes)
            lst = {"id": lid, "kind": "segments", "files": [f"lists/{lid}.txt"]}
            if lid.startswith("customer-"):
                lst.update(scope="customer", account=lid.split("-")[1])
            elif lid == "bench-global-segments":
                lst["scope"] = "global"
            else:
                lst.update(scope="channel", channel=lid.removesuffix("-segments"))
            lists.append(lst)
        _dump(dest / "accounts.yaml", "accounts", [a.doc for a in self.accounts])
        _dump(dest / "channels.yaml", "channels", self.channels)
        _dump(dest / "lists.yaml", "lists", lists)
        _dump(dest / "keywords.yaml", "keyword_groups",
              [{"id": gid, "words": words} for gid, words in self.keywords.items()])
        _dump(dest / "templates.yaml", "templates", self.templates)
        (dest / "policy.yaml").write_text(
            (SHIPPED / "policy.yaml").read_text(encoding="utf-8") + EXTRA_RULES, encoding="utf-8")
        return dest

    def _write_number_lists(self, dest: Path) -> list[dict]:
        rnd = self._rng("numbers")
        seen: set[int] = set()
        total = self.sizes.numbers
        counts = {k: int(total * f) for k, f in NUMBER_SPLIT.items()}
        counts["global"] += total - sum(counts.values())
        lists: list[dict] = []

        def put(name: str, numbers: list[str]) -> str:
            path = f"lists/{name}.txt"
            _write_lines(dest / path, numbers)
            self.samples[name] = numbers[:SAMPLE]
            return path

        half = counts["global"] // 2
        lists.append({"id": "bench-global-blacklist", "kind": "numbers", "scope": "global", "files": [
            put("global-blacklist-1", self._listed_numbers(half, rnd, seen)),
            put("global-blacklist-2", self._listed_numbers(counts["global"] - half, rnd, seen))]})
        for k, i in enumerate(CUSTOMER_LISTS):
            aid = f"{900000 + i}"
            n = counts["customer"] // len(CUSTOMER_LISTS) + (counts["customer"] % len(CUSTOMER_LISTS) if k == 0 else 0)
            lists.append({"id": f"customer-{aid}-blacklist", "kind": "numbers", "scope": "customer",
                          "account": aid,
                          "files": [put(f"customer-{aid}-blacklist", self._listed_numbers(n, rnd, seen))]})
        for k, cid in enumerate(CHANNEL_LISTED):
            n = counts["channel"] // len(CHANNEL_LISTED) + (counts["channel"] % len(CHANNEL_LISTED) if k == 0 else 0)
            lists.append({"id": f"{cid}-blacklist", "kind": "numbers", "scope": "channel", "channel": cid,
                          "files": [put(f"{cid}-blacklist", self._listed_numbers(n, rnd, seen))]})
        lists.append({"id": "api-blacklist", "kind": "numbers", "scope": "api",
                      "files": [put("api-blacklist", self._listed_numbers(counts["api"], rnd, seen))]})
        for k in range(FILE_BLACKLIST_FILES):
            n = counts["file"] // FILE_BLACKLIST_FILES + (counts["file"] % FILE_BLACKLIST_FILES if k == 0 else 0)
            numbers = self._listed_numbers(n, rnd, seen)
            _write_lines(dest / "blacklist-files" / f"complaints-{k}.txt", numbers)
            self.samples[f"file-{k}"] = numbers[:SAMPLE]
        return lists

    # ------------------------------------------------------------------ the message stream
    def messages(self, n: int, prefix: str = "m") -> Iterator:
        """n Submissions; request ids are f"{prefix}-{i}". Call write() first (the stream draws
        listed numbers from the written lists)."""
        from policy.facts.content import codec_for
        from policy.submission import Submission
        if not self.samples:
            raise RuntimeError("Workload.messages() needs write() first: it samples the written lists")
        rnd = self._rng("stream")
        accounts = self.accounts
        cum = _cumulative([a.weight for a in accounts])
        templates = {t["id"]: t for t in self.templates}
        global_tpl = [t["id"] for t in self.templates if "account" not in t]
        for i in range(n):
            a = accounts[_pick(cum, rnd.random())]
            count = 1 if a.direct and rnd.random() < 0.95 else rnd.choices((1, 2, 3), (60, 25, 15))[0]
            dests = [self._recipient(a, rnd) for _ in range(count)]
            if rnd.random() < 0.002:
                dests[0] = dests[0][:-1] + "a"            # characters: submit result 12
            body = self._body(a, rnd, templates, global_tpl)
            content = self._signed(a, body, rnd)
            fmt = 8
            r = rnd.random()
            if r < 0.01:
                fmt = 15                                 # GBK: refused (9) unless the account allows it
            elif r < 0.012:
                content = ""                             # empty: submit result 20
            src = a.access_code + rnd.choice(("", "", "", "8", "88", "1234"))
            if rnd.random() < 0.01:
                src = "10690000"                         # not the account's access code: 10
            fee = rnd.choice(a.fee_codes) if a.fee_codes else "000000"
            if rnd.random() < 0.005:
                fee = "000099"                           # a FeeCode not allowed (5, where listed)
            data = content.encode(codec_for(fmt), "replace")
            yield Submission(request_id=f"{prefix}-{i}", account_id=a.id, frontend_id="bench",
                             src_id=src, destinations=dests, content=data, msg_fmt=fmt,
                             fee_code=fee, registered_delivery=True)

    def _recipient(self, a: AccountSpec, rnd: random.Random) -> str:
        r = rnd.random()
        samples = self.samples
        if r < 0.82:
            return self._clean(rnd)
        if r < 0.86:
            return rnd.choice(samples[rnd.choice(("global-blacklist-1", "global-blacklist-2"))])
        if r < 0.88:
            seg = rnd.choice(self.segment_lists["bench-global-segments"])
            return seg + f"{rnd.randrange(10 ** (11 - len(seg))):0{11 - len(seg)}d}"
        if r < 0.90:
            own = samples.get(f"customer-{a.id}-blacklist")
            return rnd.choice(own) if own else self._clean(rnd)
        if r < 0.92:
            return rnd.choice(samples[f"{rnd.choice(CHANNEL_LISTED)}-blacklist"])
        if r < 0.93:
            seg = rnd.choice(self.segment_lists[f"{rnd.choice(CHANNEL_LISTED)}-segments"])
            return seg + f"{rnd.randrange(10000):04d}"
        if r < 0.95:
            return rnd.choice(samples[f"file-{rnd.randrange(FILE_BLACKLIST_FILES)}"])
        if r < 0.96:
            return rnd.choice(samples["api-blacklist"])
        if r < 0.965:
            seg = rnd.choice(self.segment_lists[f"customer-{900000 + rnd.choice((3, 4))}-segments"])
            return seg + f"{rnd.randrange(10000):04d}"
        if r < 0.975:
            return self._clean(rnd)[:rnd.choice((10, 9))]          # MA:0021
        if r < 0.98:
            return f"12{rnd.randrange(10 ** 9):09d}"               # MA:0005
        if r < 0.985:
            return rnd.choice(self.unassigned) + f"{rnd.randrange(5000, 10000):04d}"   # MA:0014
        return rnd.choice(("+86", "86", "0086")) + self._clean(rnd)

    def _clean(self, rnd: random.Random) -> str:
        segs, nseg, listed = self._segs, len(self._segs), self._listed_prefixes
        while True:
            seg = segs[rnd.randrange(nseg)]
            if seg not in listed and seg[:6] not in listed:
                return f"{seg}{rnd.randrange(5000, 10000)}"

    def _body(self, a: AccountSpec, rnd: random.Random, templates: dict, global_tpl: list[str]) -> str:
        r = rnd.random()
        if (a.filing and r < 0.85) or r < 0.08:
            own = a.templates if a.templates and rnd.random() < 0.8 else global_tpl
            body = _fill(templates[rnd.choice(own)]["text"], rnd)
        else:
            r = rnd.random()
            target = rnd.randint(20, 70) if r < 0.7 else rnd.randint(71, 200) if r < 0.95 else rnd.randint(201, 300)
            body = _free_text(rnd, target)
        r = rnd.random()
        if r < 0.04:
            group = self.keywords[rnd.choice(KEYWORD_GROUPS)]
            at = rnd.randrange(len(body) + 1)
            body = body[:at] + rnd.choice(group) + body[at:]
        elif r < 0.07:
            body += f" {rnd.choice(URL_HOSTS)}/{rnd.randrange(36 ** 6):x}"
        elif r < 0.075:
            body += "{code}"                      # a template the customer forgot to fill in
        return body

    @staticmethod
    def _signed(a: AccountSpec, body: str, rnd: random.Random) -> str:
        """The body with a 【signature】 (mostly registered, at the head), 300 characters at most."""
        r = rnd.random()
        if r < 0.02:
            return body[:MAX_CONTENT]                             # no signature
        sig = f"【{rnd.choice(SIGNATURE_NAMES)}】" if r < 0.04 else f"【{rnd.choice(a.signatures)}】"
        body = body[:MAX_CONTENT - len(sig)]
        return sig + body if rnd.random() < 0.9 else body + sig

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        numbers = self.sizes.numbers
        return {
            "seed": self.seed,
            "listed numbers": numbers,
            "segment entries": sum(map(len, self.segment_lists.values())),
            "keywords": sum(map(len, self.keywords.values())),
            "keyword groups": len(self.keywords),
            "templates": len(self.templates),
            "accounts": len(self.accounts),
            "channels": len(self.channels),
            "rules": _rule_count(),
            "segment database": f"phone.dat {self.segment_db.version}",
        }


EXTRA_RULES = """
  # ====================== the benchmark workload's 8 rules on top ======================
  - id: bench-illegal-content-more
    code: "MA:0002"
    priority: 598
    description: "内容非法: drugs, adult, weapons and counterfeit groups"
    when:
      all:
        - {fact: account.intercept_mode, eq: reject}
        - any:
            - {fact: message.keyword_groups, contains: drugs}
            - {fact: message.keyword_groups, contains: adult}
            - {fact: message.keyword_groups, contains: weapons}
            - {fact: message.keyword_groups, contains: counterfeit}

  - id: bench-pyramid-trial
    code: "MA:0002"
    priority: 575
    mode: shadow
    description: "Trial: pyramid-scheme recruiting, recorded only"
    when: {fact: message.keyword_groups, contains: pyramid}

  - id: bench-spam-marketing
    code: "MA:0002"
    priority: 570
    description: "Marketing spam words from accounts that send notifications only"
    when:
      all:
        - {fact: message.keyword_groups, contains: spam}
        - {fact: account.id, in: ["900001", "900003", "900004", "900007", "900011", "900012"]}

  - id: bench-short-links
    code: "MA:0002"
    priority: 565
    mode: shadow
    description: "Trial: short links in content, recorded only"
    when: {fact: message.content, matches: "(t|dwz|url)[.]cn/[0-9a-z]+"}

  - id: bench-customer-segments
    code: "MA:0023"
    priority: 755
    description: "客户黑名单号段: a segment on the customer's own segment list"
    when:
      any:
        - all:
            - {fact: account.id, eq: "900003"}
            - {fact: recipient.lists, contains: customer-900003-segments}
        - all:
            - {fact: account.id, eq: "900004"}
            - {fact: recipient.lists, contains: customer-900004-segments}

  - id: bench-no-cbn
    code: "MA:0003"
    priority: 405
    description: "Accounts whose contracts exclude 广电 numbers"
    when:
      all:
        - {fact: recipient.carrier, eq: cbn}
        - {fact: account.id, in: ["900002", "900020", "900040"]}

  - id: bench-too-many-parts
    code: "MA:0037"
    priority: 345
    description: "Accounts on a short-message contract send at most 4 parts"
    when:
      all:
        - {fact: message.segments, gt: 4}
        - {fact: account.id, in: ["900001", "900015", "900025", "900035", "900045"]}

  - id: bench-remote-provinces
    code: "MA:0033"
    priority: 690
    description: "地区拦截: no messages to 西藏 and 青海 numbers after 21:00 (a carrier's restriction)"
    when:
      all:
        - {fact: recipient.province, in: [西藏, 青海]}
        - {fact: message.hour, ge: 21}
"""


def _valid_segments(db) -> list[str]:
    """Assigned segments of valid mobile numbers (not the 146/148/149 IoT ranges phonenumbers
    refuses), so that the stream's MA:0005 share is only the numbers it means to be invalid.
    Validity depends on the first 6 digits at most (policy/facts/numbers.py)."""
    from policy.facts.numbers import is_valid_mobile
    segs = db.assigned_segments()
    valid = {p for p in {s[:6] for s in segs} if is_valid_mobile(p + "00000")}
    return [s for s in segs if s[:6] in valid]


def _rule_count() -> int:
    shipped = yaml.safe_load((SHIPPED / "policy.yaml").read_text(encoding="utf-8"))["rules"]
    return len(shipped) + EXTRA_RULES.count("\n  - id: ")


def _fill(text: str, rnd: random.Random) -> str:
    out, rest = [], text
    while "{" in rest:
        head, _, tail = rest.partition("{")
        _, _, rest = tail.partition("}")
        out.append(head)
        out.append(str(rnd.randrange(10 ** rnd.randint(3, 8))))
    out.append(rest)
    return "".join(out)


def _free_text(rnd: random.Random, target: int) -> str:
    parts, size = [], 0
    while size < target:
        p = rnd.choice(PHRASES)
        if rnd.random() < 0.3:
            p += str(rnd.randrange(10 ** rnd.randint(2, 6)))
        parts.append(p)
        size += len(p)
    return "".join(parts)[:target]


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return [c / total for c in out]


def _pick(cum: list[float], x: float) -> int:
    import bisect
    return min(bisect.bisect_right(cum, x), len(cum) - 1)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _dump(path: Path, section: str, items: list[dict]) -> None:
    text = yaml.safe_dump({section: items}, allow_unicode=True, sort_keys=False, width=1000)
    path.write_text("# generated by bench/workload.py: do not edit\n" + text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--numbers", type=int, default=0, help="blacklisted numbers instead of the size's own "
                    "(1,000,000; quick 100,000), split over the lists in the same shares (bench/lists_scale.py)")
    ap.add_argument("--messages", type=int, default=0, help="also print the outcome mix of N messages "
                    "evaluated in process (no counters)")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.numbers:
        sizes = replace(sizes, numbers=args.numbers)
    w = Workload(sizes, args.seed)
    w.write(args.dir)
    for k, v in w.summary().items():
        print(f"{k:>18}: {v}")
    if args.messages:
        from .pipeline_bench import outcome_mix
        for k, v in outcome_mix(args.dir, w.messages(args.messages)).most_common():
            print(f"{v:8d}  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
