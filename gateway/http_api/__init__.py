"""The HTTP customer API (the platform's second access mode, SMS57): docs/http-api.md."""

from .server import STORE_FILE, ApiServer
from .signing import signed_headers, string_to_sign

__all__ = ["STORE_FILE", "ApiServer", "signed_headers", "string_to_sign"]
