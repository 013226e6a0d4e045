"""Every fact a rule can test: its name, type, where it exists and an example.

This table is the contract between the fact builders (policy/facts), the rule loader (which
refuses unknown facts and type mismatches), both evaluators, and docs/rules.md.

`stage` says where a fact exists: "message" facts exist for submit-stage rules and
recipient-stage rules alike; "recipient" facts only for recipient-stage rules.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    name: str
    type: str  # "bool" | "int" | "str" | "list"  (list = list of strings)
    stage: str  # "message" | "recipient"
    description: str
    example: object


def _f(name, type_, stage, description, example):
    return Fact(name, type_, stage, description, example)


FACTS: dict[str, Fact] = {f.name: f for f in [
    # --- the account (from accounts.yaml) ---
    _f("account.id", "str", "message", "customer account id (CMPP SP_Id)", "900001"),
    _f("account.status", "str", "message", "active | disabled", "active"),
    _f("account.access_mode", "str", "message", "cmpp | http", "cmpp"),
    _f("account.billing", "str", "message", "prepaid | postpaid", "prepaid"),
    _f("account.channel_mode", "str", "message", "direct | virtual access-code mode", "virtual"),
    _f("account.allow_extension", "bool", "message", "sub-number extension allowed", True),
    _f("account.signature_check", "bool", "message", "signature must be registered", True),
    _f("account.one_customer_one_signature", "bool", "message", "一客一签 mode", False),
    _f("account.content_filing", "str", "message", "off | reject (unfiled content refused)", "reject"),
    _f("account.audit_mode", "str", "message", "none | manual | reject", "none"),
    _f("account.intercept_mode", "str", "message", "reject | pass (illegal content handling)", "reject"),
    _f("account.max_length", "int", "message", "the account's maximum characters", 1000),
    # --- the message ---
    _f("message.length", "int", "message", "content length in characters (UTF-16 units)", 24),
    _f("message.segments", "int", "message", "billing segments (70 single, 67 per long part)", 1),
    _f("message.empty", "bool", "message", "no content at all", False),
    _f("message.over_platform_max", "bool", "message", "longer than the platform's 1000 characters", False),
    _f("message.over_account_max", "bool", "message", "longer than the account's max_length", False),
    _f("message.msg_fmt", "int", "message", "CMPP Msg_Fmt", 8),
    _f("message.msg_fmt_allowed", "bool", "message", "Msg_Fmt is one the account may use", True),
    _f("message.fee_code", "str", "message", "FeeCode as sent (leading zeros stripped)", "10"),
    _f("message.fee_code_allowed", "bool", "message", "FeeCode is one of the account's fee codes", True),
    _f("message.src_id", "str", "message", "Src_Id as sent", "10690001"),
    _f("message.src_id_valid", "bool", "message", "Src_Id starts with the account's access code", True),
    _f("message.src_id_extended", "bool", "message", "Src_Id carries an extension after the access code", False),
    _f("message.dest_count", "int", "message", "number of destinations", 1),
    _f("message.dest_over_max", "bool", "message", "more destinations than the platform's max_destinations (100)", False),
    _f("message.dest_malformed", "bool", "message", "a destination has characters other than digits (after +86/0086)", False),
    _f("message.signature", "str", "message", "the 【signature】 at head or tail, '' when none", "【云片科技】"),
    _f("message.has_signature", "bool", "message", "the content carries a 【signature】", True),
    _f("message.signature_registered", "bool", "message", "the signature is registered for the account", True),
    _f("message.in_send_window", "bool", "message", "now is inside the account's sending window", True),
    _f("message.keyword_groups", "list", "message", "ids of keyword groups hit by the content", ["gambling"]),
    _f("message.template_matched", "bool", "message", "content matches a filed template of the account", True),
    _f("message.template_id", "str", "message", "id of the matched template, '' when none", "tpl-verify-code"),
    _f("message.content", "str", "message", "the decoded content", "【云片科技】您的验证码是1234"),
    _f("message.parts", "int", "message", "parts the customer sent (Pk_total)", 1),
    _f("message.hour", "int", "message", "hour of day in the platform time zone", 14),
    # --- one recipient ---
    _f("recipient.number", "str", "recipient", "the destination, normalized (prefix stripped)", "13800138000"),
    _f("recipient.length_ok", "bool", "recipient", "11 digits", True),
    _f("recipient.valid", "bool", "recipient", "a valid Chinese mobile number (phonenumbers)", True),
    _f("recipient.segment", "str", "recipient", "the first 7 digits", "1380013"),
    _f("recipient.segment_assigned", "bool", "recipient", "the segment is in the segment database", True),
    _f("recipient.carrier", "str", "recipient", "cmcc | cucc | ctcc | cbn | unknown", "cmcc"),
    _f("recipient.province", "str", "recipient", "province of the segment ('' unknown)", "北京"),
    _f("recipient.city", "str", "recipient", "city of the segment ('' unknown)", "北京"),
    _f("recipient.region_blocked", "bool", "recipient", "province or city is in the account's blocked regions", False),
    _f("recipient.blacklisted.global", "bool", "recipient", "number on a global blacklist", False),
    _f("recipient.blacklisted.customer", "bool", "recipient", "number on one of the account's blacklists", False),
    _f("recipient.blacklisted.channel", "bool", "recipient", "number on a blacklist of the routed channel", False),
    _f("recipient.blacklisted.file", "bool", "recipient", "number in the watched file-blacklist folder", False),
    _f("recipient.blacklisted.api", "bool", "recipient", "number on the API blacklist (admin gRPC)", False),
    _f("recipient.segment_blacklisted.global", "bool", "recipient", "segment on a global segment list", False),
    _f("recipient.segment_blacklisted.channel", "bool", "recipient", "segment on a segment list of the routed channel", False),
    _f("recipient.lists", "list", "recipient", "ids of every number or segment list holding the recipient", ["vip"]),
    # --- the route chosen for the recipient ---
    _f("route.found", "bool", "recipient", "a channel of the account serves this carrier and region", True),
    _f("route.channel", "str", "recipient", "the chosen channel id, '' when none", "ch-cmcc-bj"),
    _f("channel.run_mode", "str", "recipient", "normal | reject", "normal"),
    _f("channel.supports_format", "bool", "recipient", "the channel carries this Msg_Fmt", True),
    _f("channel.supports_long", "bool", "recipient", "the channel takes long (multi-part) SMS", True),
    _f("channel.over_max_length", "bool", "recipient", "the content is longer than the channel's max_length", False),
]}

# Values a rule may compare each enum-like string fact with; the loader refuses others.
ENUMS: dict[str, tuple[str, ...]] = {
    "account.status": ("active", "disabled"),
    "account.access_mode": ("cmpp", "http"),
    "account.billing": ("prepaid", "postpaid"),
    "account.channel_mode": ("direct", "virtual"),
    "account.content_filing": ("off", "reject"),
    "account.audit_mode": ("none", "manual", "reject"),
    "account.intercept_mode": ("reject", "pass"),
    "recipient.carrier": ("cmcc", "cucc", "ctcc", "cbn", "unknown"),
    "channel.run_mode": ("normal", "reject"),
}


def engine_key(fact_name: str) -> str:
    """The flat key of a fact in the message given to the engines ('.' is a path separator there)."""
    return fact_name.replace(".", "__")
