"""History: every GOOD reading of every string and cell, kept on disk for years.

The public surface (docs/history.md): ``HistoryService`` (what the gateway
runs: ``gateway.history``), its ``queries`` (``HistoryQueries``: series,
resistance changes, discharge periods, info) and the quantity table. Plugins
read history only through ``gateway.history.queries``.
"""

from __future__ import annotations

from .config import HistorySection
from .quantities import QUANTITIES, RECORDED, Recorded
from .query import Column, Discharge, HistoryQueries, QueryError, Series
from .service import HistoryService, HistoryStatus, history_for
from .store import FILE_NAME, TIERS, StoreDamaged

__all__ = [
    "FILE_NAME",
    "QUANTITIES",
    "RECORDED",
    "TIERS",
    "Column",
    "Discharge",
    "HistoryQueries",
    "HistorySection",
    "HistoryService",
    "HistoryStatus",
    "QueryError",
    "Recorded",
    "Series",
    "StoreDamaged",
    "history_for",
]
