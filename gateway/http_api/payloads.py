"""The JSON bodies and query strings of the API, checked before anything is evaluated.

Types are strict (a number is not a string): a customer's client that sends 13800138000 as a
JSON number would lose leading zeros and "+86" in other cases, so it is told at once. Fields
not listed here are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from .answers import BAD_LIST, BAD_SRC_ID, ApiError, request_error, submit_refused

MAX_P2P = 1000          # mobileContentList entries
MAX_ACK = 1000          # ids per acknowledgement
MAX_PULL = 1000         # reports per pull
DEFAULT_PULL = 100


@dataclass(frozen=True, slots=True)
class Options:
    extno: str              # digits appended to the account's access code (Src_Id)
    report: bool            # status reports wanted (Registered_Delivery)


@dataclass(frozen=True, slots=True)
class GroupSubmit:
    content: str
    mobiles: list[str]
    options: Options


@dataclass(frozen=True, slots=True)
class P2pSubmit:
    entries: list[tuple[str, str]]   # (mobile, content)
    options: Options


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise request_error(400, "body: not UTF-8") from None
    except json.JSONDecodeError as e:
        raise request_error(400, f"body: not valid JSON ({e.msg} at line {e.lineno} column "
                                 f"{e.colno})") from None
    except (ValueError, RecursionError):  # an integer of thousands of digits, deep nesting
        raise request_error(400, "body: JSON beyond what is accepted (huge number or deep "
                                 "nesting)") from None


def _object(doc: object) -> dict:
    if not isinstance(doc, dict):
        raise request_error(400, "body: expected a JSON object")
    return doc


def _options(doc: dict) -> Options:
    extno = doc.get("extno", "")
    if not isinstance(extno, str):
        raise request_error(400, "extno: expected a string of digits")
    if extno and not (extno.isascii() and extno.isdigit()):
        raise submit_refused(BAD_SRC_ID, f"extno: {extno[:30]!r} is not a string of digits")
    report = doc.get("report", True)
    if not isinstance(report, bool):
        raise request_error(400, "report: expected true or false")
    return Options(extno, report)


def group_submit(body: bytes) -> GroupSubmit:
    doc = _object(parse_json(body))
    content, mobiles = doc.get("content"), doc.get("mobiles")
    if not isinstance(content, str):
        raise request_error(400, "content: required, a string")
    if not isinstance(mobiles, list):
        raise request_error(400, "mobiles: required, a list of strings")
    for i, mobile in enumerate(mobiles):
        if not isinstance(mobile, str):
            raise request_error(400, f"mobiles[{i}]: expected a string")
    return GroupSubmit(content, mobiles, _options(doc))


def p2p_submit(body: bytes) -> P2pSubmit:
    """Code 22 names the entry (`index`, -1 for the list itself) and the `field` at fault."""
    doc = _object(parse_json(body))
    entries = doc.get("mobileContentList")
    if not isinstance(entries, list):
        what = "required" if entries is None else f"expected a list, got {_kind(entries)}"
        raise _bad_list(-1, "", f"mobileContentList: {what}")
    if not 1 <= len(entries) <= MAX_P2P:
        raise _bad_list(-1, "", f"mobileContentList: {len(entries)} entries; 1 to {MAX_P2P} "
                                "are accepted")
    pairs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _bad_list(i, "", f"mobileContentList[{i}]: expected an object with mobile and "
                                   f"content, got {_kind(entry)}")
        for field in ("mobile", "content"):
            value = entry.get(field)
            if not isinstance(value, str):
                what = "missing" if value is None else f"expected a string, got {_kind(value)}"
                raise _bad_list(i, field, f"mobileContentList[{i}].{field}: {what}")
        pairs.append((entry["mobile"], entry["content"]))
    return P2pSubmit(pairs, _options(doc))


def _bad_list(index: int, field: str, message: str) -> ApiError:
    return submit_refused(BAD_LIST, message, index=index, field=field)


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "null")


def ack_ids(body: bytes) -> list[int]:
    doc = _object(parse_json(body))
    ids = doc.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ACK:
        raise request_error(400, f"ids: required, a list of 1 to {MAX_ACK} report ids")
    for i, value in enumerate(ids):
        if type(value) is not int or not 1 <= value < 2 ** 63:
            raise request_error(400, f"ids[{i}]: expected a report id (a positive integer)")
    return ids


def pull_params(query: str) -> tuple[int, int]:
    """(cursor, limit) of GET /v1/reports."""
    try:
        params = parse_qs(query, strict_parsing=bool(query), max_num_fields=20)
    except ValueError:
        raise request_error(400, "query string is malformed") from None
    cursor = _int_param(params, "cursor", 0, 0, 2 ** 63 - 1)
    limit = _int_param(params, "limit", DEFAULT_PULL, 1, MAX_PULL)
    return cursor, limit


def _int_param(params: dict, name: str, default: int, low: int, high: int) -> int:
    values = params.get(name)
    if values is None:
        return default
    text = values[-1]
    if len(values) > 1 or len(text) > 19 or not (text.isascii() and text.isdigit()) \
            or not low <= int(text) <= high:
        raise request_error(400, f"{name}: expected one integer from {low} to {high}")
    return int(text)
