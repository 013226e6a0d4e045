"""The forwarder: outbox rows to upstream channels (CMPP or HTTP), upstream reports and MO back
into the gateway store. See service.py for the delivery guarantee."""

from .service import STORE_FILE, Forwarder, mo_router

__all__ = ["Forwarder", "STORE_FILE", "mo_router"]
