"""Assemble the daemon from Settings and serve gRPC (with health, reflection, TLS, admin token)."""
from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..api.v1 import policy_pb2 as pb
from ..settings import Settings
from .login import LoginPolicy, Sessions
from .metrics import Metrics
from .pipeline import Pipeline
from .runtime import Runtime
from .service import (POLICY_SERVICE, AdminService, PolicyService, admin_service_handler,
                      policy_service_handler)
from .watch import FolderWatcher

log = logging.getLogger("smspolicy.daemon")

ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["AdminService"].full_name


class AdminTokenInterceptor(grpc.ServerInterceptor):
    """AdminService calls must carry `authorization: Bearer <admin_token>`."""

    def __init__(self, token: str):
        self.token = token

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "admin token missing or wrong")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, details):
        if details.method.startswith(f"/{ADMIN_SERVICE}/"):
            meta = dict(details.invocation_metadata or ())
            if meta.get("authorization") != f"Bearer {self.token}":
                return self._deny
        return continuation(details)


def make_counters(settings: Settings):
    if settings.counters_backend == "none":  # pipeline step 4 skipped: no limits, balances, retry dedup
        return None
    from ..counters import make_store
    return make_store(settings.counters_backend, settings.path("counters.db"), settings.redis_url,
                      sqlite_mode=settings.counters_sqlite_mode, idempotency_ttl=settings.idempotency_seconds,
                      fold_process=settings.counters_fold == "process")


def make_sessions(settings: Settings):
    """Connection leases where the daemons sharing counters share them, so that max_connections
    holds across all of them: in Redis, or in the data folder with shared-mode SQLite counters;
    else (one daemon owns the counters) in this daemon's memory."""
    if settings.counters_backend == "redis":
        from .redis_sessions import RedisSessions
        return RedisSessions(settings.redis_url, settings.session_lease_seconds)
    if settings.counters_backend == "sqlite" and settings.counters_sqlite_mode == "shared":
        from .sqlite_sessions import SqliteSessions
        return SqliteSessions(settings.path("sessions.db"), settings.session_lease_seconds)
    return Sessions(settings.session_lease_seconds)


def make_api_blacklist(settings: Settings):
    """The API blacklist where the daemons sharing counters share it, so that an
    UpdateApiBlacklist through one daemon holds in all within watch_interval: in Redis, else in
    the data folder's file (read again when another daemon on the folder wrote to it)."""
    if settings.counters_backend == "redis":
        from ..facts.redis_api_blacklist import RedisApiBlacklist
        return RedisApiBlacklist(settings.redis_url, refresh_seconds=settings.watch_interval)
    from ..facts.lists import ApiBlacklist
    return ApiBlacklist(settings.path("api_blacklist.db"), refresh_seconds=settings.watch_interval)


def make_decision_log(settings: Settings, metrics: Metrics):
    if settings.log_writer == "process":
        from ..audit.log_process import DecisionLogProcess as DecisionLog
    else:
        from ..audit.decision_log import DecisionLog
    return DecisionLog(settings.path(f"decisions-{settings.daemon_id}.db"),
                       content_mode=settings.content_logging,
                       rotate_bytes=settings.log_rotate_bytes or None,
                       queue_max=settings.log_queue_max, on_overflow=settings.log_overflow,
                       sync=settings.log_sync)


class Daemon:
    def __init__(self, settings: Settings):
        self.settings = settings
        os.makedirs(settings.data_dir, exist_ok=True)
        self.metrics = Metrics()
        self.versions = None
        try:
            from ..audit.versions import VersionStore
            self.versions = VersionStore(settings.path("versions.db"))
        except ImportError:
            pass
        self.counters = make_counters(settings)
        self.runtime = Runtime(settings.rules_dir, settings.data_dir, settings.segment_db,
                               settings.shard_size, settings.validate_timeout,
                               on_loaded=self._on_loaded, match_cache=settings.match_cache,
                               api_blacklist=make_api_blacklist(settings))
        self.decision_log = make_decision_log(settings, self.metrics)
        log_ = self.decision_log
        self.metrics.log_failures.set_function(lambda: log_.write_failures + log_.overflows)
        self.pipeline = Pipeline(self.runtime, self.counters, self.decision_log, self.metrics)
        self.login = LoginPolicy(self.runtime, make_sessions(settings), self.counters,
                                 settings.login_clock_skew)
        self.health = health.HealthServicer()
        self.server: grpc.Server | None = None
        self.watcher: FolderWatcher | None = None
        self._stopped = threading.Event()

    def _on_loaded(self, loaded) -> None:
        self.metrics.set_version(loaded.version)
        for account in loaded.policy.accounts.values():
            # only the first load sets a balance; top-ups and debits stay
            if account.billing == "prepaid" and self.counters is not None:
                self.counters.set_opening_balance(account.id, account.balance)
        if self.versions is not None:
            self.versions.put(loaded.version, loaded.policy.files)
        loaded.policy.files.clear()  # stored; list entry files can be large
        freeze_heap()

    def reload(self):
        out = self.runtime.reload()
        self.metrics.reloads.labels("ok" if out.ok else "refused").inc()
        return out

    def start(self) -> int:
        s = self.settings
        interceptors = [AdminTokenInterceptor(s.admin_token)] if s.admin_token else []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=s.workers),
                                  interceptors=interceptors,
                                  options=[("grpc.so_reuseport", int(s.reuse_port))])
        self.server.add_generic_rpc_handlers(
            (policy_service_handler(PolicyService(self.pipeline, self.login)),))
        from gateway.forwarder import STORE_FILE
        admin = AdminService(self.runtime, self.pipeline, s.path(STORE_FILE))
        admin.Reload = lambda request, context: _reload_response(self.reload())  # count outcomes
        self.server.add_generic_rpc_handlers((admin_service_handler(admin),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (POLICY_SERVICE, ADMIN_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        if s.tls_cert and s.tls_key:
            with open(s.tls_key, "rb") as k, open(s.tls_cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            port = self.server.add_secure_port(s.listen, creds)
        else:
            port = self.server.add_insecure_port(s.listen)
        if port == 0:
            raise OSError(f"cannot listen on {s.listen}")
        self.server.start()
        for name in ("", POLICY_SERVICE, ADMIN_SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if s.metrics_listen:
            from prometheus_client import start_http_server
            host, _, mport = s.metrics_listen.rpartition(":")
            start_http_server(int(mport), addr=host or "127.0.0.1", registry=self.metrics.registry)
        if s.watch_rules:
            fb = self.runtime.current().policy.file_blacklist
            self.watcher = FolderWatcher(s.rules_dir, s.watch_interval, self.reload,
                                         ignore=(fb.folder,) if fb else ())
        log.info("policy daemon serving %s on %s (rules %s, counters %s)", s.rules_dir, s.listen,
                 self.runtime.current().version, s.counters_backend)
        return port

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, daemon=True).start())
        signal.signal(signal.SIGTERM, lambda *_: self._stopped.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopped.set())

    def wait(self) -> None:
        self._stopped.wait()

    def stop(self, grace: float = 2.0) -> None:
        if self.watcher:
            self.watcher.stop()
        if self.server:
            for name in ("", POLICY_SERVICE, ADMIN_SERVICE):
                self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            self.server.stop(grace).wait()
        if self.decision_log:
            self.decision_log.close()
        if self.counters:
            self.counters.close()
        self.login.sessions.close()
        self.runtime.close()


def freeze_heap() -> None:
    """Keep the loaded rules out of the cyclic garbage collector's full passes. The reference
    rule set (1M listed numbers, automata, durable_rules shards) made every gen-2 collection
    walk it: 100-220 ms with every thread stopped, twice per 5,000 decisions (measured), a
    pause every answer in flight waited out. Frozen objects are still freed by reference
    counting; cycles among a retired version's objects are collected at the next reload, which
    thaws, collects once and freezes again (one such pause per reload)."""
    gc.unfreeze()   # nothing frozen yet at the first load
    gc.collect()
    gc.freeze()


def _reload_response(out) -> pb.ReloadResponse:
    return pb.ReloadResponse(ok=out.ok, rules_version=out.version, errors=out.errors)


