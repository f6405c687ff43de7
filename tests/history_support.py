"""Helpers shared by the history tests (this module holds no tests): readings
with chosen timestamps and values, and a history service on a directory."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from btms_gateway.core.history import HistorySection, HistoryService
from btms_gateway.core.model import CellReading, CellStatus, StringReading
from btms_gateway.kit.testing import make_reading

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def reading_at(t: float, rng: random.Random, cells: int = 4, **changes: Any) -> StringReading:
    """A reading with values that move (and a missing value now and then)."""
    cell_tuple = tuple(
        CellReading(
            index=i,
            voltage_v=None if rng.random() < 0.02 else round(2.25 + rng.randint(-9, 9) / 1000, 3),
            resistance_mohm=round(0.45 + i / 1000 + (0.001 if rng.random() < 0.002 else 0), 3),
            temperature_c=round(24 + rng.randint(-5, 5) / 10, 1),
            soc_pct=float(rng.randint(90, 100)),
            soh_pct=95.0,
            status=CellStatus.BALANCING if rng.random() < 0.1 else CellStatus.NONE,
        )
        for i in range(1, cells + 1)
    )
    base = make_reading(cells, read_at=t)
    values = {
        "cells": cell_tuple,
        "voltage_v": round(sum(c.voltage_v or 0 for c in cell_tuple), 2),
        "current_a": round(rng.uniform(-5, 5), 2),
        "soc_pct": float(rng.randint(80, 100)),
        **changes,
    }
    return replace(base, **values)


@contextlib.contextmanager
def service(data_dir: Path, **settings: Any) -> Iterator[HistoryService]:
    svc = HistoryService(HistorySection(**settings), data_dir).start()
    try:
        yield svc
    finally:
        svc.close()


def write_all(svc: HistoryService, name: str, readings: list[StringReading]) -> None:
    for r in readings:
        svc.write(name, r)
    assert svc.sync(120), "the history writer did not catch up"
