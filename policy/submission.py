"""The normalized request the daemon evaluates: one submitted message and its destinations."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .facts.content import codec_for

ACCESS_MODES = ("cmpp", "http")


@dataclass(slots=True)
class Submission:
    request_id: str
    account_id: str
    frontend_id: str = ""
    access_mode: str = "cmpp"                # cmpp | http
    src_id: str = ""
    destinations: list[str] = field(default_factory=list)  # as received, prefixes and all
    content: bytes = b""                     # reassembled when it was a long SMS
    msg_fmt: int = 8
    fee_code: str = ""
    fee_type: str = ""
    service_id: str = ""
    registered_delivery: bool = False
    parts: int = 1                           # Pk_total the customer sent
    message_ids: list[str] = field(default_factory=list)  # one per destination

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Submission":
        """From a decoded JSON/YAML object (decision-log replay, rule test cases).

        `content` may be bytes, or a str that is encoded for `msg_fmt` (see
        policy.facts.content.codec_for) so test cases can be written as readable text.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown submission field(s): {', '.join(unknown)}")
        for required in ("request_id", "account_id"):
            if required not in data:
                raise ValueError(f"submission field {required!r} is required")
        values = dict(data)
        msg_fmt = int(values.get("msg_fmt", 8))
        values["msg_fmt"] = msg_fmt
        content = values.get("content", b"")
        if isinstance(content, str):
            values["content"] = content.encode(codec_for(msg_fmt), "replace")
        values["destinations"] = [str(d) for d in values.get("destinations", ())]
        values["message_ids"] = [str(m) for m in values.get("message_ids", ())]
        if values.get("access_mode", "cmpp") not in ACCESS_MODES:
            raise ValueError(f"access_mode must be one of {ACCESS_MODES}, not {values['access_mode']!r}")
        return cls(**values)

