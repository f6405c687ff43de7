"""bench/soak.py, shortened: polls under 5 % bad CRC, 5 % timeouts, 1 %
garbage and vanishing slaves; every value Modbus TCP (pymodbus) and the REST
API served is checked against the simulator's schedule of values."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import soak


async def test_short_soak_serves_no_wrong_or_stale_values() -> None:
    r = await soak.soak(
        polls=600,
        strings=4,
        buses=2,
        vanish_every_s=3.0,
        vanish_s=1.5,
        max_s=80.0,
        log=lambda *a: None,
    )
    assert r["polls"] >= 600
    assert all(r["faults"][f] > 0 for f in ("bad_crc", "no_reply", "garbage")), r["faults"]
    assert r["polls_failed"] > 0  # faults did reach the engine, not only the retries
    v, t = r["values"], r["transitions"]
    assert v["good"] > 1000 and v["served"] > v["good"]  # GOOD and withheld/STALE both served
    assert t["vanishes"] >= 5
    assert soak.failures(r) == []


def test_value_check_flags_wrong_and_stale_values() -> None:
    """The checker itself can fail: a value never held, and one served GOOD
    long after the device replaced it."""
    truth = soak.Truth()
    truth.set("S1", 1.0, 0.0, 0.0)
    truth.set("S1", 1.01, 10.0, 10.0)
    check = soak.ValueCheck(truth, window_s=1.0)
    check.consume(
        [
            soak.Seen("rest", "S1", 10.5, 10.5, True, 1.0),  # replaced 0.5 s ago: fine
            soak.Seen("rest", "S1", 12.0, 12.0, True, 1.0),  # replaced 2 s ago: stale as GOOD
            soak.Seen("rest", "S1", 12.0, 12.0, False, 1.0),  # same, marked STALE: fine
            soak.Seen("modbus", "S1", 12.0, 12.0, True, 7.77),  # never held: wrong
        ]
    )
    r = check.result()
    assert (len(r["wrong"]), len(r["stale_fresh"]), r["good"]) == (1, 1, 2)
