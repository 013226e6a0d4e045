"""The customer-facing CMPP server (asyncio): sessions, the SUBMIT path through the policy
daemon, long-SMS reassembly and status-report delivery. `smspolicy gateway` runs it."""

from .server import STORE_FILE, FrontEnd

__all__ = ["FrontEnd", "STORE_FILE"]
