"""Load a rules folder into a PolicySet, or report everything wrong with it at once.

Every *.yaml / *.yml file under the folder is read (not tests/, which holds rule test suites,
nor the watched file-blacklist folder, which is live data). A file is a mapping of sections;
sections from several files merge and ids are unique per section across files. See
docs/rules.md for the schema.

    load_policy(dir)   -> PolicySet, or PolicyError whose .problems lists every problem
    check_policy(dir)  -> [Problem], empty when the folder is valid
    policy_files(dir)  -> {relative path: bytes}, the files the version hash covers
"""
from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..vocabulary import ENUMS
from .entries import check_entry_file
from .errors import PolicyError, Problem
from .fields import (Field, Invalid, Reader, Reported, as_node, boolean, choice, ident, integer,
                     list_of, mapping, optional, positive_number, read_fields, ref, scalar, suggest,
                     text, word)
from .model import (LIMIT_SCOPES, Account, Channel, FileBlacklist, KeywordGroup, Limit, NumberList,
                    Platform, PolicySet, Rule, Template, Where)
from .values import (cidr, cmpp_version, digits, fee_code, http_url, keyword, msg_format, path_name, phone_number,
                     province, region, segment, signature, template_text, timezone, window)
from .when import read_when
from .yamlmarks import MappingNode, Node, ScalarNode, SequenceNode, YamlSyntaxError, compose, describe

RECIPIENT_CODES = tuple(f"MA:{n:04d}" for n in (
    1, 2, 3, 5, 6, 9, 11, 13, 14, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 33, 34, 35, 36, 37, 38, 39,
    41, 42, 43))
SUBMIT_CODES = ("4", "5", "9", "10", "12", "15", "16", "17", "18", "19", "20", "22", "102")

CARRIERS = tuple(c for c in ENUMS["recipient.carrier"] if c != "unknown")
CMPP_ACCOUNT_ID_MAX = 6  # CMPP_CONNECT Source_Addr is 6 octets

ACCOUNT_FIELDS = {
    "id": Field(ident, required=True),
    "name": Field(word, required=True),
    "secret": Field(word, required=True),
    "access_mode": Field(choice(*ENUMS["account.access_mode"])),
    "status": Field(choice(*ENUMS["account.status"])),
    "bound_ips": Field(list_of(cidr)),
    "cmpp_versions": Field(list_of(cmpp_version, non_empty=True)),
    "billing": Field(choice(*ENUMS["account.billing"])),
    "balance": Field(integer(0)),
    "price": Field(integer(0)),
    "login_window": Field(optional(window)),
    "send_window": Field(optional(window)),
    "max_connections": Field(integer(1, 1000)),
    "access_code": Field(digits(20)),
    "allow_extension": Field(boolean),
    "channel_mode": Field(choice(*ENUMS["account.channel_mode"])),
    "signature_check": Field(boolean),
    "signatures": Field(list_of(signature)),
    "one_customer_one_signature": Field(boolean),
    "content_filing": Field(choice(*ENUMS["account.content_filing"])),
    "audit_mode": Field(choice(*ENUMS["account.audit_mode"])),
    "intercept_mode": Field(choice(*ENUMS["account.intercept_mode"])),
    "msg_formats": Field(list_of(msg_format, non_empty=True)),
    "fee_codes": Field(list_of(fee_code)),
    "blocked_regions": Field(list_of(region)),
    "channels": Field(list_of(ref("channels", "channel"))),
    "max_length": Field(integer(1)),
    "push_url": Field(optional(http_url)),
    "push_ok_body": Field(word),
}

CHANNEL_FIELDS = {
    "id": Field(ident, required=True),
    "name": Field(word, required=True),
    "carriers": Field(list_of(choice(*CARRIERS), non_empty=True), required=True),
    "regions": Field(list_of(province)),
    "run_mode": Field(choice(*ENUMS["channel.run_mode"])),
    "protocol": Field(choice("cmpp", "http")),
    "supports_long": Field(boolean),
    "formats": Field(list_of(msg_format, non_empty=True)),
    "max_length": Field(integer(1)),
    "host": Field(word),
    "port": Field(integer(1, 65535)),
    "account": Field(text),
    "secret": Field(text),
    "version": Field(cmpp_version),
    "window": Field(integer(1, 1024)),
    "connections": Field(integer(1, 256)),
    "rate": Field(integer(0)),
    "http_url": Field(optional(http_url)),
}

LIST_FIELDS = {
    "id": Field(ident, required=True),
    "kind": Field(choice("numbers", "segments"), required=True),
    "scope": Field(choice("global", "customer", "channel", "api"), required=True),
    "account": Field(ref("accounts", "account")),
    "channel": Field(ref("channels", "channel")),
    "numbers": Field(list_of(phone_number)),
    "segments": Field(list_of(segment)),
    "files": Field(list_of(path_name)),
}

KEYWORD_GROUP_FIELDS = {
    "id": Field(ident, required=True),
    "words": Field(list_of(keyword, non_empty=True), required=True),
}

TEMPLATE_FIELDS = {
    "id": Field(ident, required=True),
    "text": Field(template_text, required=True),
    "account": Field(optional(ref("accounts", "account"))),
}

RULE_FIELDS = {
    "id": Field(ident, required=True),
    "description": Field(text),
    "stage": Field(choice("submit", "recipient")),
    "action": Field(choice("reject", "hold")),
    "code": Field(as_node),
    "priority": Field(integer(1, 65535), required=True),
    "mode": Field(choice("enforce", "shadow")),
    "when": Field(as_node, required=True),
}

LIMIT_FIELDS = {
    "id": Field(ident, required=True),
    "scope": Field(choice(*LIMIT_SCOPES), required=True),
    "max": Field(integer(1), required=True),
    "window": Field(choice("minute", "hour", "day", "month"), required=True),
    "size": Field(integer(1)),
    "sliding": Field(boolean),
    "unit": Field(choice("messages", "segments")),
    "accounts": Field(list_of(ref("accounts", "account"))),
    "channels": Field(list_of(ref("channels", "channel"))),
}

PLATFORM_FIELDS = {
    "timezone": Field(timezone),
    "max_length": Field(integer(1, 10000)),
    "max_destinations": Field(integer(1, 100)),
    "shadow_all": Field(boolean),
}

FILE_BLACKLIST_FIELDS = {
    "folder": Field(path_name, required=True),
    "poll_seconds": Field(positive_number),
}

# section -> (fields, what one item is called in messages); the order is the reading order
LIST_SECTIONS = {
    "accounts": (ACCOUNT_FIELDS, "account"),
    "channels": (CHANNEL_FIELDS, "channel"),
    "lists": (LIST_FIELDS, "list"),
    "keyword_groups": (KEYWORD_GROUP_FIELDS, "keyword group"),
    "templates": (TEMPLATE_FIELDS, "template"),
    "rules": (RULE_FIELDS, "rule"),
    "limits": (LIMIT_FIELDS, "limit"),
}
SECTIONS = ("platform", *LIST_SECTIONS, "file_blacklist")

SKIPPED_FOLDERS = ("tests",)  # rule test suites, read by `smspolicy test`


def load_policy(rules_dir: str | Path) -> PolicySet:
    loading = _Loading(Path(rules_dir))
    policy = loading.run()
    if loading.problems:
        raise PolicyError(loading.problems)
    return policy


def check_policy(rules_dir: str | Path) -> list[Problem]:
    loading = _Loading(Path(rules_dir))
    loading.run()
    return loading.problems


def policy_files(rules_dir: str | Path) -> dict[str, bytes]:
    """The YAML files and list entry files of the folder, as hashed into PolicySet.version."""
    loading = _Loading(Path(rules_dir))
    loading.run()
    return dict(loading.files)


def version_of(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        name = rel.encode()
        # lengths keep ("a", "bc") and ("ab", "c") from hashing alike
        digest.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:16]


@dataclass
class _Section:
    file: str
    key: ScalarNode
    value: Node


class _Loading:
    def __init__(self, root: Path):
        self.root = root
        self.r = Reader()
        self.files: dict[str, bytes] = {}
        self.problems: list[Problem] = []
        self.ids: dict[str, dict[str, Where]] = {s: {} for s in LIST_SECTIONS}
        self.built: dict[str, list] = {s: [] for s in LIST_SECTIONS}
        self.platform: Platform | None = None
        self.platform_where: Where | None = None
        self.file_blacklist: FileBlacklist | None = None
        self.file_blacklist_where: Where | None = None
        self.entry_files: list[tuple[str, str, Where]] = []  # (kind, name as written, where named)
        self.unparsed: set[str] = set()  # sections a file with a syntax error may define: ids unknown

    # -- the whole folder ---------------------------------------------------------------------
    def run(self) -> PolicySet | None:
        if not self.root.is_dir():
            self.r.file = str(self.root)
            self.r.problem(None, "", "the rules folder does not exist or is not a folder")
            return self._finish(None)
        docs = self._read_yaml_files()
        if not docs and not self.r.problems:
            self.r.file = "."
            self.r.problem(None, "", "no rules files (*.yaml) in the rules folder")
        sections = self._sections(docs)
        self._file_blacklist(sections.pop("file_blacklist", []))
        self._drop_file_blacklist_folder(sections)
        self._platform(sections.pop("platform", []))
        for name in LIST_SECTIONS:
            for sec in sections.get(name, []):
                self._list_section(name, sec)
        self._resolve_refs()
        self._entry_files()
        policy = None
        if not self.r.problems:
            policy = PolicySet(
                version=version_of(self.files),
                files=dict(self.files),
                platform=self.platform or Platform(),
                accounts={a.id: a for a in self.built["accounts"]},
                channels={c.id: c for c in self.built["channels"]},
                lists={lst.id: lst for lst in self.built["lists"]},
                keyword_groups={k.id: k for k in self.built["keyword_groups"]},
                templates={t.id: t for t in self.built["templates"]},
                rules=tuple(self.built["rules"]),
                limits=tuple(self.built["limits"]),
                file_blacklist=self.file_blacklist,
                source_dir=str(self.root.resolve()),
            )
        return self._finish(policy)

    def _finish(self, policy: PolicySet | None) -> PolicySet | None:
        unique = {(str(p), p.sort_key()): p for p in self.r.problems}
        self.problems = sorted(unique.values(), key=Problem.sort_key)
        return policy

    def _read_yaml_files(self) -> dict[str, Node]:
        docs: dict[str, Node] = {}
        for rel in self._yaml_paths():
            self.r.file = rel
            if not _is_utf8(rel):  # e.g. unzipped from a GBK archive; its name could not be hashed or shown
                self.r.problem(None, "", "the file name is not UTF-8; rename the file")
                continue
            try:
                data = (self.root / rel).read_bytes()
            except OSError as e:
                self.r.problem(None, "", f"cannot read the file: {e.strerror}")
                continue
            self.files[rel] = data
            try:
                node = compose(data)
            except YamlSyntaxError as e:
                self.r.problems.append(Problem(Where(rel, e.line, e.column, ""), e.message))
                self.unparsed |= _sections_named(data)
                continue
            if node is not None:
                docs[rel] = node
        return docs

    def _yaml_paths(self) -> list[str]:
        found = []
        visited: set[str] = set()  # real paths: a symlink loop is walked once
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in visited:
                dirnames[:] = []
                continue
            visited.add(real)
            top = Path(dirpath) == self.root
            dirnames[:] = sorted(d for d in dirnames
                                 if not d.startswith(".") and not (top and d in SKIPPED_FOLDERS))
            for name in filenames:
                if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                    found.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(found)

    def _sections(self, docs: dict[str, Node]) -> dict[str, list[_Section]]:
        out: dict[str, list[_Section]] = {}
        for rel, node in docs.items():
            self.r.file = rel
            if not isinstance(node, MappingNode):
                self.r.problem(node, "", "a rules file is a mapping of sections (" + ", ".join(SECTIONS)
                               + f"), got {describe(node)}")
                continue
            items = mapping(node, self.r, "")
            for key, (knode, vnode) in (items or {}).items():
                if key not in SECTIONS:
                    self.r.problem(knode, key, f"unknown section '{key}'" + suggest(key, SECTIONS))
                    continue
                out.setdefault(key, []).append(_Section(rel, knode, vnode))
        return out

    # -- single-mapping sections ----------------------------------------------------------------
    def _single(self, sec: _Section, name: str, first: Where | None) -> bool:
        self.r.file = sec.file
        if first is not None:
            self.r.problem(sec.key, name, f"{name} is already set at {first.file}:{first.line}:{first.column}")
            return False
        return True

    def _platform(self, secs: list[_Section]) -> None:
        for sec in _written(secs):
            if not self._single(sec, "platform", self.platform_where):
                continue
            self.platform_where = self.r.where(sec.key, "platform")
            values, ok, _ = read_fields(sec.value, PLATFORM_FIELDS, self.r, "platform")
            if ok:
                self.platform = Platform(**values)

    def _file_blacklist(self, secs: list[_Section]) -> None:
        for sec in _written(secs):
            if not self._single(sec, "file_blacklist", self.file_blacklist_where):
                continue
            self.file_blacklist_where = self.r.where(sec.key, "file_blacklist")
            values, ok, items = read_fields(sec.value, FILE_BLACKLIST_FIELDS, self.r, "file_blacklist")
            if not ok:
                continue
            try:
                folder = (self.root / values["folder"]).resolve()
                is_dir = folder.is_dir()
            except (OSError, ValueError) as e:
                self.r.problem(items["folder"][1], "file_blacklist.folder",
                               f"the file-blacklist folder '{values['folder']}' cannot be used: "
                               f"{getattr(e, 'strerror', None) or e}")
                continue
            if not is_dir:
                self.r.problem(items["folder"][1], "file_blacklist.folder",
                               f"the file-blacklist folder '{values['folder']}' does not exist"
                               + ("" if Path(values["folder"]).is_absolute() else " in the rules folder"))
                continue
            if folder == self.root.resolve() or self.root.resolve().is_relative_to(folder):
                self.r.problem(items["folder"][1], "file_blacklist.folder",
                               "the file-blacklist folder must not contain the rules folder")
                continue
            self.file_blacklist = FileBlacklist(str(folder), values.get("poll_seconds", 1.0))

    def _drop_file_blacklist_folder(self, sections: dict[str, list[_Section]]) -> None:
        """YAML files inside the watched folder are live data, not rules: forget them."""
        if self.file_blacklist is None:
            return
        folder = Path(self.file_blacklist.folder)
        inside = {rel for rel in self.files if (self.root / rel).resolve().is_relative_to(folder)}
        if not inside:
            return
        for rel in inside:
            del self.files[rel]
        self.r.problems = [p for p in self.r.problems if p.where.file not in inside]
        for name in list(sections):
            sections[name] = [s for s in sections[name] if s.file not in inside]

    # -- list sections ------------------------------------------------------------------------
    def _list_section(self, name: str, sec: _Section) -> None:
        self.r.file = sec.file
        fields, what = LIST_SECTIONS[name]
        node = sec.value
        if isinstance(node, ScalarNode) and scalar(node) is None:
            return  # an empty section while editing is not an error
        if not isinstance(node, SequenceNode):
            self.r.problem(node, name, f"expected a list of {what}s, got {describe(node)}")
            return
        for i, item in enumerate(node.value):
            path = f"{name}[{i}]"
            values, ok, items = read_fields(item, fields, self.r, path)
            if "id" in values:
                ok = self._register(name, what, values["id"], items["id"][1], path) and ok
            built = getattr(self, f"_build_{name}")(values, ok, items, self.r.where(item, path), path)
            if built is not None:
                self.built[name].append(built)

    def _register(self, section: str, what: str, ident: str, node: Node, path: str) -> bool:
        seen = self.ids[section]
        first = seen.get(ident)
        if first is not None:
            self.r.problem(node, f"{path}.id", f"duplicate {what} id '{ident}' "
                                               f"(first defined at {first.file}:{first.line}:{first.column})")
            return False
        seen[ident] = self.r.where(node, f"{path}.id")
        return True

    def _build_accounts(self, v: dict, ok: bool, items: dict, where: Where, path: str) -> Account | None:
        if "id" in v and v.get("access_mode", "cmpp") == "cmpp" and len(v["id"]) > CMPP_ACCOUNT_ID_MAX:
            self.r.problem(items["id"][1], f"{path}.id", f"a CMPP account id is the CONNECT Source_Addr: "
                                                         f"at most {CMPP_ACCOUNT_ID_MAX} characters")
            ok = False
        return Account(**v, where=where) if ok else None

    def _build_channels(self, v: dict, ok: bool, items: dict, where: Where, path: str) -> Channel | None:
        if ok and v.get("protocol") == "http" and not v.get("http_url"):
            self.r.problem(items["protocol"][1], f"{path}.protocol", "a channel with protocol http needs http_url")
            ok = False
        return Channel(**v, where=where) if ok else None

    def _build_lists(self, v: dict, ok: bool, items: dict, where: Where, path: str) -> NumberList | None:
        kind, scope = v.get("kind"), v.get("scope")
        other = {"numbers": "segments", "segments": "numbers"}.get(kind)
        if other in items:
            self.r.problem(items[other][0], f"{path}.{other}",
                           f"'{other}' is for lists of kind {other}; this list has kind {kind}, use '{kind}'")
            ok = False
        for key, needed_scope in (("account", "customer"), ("channel", "channel")):
            if scope == needed_scope and key not in items:
                self.r.problem(items.get("scope", (None, None))[1], f"{path}.scope",
                               f"a list with scope {scope} needs '{key}'")
                ok = False
            elif scope and scope != needed_scope and key in items:
                self.r.problem(items[key][0], f"{path}.{key}",
                               f"'{key}' is only for lists with scope {needed_scope}, this one has scope {scope}")
                ok = False
        if scope == "api" and kind == "segments":
            self.r.problem(items["kind"][1], f"{path}.kind", "the API blacklist holds numbers: scope api needs kind numbers")
            ok = False
        if kind and "files" in v:  # checked even when the list has other problems
            nodes = items["files"][1].value
            for i, name in enumerate(v["files"]):
                self.entry_files.append((kind, name, self.r.where(nodes[i], f"{path}.files[{i}]")))
        if not ok:
            return None
        entries = v.pop("numbers", ()) + v.pop("segments", ())
        return NumberList(**v, entries=frozenset(entries), where=where)

    def _build_keyword_groups(self, v: dict, ok: bool, items: dict, where: Where, path: str) -> KeywordGroup | None:
        return KeywordGroup(**v, where=where) if ok else None

    def _build_templates(self, v: dict, ok: bool, items: dict, where: Where, path: str) -> Template | None:
        return Template(**v, where=where) if ok else None

    def _build_limits(self, v: dict, ok: bool, items: dict, where: Where, path: str) -> Limit | None:
        scope = v.get("scope", "")
        if scope.startswith("account") and v.get("channels"):
            self.r.problem(items["channels"][0], f"{path}.channels",
                           f"'channels' is only for the channel scopes; scope {scope} counts per account")
            ok = False
        return Limit(**v, where=where) if ok else None

    def _build_rules(self, v: dict, ok: bool, items: dict, where: Where, path: str) -> Rule | None:
        if "stage" in items and "stage" not in v:
            stage = None  # the stage itself is bad (reported): skip the checks that depend on it
        else:
            stage = v.get("stage", "recipient")
        action = v.get("action", "reject")
        if stage == "submit" and action == "hold":
            self.r.problem(items["action"][1], f"{path}.action",
                           "only recipient-stage rules can hold a message for audit")
            ok = False
        code = None
        if "code" in items and stage is not None:
            try:
                code = self._code(items["code"][1], stage)
            except Invalid as e:
                self.r.problem(items["code"][1], f"{path}.code", e.message)
                ok = False
        elif stage == "submit":
            self.r.problems.append(Problem(where, "a submit-stage rule needs a 'code': one of "
                                           + ", ".join(SUBMIT_CODES)))
            ok = False
        when = None
        if "when" in items:
            try:
                when = read_when(items["when"][1], self.r, f"{path}.when", stage)
            except Reported:
                ok = False
        if not ok:
            return None
        return Rule(id=v["id"], stage=stage, action=action, code=code, priority=v["priority"],
                    mode=v.get("mode", "enforce"), description=v.get("description", ""), when=when,
                    index=len(self.built["rules"]), where=where)

    @staticmethod
    def _code(node: Node, stage: str) -> str | None:
        value = scalar(node)
        if value is None:
            if stage == "submit":
                raise Invalid("a submit-stage rule needs a code: one of " + ", ".join(SUBMIT_CODES))
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if stage == "submit":
            if value not in SUBMIT_CODES:
                hint = " (that is a status-report code: did you mean stage: recipient?)" \
                    if value in RECIPIENT_CODES else ""
                raise Invalid(f"{describe(node)} is not a submit result code{hint}; submit-stage rules use "
                              "one of: " + ", ".join(SUBMIT_CODES))
            return value
        if value not in RECIPIENT_CODES:
            hint = " (that is a submit result code: did you mean stage: submit?)" if value in SUBMIT_CODES else ""
            raise Invalid(f"{describe(node)} is not a status-report code{hint}; recipient-stage rules use "
                          "one of: " + ", ".join(RECIPIENT_CODES))
        return value

    # -- across sections ------------------------------------------------------------------------
    def _resolve_refs(self) -> None:
        for ref_ in self.r.refs:
            if ref_.section in self.unparsed:
                continue  # its ids may be in the file that did not parse: its syntax error is reported
            known = self.ids[ref_.section]
            if ref_.ident not in known:
                self.r.problems.append(Problem(ref_.where, f"unknown {ref_.what} '{ref_.ident}'"
                                               + _hint(ref_.ident, sorted(known), ref_.what)))

    def _entry_files(self) -> None:
        """Check the lists' entry files (one entry per line) and add them to the version."""
        checked: set[tuple[str, str]] = set()
        for kind, name, where in self.entry_files:
            path = self.root / name
            rel = Path(os.path.relpath(path, self.root)).as_posix()
            if (rel, kind) in checked:
                continue
            checked.add((rel, kind))
            try:
                data = path.read_bytes()
            except (OSError, ValueError) as e:
                reason = "does not exist" if isinstance(e, FileNotFoundError) \
                    else f"cannot be read ({getattr(e, 'strerror', None) or e})"
                self.r.problems.append(Problem(where, f"the entry file '{name}' {reason}"))
                continue
            self.files[rel] = data
            self.r.problems.extend(check_entry_file(data, kind, rel)[1])


def _written(secs: list[_Section]) -> list[_Section]:
    """The sections not left empty (`platform:` with nothing under it is as if not there)."""
    return [sec for sec in secs if not (isinstance(sec.value, ScalarNode) and scalar(sec.value) is None)]


def _sections_named(data: bytes) -> set[str]:
    """The sections a file that is not valid YAML seems to define (its top-level `name:` lines);
    every section when none can be seen."""
    found = set()
    for line in data.decode("utf-8", "replace").splitlines():
        key = line.split(":", 1)[0].strip().strip("'\"")
        if ":" in line and key in SECTIONS and not line[:1].isspace():
            found.add(key)
    return found or set(SECTIONS)


def _is_utf8(name: str) -> bool:
    """Whether a name from the file system was valid UTF-8 (os decodes other bytes to surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _hint(ident: str, known: list[str], what: str) -> str:
    if not known:
        return f"; no {what} is defined"
    close = difflib.get_close_matches(ident, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return "; defined: " + ", ".join(known) if len(known) <= 12 else ""
