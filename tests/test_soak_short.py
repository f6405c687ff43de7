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


def test_a_vanish_is_judged_once_settled_and_can_fail() -> None:
    """Left GOOD 3 s after the slave vanished (limit 1 s), and GOOD again only
    after the second block read that followed a clean first poll: both flagged,
    and nothing is judged before ``settle_s`` has passed since the restore."""
    from types import SimpleNamespace

    def reply(at: float, address: int) -> SimpleNamespace:
        return SimpleNamespace(at=at, address=address, words=(0,), fault=None, slave=1)

    events = [(9.0, "S1", "GOOD"), (13.0, "S1", "STALE"), (22.5, "S1", "GOOD")]
    log = [reply(21.0, 0), reply(21.1, 100), reply(22.0, 0), reply(22.1, 100)]
    check = soak.TransitionCheck(limit_stale_s=1.0, settle_s=5.0)
    check.vanished("S1", 10.0, 20.0)
    check.judge(events, lambda name: log, now=24.0)
    assert check.result()["vanishes"] == 0
    check.judge(events, lambda name: log, now=25.0)
    r = check.result()
    assert (r["vanishes"], r["recoveries"]) == (1, 1)
    assert r["slow_stale"] == [("S1", 10.0, 3.0)]
    assert r["slow_good"] == [("S1", 20.0, 22.5, 21.0, 22.0)]


def test_the_soak_forgets_only_what_it_no_longer_judges() -> None:
    truth = soak.Truth()
    for value, at in ((1.0, 0.0), (1.01, 10.0), (1.02, 20.0)):
        truth.set("S1", value, at, at)
    truth.prune(replaced_before=15.0)
    assert set(truth.held["S1"]) == {1.01, 1.02}  # 1.01 was replaced at 20
    rec = soak.Recorder()
    rec.events = [(1.0, "S1", "GOOD"), (2.0, "S2", "STALE"), (3.0, "S1", "STALE")]
    rec.events.append((20.0, "S1", "GOOD"))
    rec.prune(before=10.0)  # each string keeps its last quality from before
    assert rec.events == [(2.0, "S2", "STALE"), (3.0, "S1", "STALE"), (20.0, "S1", "GOOD")]
