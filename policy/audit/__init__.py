"""Decision log (append-only, hash-chained), its verification and query, and the store of
every rules version ever loaded."""
from .decision_log import DecisionLog, LogLockedError
from .query import query
from .verify import Problem, VerifyReport, verify
from .versions import VersionConflictError, VersionStore

__all__ = ["DecisionLog", "LogLockedError", "Problem", "VerifyReport", "VersionConflictError",
           "VersionStore", "query", "verify"]
