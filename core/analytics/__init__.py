"""Battery health analytics: discharge capture, the runtime and depth-of-discharge
estimate, resistance against baseline and string median with trends, thermal
early warning. A core service on the publish path; see docs/analytics.md."""

from .capture import CellSummary, DischargeSummary
from .config import AnalyticsSection, StringAnalytics
from .resistance import Trend
from .service import CELL_KEYS, STRING_KEYS, AnalyticsService, describe
from .store import DischargeStore

__all__ = [
    "CELL_KEYS",
    "STRING_KEYS",
    "AnalyticsSection",
    "AnalyticsService",
    "CellSummary",
    "DischargeStore",
    "DischargeSummary",
    "StringAnalytics",
    "Trend",
    "describe",
]
