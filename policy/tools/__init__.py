"""Tools for policy authors and auditors: rule tests, explain, and replay of the decision log.

They run the daemon's own evaluation in process (offline.py) or re-evaluate recorded decisions
(replay.py); nothing here talks to a running daemon except `explain --target`.
"""
