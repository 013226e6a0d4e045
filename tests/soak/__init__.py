"""Soak with faults: the whole chain under kill -9 and upstream faults (issue 8)."""
