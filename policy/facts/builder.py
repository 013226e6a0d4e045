"""The facts of one message and of each of its recipients, as the rule engines see them.

A FactBuilder is built once per loaded PolicySet: list indexes, the keyword automaton, the
template index and every per-account and per-channel derived value are computed here, so that
the per-message and per-recipient calls only look things up. The keys of the returned dicts
are exactly the vocabulary's facts for the stage (policy/vocabulary.py, flattened with
engine_key) plus "_m": 1, which the engines use to guard rules that test a fact's absence.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ..rules.model import Account, Channel, PolicySet
from ..submission import Submission
from ..vocabulary import FACTS, engine_key
from .content import decode_content, extract_signature, length_units, segments_for_units
from .filelist import FileBlacklist
from .keywords import KeywordScanner
from .lists import ApiBlacklist, ListIndex
from .numbers import is_valid_mobile, normalize_number, number_key
from .segments import SegmentDB, canonical_region
from .templates import TemplateMatcher

INTERNAL = {"_m": 1}
_MISSING = object()


def _k(name: str) -> str:
    if name not in FACTS:
        raise KeyError(f"{name} is not in policy.vocabulary.FACTS")
    return engine_key(name)


A_ID = _k("account.id")
A_STATUS = _k("account.status")
A_ACCESS = _k("account.access_mode")
A_BILLING = _k("account.billing")
A_CHANNEL_MODE = _k("account.channel_mode")
A_EXTENSION = _k("account.allow_extension")
A_SIG_CHECK = _k("account.signature_check")
A_ONE_SIG = _k("account.one_customer_one_signature")
A_FILING = _k("account.content_filing")
A_AUDIT = _k("account.audit_mode")
A_INTERCEPT = _k("account.intercept_mode")
A_MAX_LENGTH = _k("account.max_length")

M_LENGTH = _k("message.length")
M_SEGMENTS = _k("message.segments")
M_EMPTY = _k("message.empty")
M_OVER_MAX = _k("message.over_platform_max")
M_OVER_ACCOUNT_MAX = _k("message.over_account_max")
M_FMT = _k("message.msg_fmt")
M_FMT_OK = _k("message.msg_fmt_allowed")
M_FEE = _k("message.fee_code")
M_FEE_OK = _k("message.fee_code_allowed")
M_SRC = _k("message.src_id")
M_SRC_OK = _k("message.src_id_valid")
M_SRC_EXT = _k("message.src_id_extended")
M_DEST_COUNT = _k("message.dest_count")
M_DEST_BAD = _k("message.dest_malformed")
M_DEST_OVER = _k("message.dest_over_max")
M_SIG = _k("message.signature")
M_HAS_SIG = _k("message.has_signature")
M_SIG_OK = _k("message.signature_registered")
M_IN_WINDOW = _k("message.in_send_window")
M_KEYWORDS = _k("message.keyword_groups")
M_TPL_OK = _k("message.template_matched")
M_TPL_ID = _k("message.template_id")
M_CONTENT = _k("message.content")
M_PARTS = _k("message.parts")
M_HOUR = _k("message.hour")

R_NUMBER = _k("recipient.number")
R_LENGTH_OK = _k("recipient.length_ok")
R_VALID = _k("recipient.valid")
R_SEGMENT = _k("recipient.segment")
R_ASSIGNED = _k("recipient.segment_assigned")
R_CARRIER = _k("recipient.carrier")
R_PROVINCE = _k("recipient.province")
R_CITY = _k("recipient.city")
R_REGION_BLOCKED = _k("recipient.region_blocked")
R_BL_GLOBAL = _k("recipient.blacklisted.global")
R_BL_CUSTOMER = _k("recipient.blacklisted.customer")
R_BL_CHANNEL = _k("recipient.blacklisted.channel")
R_BL_FILE = _k("recipient.blacklisted.file")
R_BL_API = _k("recipient.blacklisted.api")
R_SEG_GLOBAL = _k("recipient.segment_blacklisted.global")
R_SEG_CHANNEL = _k("recipient.segment_blacklisted.channel")
R_LISTS = _k("recipient.lists")
ROUTE_FOUND = _k("route.found")
ROUTE_CHANNEL = _k("route.channel")
C_RUN_MODE = _k("channel.run_mode")
C_FORMAT = _k("channel.supports_format")
C_LONG = _k("channel.supports_long")
C_OVER_MAX = _k("channel.over_max_length")


def strip_fee_code(fee_code: str) -> str:
    """FeeCode without padding and leading zeros: "000010" -> "10", "000000" -> "0"."""
    fee = fee_code.strip(" \x00")
    return fee.lstrip("0") or ("0" if fee else "")


class _ChannelView:
    __slots__ = ("channel", "carriers", "regions", "formats")

    def __init__(self, channel: Channel):
        self.channel = channel
        self.carriers = frozenset(channel.carriers)
        self.regions = frozenset(canonical_region(r) for r in channel.regions)
        self.formats = frozenset(channel.formats)


class _AccountView:
    """What the builder derives from one account, once."""

    __slots__ = ("account", "base", "msg_formats", "fee_codes", "signatures", "access_code",
                 "send_window", "blocked_provinces", "blocked_places", "routes", "route_cache",
                 "segment_cache")

    def __init__(self, account: Account, channels: dict[str, _ChannelView]):
        a = account
        self.account = a
        self.base = {
            **INTERNAL,
            A_ID: a.id, A_STATUS: a.status, A_ACCESS: a.access_mode, A_BILLING: a.billing,
            A_CHANNEL_MODE: a.channel_mode, A_EXTENSION: a.allow_extension,
            A_SIG_CHECK: a.signature_check, A_ONE_SIG: a.one_customer_one_signature,
            A_FILING: a.content_filing, A_AUDIT: a.audit_mode, A_INTERCEPT: a.intercept_mode,
            A_MAX_LENGTH: a.max_length,
        }
        self.msg_formats = frozenset(a.msg_formats)
        self.fee_codes = frozenset(strip_fee_code(c) for c in a.fee_codes)
        self.signatures = frozenset(s.strip().removeprefix("【").removesuffix("】") for s in a.signatures)
        self.access_code = a.access_code
        self.send_window = a.send_window
        provinces, places = set(), set()
        for region in a.blocked_regions:
            province, _, city = region.partition("/")
            if city:
                places.add((canonical_region(province), canonical_region(city)))
            else:
                provinces.add(canonical_region(province))
        self.blocked_provinces = frozenset(provinces)
        self.blocked_places = frozenset(places)
        # channels the policy does not define cannot carry anything; the loader refuses them
        self.routes = tuple(channels[c] for c in a.channels if c in channels)
        self.route_cache: dict[tuple[str, str], _ChannelView | None] = {}
        self.segment_cache: dict[str, _Segment] = {}

    def route(self, carrier: str, province: str) -> _ChannelView | None:
        """The first of the account's channels serving the carrier and (if it limits regions)
        the province."""
        key = (carrier, province)
        found = self.route_cache.get(key, _MISSING)
        if found is not _MISSING:
            return found
        found = None
        for ch in self.routes:
            if carrier in ch.carriers and (not ch.regions or province in ch.regions):
                found = ch
                break
        self.route_cache[key] = found
        return found


class _Segment:
    """What a recipient's facts take from its 7-digit segment, for one account: for an 11-digit
    number everything but its own list memberships depends on the segment alone (segment lists
    hold prefixes of 3 to 7 digits; validity is per segment, see numbers.is_valid_mobile)."""

    __slots__ = ("valid", "info", "region_blocked", "route", "members", "ids", "seg_global",
                 "seg_channel")

    def __init__(self, valid: bool, info, region_blocked: bool, route, members):
        self.valid = valid
        self.info = info
        self.region_blocked = region_blocked
        self.route = route
        self.members = members
        self.ids = sorted({i for m in members for i in m.ids})
        self.seg_global = any(m.is_global for m in members)
        self.seg_channel = route is not None and any(route.channel.id in m.channels for m in members)


SEGMENT_CACHE_MAX = 8_192   # segments remembered per account (~230 bytes each); the cache starts over when full


class FactBuilder:
    def __init__(self, policy: PolicySet, segments: SegmentDB, api_blacklist: ApiBlacklist,
                 file_blacklist: FileBlacklist | None, *, template_var_max: int = 20):
        """Indexes the policy's lists, keywords and templates; seeds the API blacklist from the
        policy's scope-api lists (each entry once ever, see ApiBlacklist.seed)."""
        self.policy = policy
        self._tz = ZoneInfo(policy.platform.timezone)
        self._max_length = policy.platform.max_length
        self._max_destinations = policy.platform.max_destinations
        self._segments = segments
        self._api = api_blacklist
        self._file = file_blacklist
        self.lists = ListIndex(policy.lists.values(), policy.source_dir)
        api_blacklist.seed(self.lists.api_entries)
        self.keywords = KeywordScanner(policy.keyword_groups)
        self.templates = TemplateMatcher(policy.templates.values(), template_var_max)
        self._channels = {cid: _ChannelView(ch) for cid, ch in policy.channels.items()}
        self._accounts = {aid: _AccountView(a, self._channels) for aid, a in policy.accounts.items()}

    def _view(self, account: Account) -> _AccountView:
        view = self._accounts.get(account.id)
        if view is None or view.account is not account:
            # an account object other than the policy's (tests, what-if tools): derive afresh
            view = _AccountView(account, self._channels)
        return view

    def message_facts(self, sub: Submission, account: Account, now: datetime) -> dict:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        view = self._view(account)
        local = now if now.tzinfo is self._tz else now.astimezone(self._tz)
        text = decode_content(sub.content, sub.msg_fmt)
        units = length_units(text)
        signature = extract_signature(text)
        fee = strip_fee_code(sub.fee_code)
        src = sub.src_id
        src_ok = src.startswith(view.access_code)
        malformed = False
        for raw in sub.destinations:
            if not normalize_number(raw)[1]:
                malformed = True
                break
        hits = self.keywords.scan(text)
        template = self.templates.match(text, account.id, signature) if text else None
        window = view.send_window
        return {
            **view.base,
            M_LENGTH: units,
            M_SEGMENTS: segments_for_units(units),
            M_EMPTY: not text,
            M_OVER_MAX: units > self._max_length,
            M_OVER_ACCOUNT_MAX: units > view.account.max_length,
            M_FMT: sub.msg_fmt,
            M_FMT_OK: sub.msg_fmt in view.msg_formats,
            M_FEE: fee,
            M_FEE_OK: not view.fee_codes or fee in view.fee_codes,
            M_SRC: src,
            M_SRC_OK: src_ok,
            M_SRC_EXT: src_ok and len(src) > len(view.access_code),
            M_DEST_COUNT: len(sub.destinations),
            M_DEST_BAD: malformed,
            M_DEST_OVER: len(sub.destinations) > self._max_destinations,
            M_SIG: signature,
            M_HAS_SIG: bool(signature),
            M_SIG_OK: bool(signature) and signature[1:-1] in view.signatures,
            M_IN_WINDOW: window is None or window.contains(local.time()),
            M_KEYWORDS: sorted(hits) if hits else [],
            M_TPL_OK: template is not None,
            M_TPL_ID: template or "",
            M_CONTENT: text,
            M_PARTS: sub.parts if sub.parts > 1 else 1,  # CMPP sends 0 or 1 for a single SMS
            M_HOUR: local.hour,
        }

    def recipient_facts(self, message_facts: dict, raw_destination: str, account: Account) -> dict:
        """A new dict: the message facts plus this recipient's facts and its route."""
        return {**message_facts, **self.recipient_part(message_facts, raw_destination, account)}

    def recipient_part(self, message_facts: dict, raw_destination: str, account: Account) -> dict:
        """A new dict of this recipient's own facts and its route only (the recipient__, route__
        and channel__ keys of recipient_facts, in the same order): what the decision log keeps
        per recipient, without copying the message facts for every recipient."""
        view = self._view(account)
        number, digits = normalize_number(raw_destination)
        length_ok = digits and len(number) == 11
        if length_ok:
            cache = view.segment_cache
            seg = cache.get(number[:7])
            if seg is None:
                seg = self._segment(view, number, digits, length_ok)
                if len(cache) >= SEGMENT_CACHE_MAX:
                    cache.clear()
                cache[number[:7]] = seg
        else:
            seg = self._segment(view, number, digits, length_ok)
        info = seg.info
        key = number_key(number)
        member = self.lists.numbers.get(key)

        if member is None:
            listed = list(seg.ids)
        elif not seg.members:
            listed = list(member.ids)
        else:
            listed = sorted({*seg.ids, *member.ids})

        facts = {
            R_NUMBER: number,
            R_LENGTH_OK: length_ok,
            R_VALID: seg.valid,
            R_SEGMENT: number[:7],
            R_ASSIGNED: info.assigned,
            R_CARRIER: info.carrier,
            R_PROVINCE: info.province,
            R_CITY: info.city,
            R_REGION_BLOCKED: seg.region_blocked,
            R_BL_GLOBAL: member is not None and member.is_global,
            R_BL_CUSTOMER: member is not None and account.id in member.accounts,
            R_BL_FILE: self._file is not None and self._file.contains_key(key),
            R_BL_API: self._api.contains_key(key),
            R_SEG_GLOBAL: seg.seg_global,
            R_LISTS: listed,
        }
        route = seg.route
        if route is None:
            facts[R_BL_CHANNEL] = False
            facts[R_SEG_CHANNEL] = False
            facts[ROUTE_FOUND] = False
            facts[ROUTE_CHANNEL] = ""
            return facts
        ch = route.channel
        cid = ch.id
        facts[R_BL_CHANNEL] = member is not None and cid in member.channels
        facts[R_SEG_CHANNEL] = seg.seg_channel
        facts[ROUTE_FOUND] = True
        facts[ROUTE_CHANNEL] = cid
        facts[C_RUN_MODE] = ch.run_mode
        facts[C_FORMAT] = message_facts[M_FMT] in route.formats
        facts[C_LONG] = ch.supports_long
        facts[C_OVER_MAX] = message_facts[M_LENGTH] > ch.max_length
        return facts

    def _segment(self, view: _AccountView, number: str, digits: bool, length_ok: bool) -> _Segment:
        info = self._segments.lookup(number)
        lists = self.lists
        members = lists.segment(number) if digits and lists.prefix_lengths else ()
        province = info.province
        region_blocked = bool(province) and (
            province in view.blocked_provinces or (province, info.city) in view.blocked_places)
        return _Segment(length_ok and is_valid_mobile(number), info, region_blocked,
                        view.route(info.carrier, province), members)
