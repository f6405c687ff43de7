"""The collector's settings once a gateway runs (core/runner.py
``freeze_startup_objects``): readings that a newer one replaced are freed by
their reference count, not promoted to the oldest generation for full
collections to walk."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from btms_gateway.core.model import CellReading, StringReading
from btms_gateway.core.runner import freeze_startup_objects
from btms_gateway.protocols.bmsm.simulator.model import StringModel

STRINGS = 32


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_replaced_readings_do_not_reach_the_oldest_generation(collector: None) -> None:
    models = [StringModel.create(1, 120, seed) for seed in range(1, STRINGS + 1)]
    freeze_startup_objects()
    latest: list[StringReading] = []
    for second in range(12):  # twelve poll cycles of 32 strings, each replacing the one before
        for m in models:
            m.step(1.0)
        latest = [m.expected_reading(read_at=float(second)) for m in models]
    promoted = sum(isinstance(o, CellReading) for o in gc.get_objects(generation=2))
    assert len(latest) == STRINGS
    assert promoted == 0, f"{promoted} cells of live or replaced readings in the oldest generation"
