"""The loaded, validated policy: what an operator configures, as plain frozen data.

The loader (policy/rules/loader.py) builds a PolicySet from the YAML files under rules/;
nothing else constructs these from YAML. Every object keeps `where`, the file:line:column it was
read from, so later stages can point back at the source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time

from .conditions import Condition


@dataclass(frozen=True)
class Where:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    path: str  # YAML path, e.g. "rules[3].when.all[0].fact"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}"


@dataclass(frozen=True)
class TimeWindow:
    """Daily window in the platform time zone, "08:00-21:30"; end before start wraps midnight."""
    start: time
    end: time

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True)
class Account:
    id: str                                  # CMPP SP_Id / Source_Addr (<= 6 chars)
    name: str
    secret: str                              # shared secret for CONNECT and HTTP signing
    access_mode: str = "cmpp"                # cmpp | http
    status: str = "active"                   # active | disabled
    bound_ips: tuple[str, ...] = ()          # CIDRs or addresses; empty = any address
    cmpp_versions: tuple[int, ...] = (0x20, 0x21)  # add 0x30 to enable CMPP 3.0
    billing: str = "postpaid"                # prepaid | postpaid
    balance: int = 0                         # opening prepaid balance in fen
    price: int = 5                           # fen per billed segment
    login_window: TimeWindow | None = None
    send_window: TimeWindow | None = None
    max_connections: int = 4
    access_code: str = ""                    # Src_Id must start with it
    allow_extension: bool = True             # digits after the access code allowed
    channel_mode: str = "virtual"            # direct (one destination per submit) | virtual
    signature_check: bool = False
    signatures: tuple[str, ...] = ()         # registered signatures, without 【】
    one_customer_one_signature: bool = False
    content_filing: str = "off"              # off | reject
    audit_mode: str = "none"                 # none | manual | reject
    intercept_mode: str = "reject"           # reject | pass
    msg_formats: tuple[int, ...] = (8,)
    fee_codes: tuple[str, ...] = ()          # allowed FeeCode values (stripped of leading zeros); empty = any
    blocked_regions: tuple[str, ...] = ()    # provinces ("广东") or "province/city" ("广东/深圳")
    channels: tuple[str, ...] = ()           # route: first channel serving the carrier and region wins
    max_length: int = 1000
    push_url: str | None = None              # HTTP report push; None = CMPP delivery only
    push_ok_body: str = "OK"
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    carriers: tuple[str, ...]                # cmcc | cucc | ctcc | cbn
    regions: tuple[str, ...] = ()            # provinces served; empty = all
    run_mode: str = "normal"                 # normal | reject
    protocol: str = "cmpp"                   # cmpp | http
    supports_long: bool = True
    formats: tuple[int, ...] = (0, 8, 15)
    max_length: int = 1000
    host: str = "127.0.0.1"
    port: int = 7891
    account: str = ""
    secret: str = ""
    version: int = 0x20
    window: int = 16
    connections: int = 1
    rate: int = 0                            # messages per second, 0 = unlimited
    http_url: str | None = None              # protocol http: where submits are POSTed
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True)
class NumberList:
    id: str
    kind: str                                # numbers | segments
    scope: str                               # global | customer | channel | api
    account: str | None = None               # scope customer
    channel: str | None = None               # scope channel
    entries: frozenset[str] = frozenset()    # normalized numbers or 7-digit-or-shorter prefixes
    files: tuple[str, ...] = ()              # extra entry files (one per line), relative to rules/
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True)
class FileBlacklist:
    folder: str                              # absolute path of the watched folder
    poll_seconds: float = 1.0


@dataclass(frozen=True)
class KeywordGroup:
    id: str
    words: tuple[str, ...]
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Template:
    id: str
    text: str                                # "您的验证码是{code}，{minutes}分钟内有效"
    account: str | None = None               # None = filed for every account
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Rule:
    id: str
    stage: str                               # submit | recipient
    action: str                              # reject | hold
    code: str | None                         # "MA:0001" (recipient) or "17" (submit); None -> MA:0009
    priority: int                            # 1..65535, higher wins; ties: earlier in file order
    mode: str                                # enforce | shadow
    description: str
    when: Condition
    index: int = 0                           # position across all files, for stable ties
    where: Where | None = field(default=None, compare=False)


LIMIT_SCOPES = {
    # scope -> the code a breach gives
    "account_number": "MA:0022",             # per account and destination number
    "account": "MA:0041",                    # per account volume
    "account_number_content": "MA:0042",     # same content to the same number
    "channel": "MA:0035",                    # per channel volume per period
    "channel_number": "MA:0038",             # per channel and destination number
    "channel_content": "MA:0043",            # per channel, the same content to different numbers
}


@dataclass(frozen=True)
class Limit:
    id: str
    scope: str                               # a key of LIMIT_SCOPES
    max: int
    window: str                              # minute | hour | day | month
    size: int = 1                            # window length in units of `window`
    sliding: bool = False
    unit: str = "messages"                   # messages | segments
    accounts: tuple[str, ...] = ()           # empty = default for every account
    channels: tuple[str, ...] = ()           # empty = every channel (channel scopes)
    where: Where | None = field(default=None, compare=False)

    @property
    def code(self) -> str:
        return LIMIT_SCOPES[self.scope]


@dataclass(frozen=True)
class Platform:
    timezone: str = "Asia/Shanghai"
    max_length: int = 1000                   # characters; above it the submit gets result 4
    max_destinations: int = 100
    shadow_all: bool = False                 # global shadow switch: nothing is enforced


@dataclass(frozen=True)
class PolicySet:
    version: str                             # content hash of the normalized files
    platform: Platform
    accounts: dict[str, Account]
    channels: dict[str, Channel]
    lists: dict[str, NumberList]
    keyword_groups: dict[str, KeywordGroup]
    templates: dict[str, Template]
    rules: tuple[Rule, ...]
    limits: tuple[Limit, ...] = ()
    file_blacklist: FileBlacklist | None = None
    source_dir: str = ""
    # the very bytes `version` hashes, for the version store: reading the folder again later
    # could store other files under this id (an edit right after a reload did)
    files: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
