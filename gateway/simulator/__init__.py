"""A bundled upstream SMSC for local runs and tests: CMPP 2.x/3.0, an HTTP channel, a control
port and deterministic fault injection (see faults.py and control.py)."""

from .control import ControlError, request
from .faults import Fault, FaultPlan, FaultRates, parse_fault
from .http_channel import HttpChannel
from .smsc import Simulator

__all__ = ["ControlError", "Fault", "FaultPlan", "FaultRates", "HttpChannel", "Simulator",
           "parse_fault", "request"]
