"""A BM-SM simulator: one or more string masters behind a serial port, a
pseudo-terminal pair or a TCP port (RTU over TCP), speaking real RTU framing
at the wire speed of the configured baud rate. A user feature
(``btms-gateway simulate``) and the test suite's device.
"""

from __future__ import annotations

from .faults import Fault
from .model import CellTruth, StringModel
from .server import Simulator, TruthRecord

__all__ = ["CellTruth", "Fault", "Simulator", "StringModel", "TruthRecord"]
