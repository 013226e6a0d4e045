"""Prometheus metrics of the daemon (served when `metrics_listen` is set)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions_total = Counter("smspolicy_decisions", "Recipient decisions by code and rule",
                                       ["action", "code", "rule"], registry=r)
        self.submit_refusals = Counter("smspolicy_submit_refusals", "Messages refused at submit level",
                                       ["code", "rule"], registry=r)
        self.latency = Histogram("smspolicy_evaluation_seconds", "Evaluation latency per message",
                                 buckets=(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5),
                                 registry=r)
        self.reloads = Counter("smspolicy_reloads", "Rule set reloads by outcome", ["outcome"], registry=r)
        self.version = Gauge("smspolicy_rules_version_info", "The rules version in force", ["version"],
                             registry=r)
        self.log_failures = Gauge("smspolicy_decision_log_write_failures",
                                  "Decision log write failures and overflows so far", registry=r)
        self.decisions = 0
        self._active_version = None
        # labelled children by label values: .labels() costs more than the increment itself
        # (it re-validates and locks on every call); the label sets are bounded by the rules
        self._recipient_children: dict[tuple, object] = {}
        self._submit_children: dict[tuple, object] = {}

    def observe(self, decision, seconds: float) -> None:
        self.decisions += 1
        self.latency.observe(seconds)
        if decision.submit_result:
            key = (decision.submit_result, decision.submit_rule_id)
            child = self._submit_children.get(key)
            if child is None:
                child = self._submit_children[key] = self.submit_refusals.labels(str(key[0]), key[1])
            child.inc()
        children = self._recipient_children
        for r in decision.recipients:
            key = (r.action, r.code, r.rule_id)
            child = children.get(key)
            if child is None:
                child = children[key] = self.decisions_total.labels(r.action, r.code or "", r.rule_id)
            child.inc()

    def set_version(self, version: str) -> None:
        if self._active_version:
            self.version.labels(self._active_version).set(0)
        self.version.labels(version).set(1)
        self._active_version = version
