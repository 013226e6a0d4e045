"""Every knob of the daemon, the front-end and the forwarder, with its default, in one place.

Sources, later ones winning: the defaults below, a YAML settings file (`--config` or
$SMSPOLICY_CONFIG), environment variables SMSPOLICY_<NAME> (upper case), command-line flags.
Unknown keys and wrong types are refused with one exact message each (tests/test_settings.py).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

import yaml


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    # --- policy daemon ---
    listen: str = "127.0.0.1:50051"             # gRPC address of the policy daemon
    rules_dir: str = "rules"                    # the YAML rules folder
    data_dir: str = "var"                       # SQLite files (counters, decision log, versions, api list)
    counters_backend: str = "sqlite"            # sqlite | redis | none (no limits, balances or retry dedup)
    redis_url: str = "redis://127.0.0.1:6379/0"  # counters_backend redis: the server the daemons share (counters, balances, request ids, connection leases, API blacklist)
    counters_sqlite_mode: str = "exclusive"     # exclusive: one daemon owns counters.db (file lock), decides from memory, group-commits a journal; shared: a transaction per charge, several daemons on one file
    counters_fold: str = "process"              # exclusive mode: process: the journal is folded into counters.db by a child process, on another core; thread: by a thread of the daemon
    daemon_id: str = "d1"                       # names this daemon's decision log file
    segment_db: str = ""                        # newer phone.dat or CSV; '' = the `phone` package's data
    content_logging: str = "full"               # full | masked | hashed (decision log)
    log_overflow: str = "block"                 # block | fail_closed when the decision log can't keep up
    log_queue_max: int = 10000
    log_rotate_bytes: int = 512 * 1024 * 1024
    log_sync: str = "normal"                    # normal: a committed record survives a kill -9 of the daemon (as counters.db and gateway.db do); full: also a power loss, at one fsync per commit, which every answer waits for
    log_writer: str = "process"                 # process: the decision log is written by a child process, on another core (the daemon only pickles records into a pipe); thread: by a thread of the daemon
    watch_rules: bool = True                    # reload on change of rules_dir
    watch_interval: float = 1.0                 # seconds between checks of rules_dir, and of the API blacklist for changes made through another daemon (in Redis or in data_dir)
    validate_timeout: float = 30.0              # subprocess validation of a new rule set
    shard_size: int = 48                        # rules per durable_rules ruleset
    match_cache: int = 4096                     # per ruleset and rules version: answers kept for the last N distinct engine messages (exact: the message holds every fact its rules read); 0 = ask durable_rules every time (bench.pipeline_bench reports hit rates)
    admin_token: str = ""                       # required by AdminService when set
    tls_cert: str = ""                          # PEM files; both set = TLS on the gRPC port
    tls_key: str = ""
    metrics_listen: str = ""                    # "127.0.0.1:9464" serves Prometheus metrics; '' = off
    session_lease_seconds: int = 60             # front-end connection leases (max connections), kept where the daemons sharing counters share them, so max_connections holds across all: in Redis (counters_backend redis), in data_dir/sessions.db (counters_sqlite_mode shared); else in the daemon's memory
    login_clock_skew: int = 300                 # seconds a CONNECT timestamp may be off (replay guard)
    idempotency_seconds: int = 86400            # how long a request id's answer is kept
    workers: int = 8                            # gRPC worker threads
    reuse_port: bool = False                    # SO_REUSEPORT: several daemons share `listen` (with SQLite counters on one data_dir they need counters_sqlite_mode: shared, or Redis)
    # --- CMPP front-end ---
    gateway_listen: str = "127.0.0.1:7890"
    gateway_id: str = "g1"                      # unique per front-end on one daemon: request ids are gateway_id + ":" + Msg_Id
    gateway_code: int = 1                       # ISMG code inside Msg_Id (22 bits)
    policy_target: str = "127.0.0.1:50051"      # where the front-end finds the daemon; several sharing counters: ipv4:HOST:PORT,HOST:PORT (calls spread round robin, one down is skipped)
    policy_timeout: float = 2.0                 # seconds; later = SUBMIT_RESP Result 8
    window: int = 16                            # unanswered requests per connection
    active_test_interval: float = 180.0         # C: idle seconds before ACTIVE_TEST
    response_timeout: float = 60.0              # T
    retries: int = 3                            # N
    max_packet_size: int = 4096
    idle_timeout: float = 600.0                 # close connections silent for this long
    reassembly_timeout: float = 180.0           # long SMS parts still missing after it -> MA:0026
    report_resend: float = 60.0                 # resend an unacknowledged DELIVER (or pulled HTTP report) after this
    # --- forwarder / upstream ---
    upstream_submit_timeout: float = 180.0      # no SUBMIT_RESP within it -> MO:0254
    upstream_reconnect_max: float = 30.0        # backoff ceiling
    report_map_hours: int = 72                  # upstream Msg_Id -> customer Msg_Id kept this long
    push_timeout: float = 30.0                  # HTTP report push; no answer -> 254
    push_retries: int = 3
    http_listen: str = "127.0.0.1:8080"         # HTTP customer API
    simulator_listen: str = "127.0.0.1:7891"

    def path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)


_FIELDS = {f.name: f for f in fields(Settings)}
_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_CHOICES = {
    "counters_backend": ("sqlite", "redis", "none"),
    "counters_sqlite_mode": ("exclusive", "shared"),
    "counters_fold": ("process", "thread"),
    "content_logging": ("full", "masked", "hashed"),
    "log_overflow": ("block", "fail_closed"),
    "log_sync": ("normal", "full"),
    "log_writer": ("process", "thread"),
}


def _coerce(name: str, value: Any, origin: str) -> Any:
    want = _TYPES[_FIELDS[name].type]
    if isinstance(value, str) and want is not str:
        text = value.strip().lower()
        try:
            if want is bool:
                if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                value = text in ("1", "true", "yes", "on")
            else:
                value = want(text)
        except ValueError:
            raise SettingsError(f"{origin}: {name} must be {want.__name__}, got {value!r}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise SettingsError(f"{origin}: {name} must be {want.__name__}, got {type(value).__name__} {value!r}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise SettingsError(f"{origin}: {name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
    if want in (int, float) and value < 0:
        raise SettingsError(f"{origin}: {name} must not be negative, got {value!r}")
    return value


def _unknown(name: str, origin: str) -> SettingsError:
    import difflib
    close = difflib.get_close_matches(name, list(_FIELDS), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return SettingsError(f"{origin}: unknown setting {name!r}{hint}")


def load_settings(path: str | None = None, env: dict[str, str] | None = None,
                  overrides: dict[str, Any] | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = path or env.get("SMSPOLICY_CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh)
        except OSError as e:
            raise SettingsError(f"{path}: cannot read settings file: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
            raise SettingsError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise SettingsError(f"{path}: settings file must be a mapping of setting: value")
        for k, v in doc.items():
            if k not in _FIELDS:
                raise _unknown(str(k), path)
            values[k] = _coerce(k, v, path)
    for key, raw in env.items():
        if key.startswith("SMSPOLICY_") and key != "SMSPOLICY_CONFIG":
            name = key[len("SMSPOLICY_"):].lower()
            if name not in _FIELDS:
                raise _unknown(name, f"environment {key}")
            values[name] = _coerce(name, raw, f"environment {key}")
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in _FIELDS:
            raise _unknown(k, "command line")
        values[k] = _coerce(k, v, "command line")
    return dataclasses.replace(Settings(), **values)


def describe() -> list[tuple[str, str, Any]]:
    """(name, type, default) of every knob, for docs/settings.md and `smspolicy settings`."""
    return [(f.name, f.type, f.default) for f in fields(Settings)]
