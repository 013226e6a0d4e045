"""HTTP report push to customers configured with a push URL (outcomes 0/252/253/254)."""

from .outcomes import BAD_ADDRESS, BAD_ANSWER, RECEIVED, TIMED_OUT, PushLog, PushOutcome
from .pusher import Pusher, push_accounts

__all__ = ["BAD_ADDRESS", "BAD_ANSWER", "PushLog", "PushOutcome", "Pusher", "RECEIVED",
           "TIMED_OUT", "push_accounts"]
