"""The ``[history]`` section of the gateway's TOML file.

Built on :mod:`btms_gateway.core.config_base` so that ``core.config`` can type
its ``history`` key without an import cycle. Every key has a default that
serves the demo and meets the issue's floors (raw 48 h, minutes 90 days,
hours 10 years).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from ..config_base import StrictModel


class HistorySection(StrictModel):
    """Where and how long readings are kept (docs/history.md)."""

    #: record every GOOD reading under ``gateway.data_dir``/history.sqlite
    enabled: bool = True
    #: seconds between two commits: at most this much (plus the queue) is lost on kill -9
    commit_interval_s: Annotated[float, Field(ge=0.2, le=60)] = 2.0
    #: raw readings at poll rate
    raw_retention_hours: Annotated[float, Field(ge=1, le=24 * 366)] = 48.0
    #: 1-minute min/mean/max
    minute_retention_days: Annotated[float, Field(ge=1, le=3660)] = 90.0
    #: 1-hour min/mean/max (about 10 years)
    hour_retention_days: Annotated[float, Field(ge=1, le=36600)] = 3660.0
    #: a string whose current is below this (A; negative = discharge) is
    #: discharging: its raw readings are kept until deleted
    discharge_current_a: Annotated[float, Field(le=0)] = -1.0
    #: the most the history file may take on disk (MB); the oldest data goes first
    budget_mb: Annotated[float, Field(ge=1)] = 16000.0
    #: history pauses (acquisition does not) when the disk has less free (MB)
    min_free_mb: Annotated[float, Field(ge=0)] = 64.0
    #: readings waiting for the writer thread before new ones are dropped (counted)
    queue_readings: Annotated[int, Field(ge=16, le=1_000_000)] = 4096

    @model_validator(mode="after")
    def _tiers_nest(self) -> HistorySection:
        if self.minute_retention_days * 24 < self.raw_retention_hours:
            raise ValueError(
                "minute_retention_days to cover at least raw_retention_hours "
                f"({self.raw_retention_hours} h), found {self.minute_retention_days} days"
            )
        if self.hour_retention_days < self.minute_retention_days:
            raise ValueError(
                "hour_retention_days to be at least minute_retention_days "
                f"({self.minute_retention_days}), found {self.hour_retention_days}"
            )
        return self
