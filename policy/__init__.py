"""The SMS policy daemon: YAML rules, facts, durable_rules evaluation, counters, decision log, gRPC."""
