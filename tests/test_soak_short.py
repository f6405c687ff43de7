"""bench/soak.py, shortened: polls under 5 % bad CRC, 5 % timeouts, 1 %
garbage, 1 % late and 0.5 % swapped replies, vanishing and all-late slaves
and cell counts changing (mid-poll too, the added cells reading 0 until
measured); every value Modbus TCP (pymodbus), the REST API, SNMP (net-snmp's
snmpget) and BACnet/IP (rusty-bacnet) served as GOOD is checked against the
simulator's schedule of values and its cells."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import pytest
import soak
from conftest import require_tool


@pytest.mark.slow  # ~80 s: a short soak of every protocol
@pytest.mark.peer
async def test_short_soak_serves_no_wrong_or_stale_values() -> None:
    require_tool("snmpget", "snmp")
    require_tool("snmptranslate", "snmp")
    r = await soak.soak(
        polls=600,
        strings=4,
        buses=2,
        vanish_every_s=3.0,
        vanish_s=1.5,
        max_s=150.0,  # a bound, not a target: 600 polls take about 60 s on an idle 2-core box
        log=lambda *a: None,
    )
    assert r["polls"] >= 600
    faults = ("bad_crc", "no_reply", "garbage", "late", "swapped", "cell_count")
    assert all(r["faults"][f] > 0 for f in faults), r["faults"]
    assert r["polls_failed"] > 0  # faults did reach the engine, not only the retries
    assert r["polls_failed_by"].get("decode", 0) > 0  # implausible values were refused
    assert r["late_phases"] >= 2 and r["count_changes"] >= 10
    v, t = r["values"], r["transitions"]
    assert v["good"] > 1000 and v["served"] > v["good"]  # GOOD and withheld/STALE both served
    assert v["cells"]["checked"] > 5000
    for proto in soak.PROTOCOLS:  # every protocol's values were read and judged
        assert v["good_by"].get(proto, 0) > 100, (proto, v["good_by"])
        if proto != "rest":  # REST's cells are every cell, counted in the total only
            assert v["cells"]["checked_by"].get(proto, 0) > 100, (proto, v["cells"])
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
    after the poll that followed a clean first poll: both flagged, and nothing
    is judged before ``settle_s`` has passed since the restore."""
    from types import SimpleNamespace

    def reply(at: float, address: int) -> SimpleNamespace:
        """A clean reply of a 12-cell string: the block (its count in HR 10) or cells."""
        words = (0,) * 10 + (12,) + (0,) * 5 if address == 0 else (2250,) * 12
        return SimpleNamespace(
            at=at, address=address, count=len(words), words=words, fault=None, slave=1
        )

    events = [(9.0, "S1", "GOOD"), (13.0, "S1", "STALE"), (22.5, "S1", "GOOD")]
    log = [reply(21.0, 1000), reply(21.1, 0), reply(22.0, 1000), reply(22.1, 0)]
    check = soak.TransitionCheck(limit_stale_s=1.0, settle_s=5.0)
    check.vanished("S1", 10.0, 20.0)
    check.judge(events, lambda name: log, now=24.0)
    assert check.result()["vanishes"] == 0
    check.judge(events, lambda name: log, now=25.0)
    r = check.result()
    assert (r["vanishes"], r["recoveries"]) == (1, 1)
    assert r["slow_stale"] == [("S1", 10.0, 3.0)]
    assert r["slow_good"] == [("S1", 20.0, 22.5, 21.1, 22.1)]


def test_a_poll_that_follows_a_count_change_ends_at_its_last_block() -> None:
    """A block reporting another count than the cells read before it is read
    in the middle of a poll (the cells are read again for the new count, and
    the block once more): the recovery is judged by the block that ends the
    poll, so GOOD right after it is on time, and GOOD only after the next
    poll is late."""
    from types import SimpleNamespace

    def reply(at: float, address: int, count: int, reported: int = 0) -> SimpleNamespace:
        words = (0,) * 10 + (reported,) + (0,) * 5 if address == 0 else (2250,) * count
        return SimpleNamespace(at=at, address=address, count=len(words), words=words,
                               fault=None, slave=1)  # fmt: skip

    log = [reply(21.0, 1000, 16), reply(21.1, 0, 16, 15)]  # poll 1: the count changed
    log += [reply(21.2, 1000, 15), reply(21.3, 0, 16, 15)]  # its cells again, confirmed
    log += [reply(22.0, 1000, 15), reply(22.1, 0, 16, 15)]  # poll 2
    log += [reply(23.0, 1000, 15), reply(23.1, 0, 16, 15)]  # poll 3
    for back, late in ((21.35, False), (22.15, True)):
        check = soak.TransitionCheck(limit_stale_s=1.0, settle_s=5.0)
        check.vanished("S1", 10.0, 20.0)
        events = [(9.0, "S1", "GOOD"), (10.5, "S1", "STALE"), (back, "S1", "GOOD")]
        check.judge(events, lambda name: log, now=None)
        assert bool(check.result()["slow_good"]) is late


def test_the_cell_check_flags_a_wrong_voltage_and_an_impossible_count() -> None:
    cells = soak.CellCheck({"S1": [2.25, 2.26, 2.27]}, counts={2, 3})
    cells.check(soak.Seen("rest", "S1", 1.0, 1.0, True, 1.0, ((1, 2.25), (2, 2.26)), 2))
    cells.check(soak.Seen("modbus", "S1", 1.0, 1.0, True, None, ((3, 2.27),)))
    cells.check(soak.Seen("rest", "S1", 1.0, 1.0, False, 1.0, ((1, 0.0),), 1))  # not GOOD
    assert cells.result() == {
        "checked": 3,
        "checked_by": {"rest": 2, "modbus": 1},
        "wrong": [],
        "wrong_counts": [],
    }
    cells.check(soak.Seen("rest", "S1", 1.0, 1.0, True, 1.0, ((1, 2.26), (2, 2.25)), 2))
    cells.check(soak.Seen("rest", "S1", 1.0, 1.0, True, 1.0, ((1, 2.25),), 1))
    r = cells.result()
    assert [w[2] for w in r["wrong"]] == [1, 2]  # the two cells swapped
    assert r["wrong_counts"] == [("rest", "S1", 1, 1)]  # a count the device never had


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
