"""core/netguard.py's building blocks on their own: connection slots with
eviction, per-source token buckets, and the log tally (the servers' tests
show them at work on real sockets)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest
from btms_gateway.core.netguard import ConnectionSlots, LogTally, TokenBuckets, peer_host


@dataclass(eq=False)
class Conn:
    name: str
    last_active: float


def test_a_full_address_evicts_its_own_least_recently_active_connection() -> None:
    slots: ConnectionSlots[Conn] = ConnectionSlots(total=6, per_address=2)
    a1, a2 = Conn("a1", 1.0), Conn("a2", 5.0)
    slots.add(a1, "10.0.0.1")
    slots.add(a2, "10.0.0.1")
    slots.add(Conn("b1", 0.5), "10.0.0.2")  # quieter, but another address
    assert slots.victim("10.0.0.1") is a1
    assert slots.victim("10.0.0.3") is None  # room in total
    slots.remove(a1)
    slots.remove(a1)  # a second remove is a no-op
    assert slots.count("10.0.0.1") == 1 and len(slots) == 2


def test_a_full_table_evicts_from_the_address_holding_the_most() -> None:
    slots: ConnectionSlots[Conn] = ConnectionSlots(total=4, per_address=3)
    scada = Conn("scada", 0.1)  # the quietest of all, yet alone on its address
    slots.add(scada, "10.0.0.9")
    flood = [Conn(f"x{i}", 10.0 + i) for i in range(3)]
    for conn in flood:
        slots.add(conn, "10.0.0.66")
    assert slots.victim("10.0.0.7") is flood[0]
    # equal counts: the address whose quietest connection is quietest gives one up
    slots.remove(flood[0])
    slots.remove(flood[1])
    other = Conn("y", 0.05)
    slots.add(other, "10.0.0.5")
    slots.add(Conn("z", 20.0), "10.0.0.6")
    assert slots.victim("10.0.0.7") is other


def test_slots_refuse_impossible_limits() -> None:
    with pytest.raises(ValueError):
        ConnectionSlots(total=4, per_address=5)


def test_token_buckets_refill_at_the_rate_and_forget_the_quietest_source() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, max_sources=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert buckets.take("a") and not buckets.take("a")
    assert buckets.take("b")
    assert buckets.take("c")  # the table is full: "a", seen longest ago, is forgotten
    assert len(buckets) == 2
    now[0] += 100  # never more than the burst saved up
    assert [buckets.take("b") for _ in range(4)] == [True, True, True, False]


def test_peer_host_reads_socket_peer_names() -> None:
    assert peer_host(("192.0.2.1", 502)) == "192.0.2.1"
    assert peer_host(("::1", 502, 0, 0)) == "::1"
    assert peer_host(None) == ""


async def test_the_tally_logs_the_first_at_once_and_the_rest_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tally = LogTally(logging.getLogger("test.tally"), every_s=0.2)
    with caplog.at_level(logging.WARNING, logger="test.tally"):
        for i in range(500):
            tally.note("junk", "dropped junk from %s", f"10.0.0.{i % 7}")
        tally.note("other", "another kind")
        assert [r.getMessage() for r in caplog.records] == [
            "dropped junk from 10.0.0.0",
            "another kind",
        ]
        for _ in range(100):  # the window's end writes the count, by its timer
            if len(caplog.records) == 3:
                break
            await asyncio.sleep(0.05)
    assert len(caplog.records) == 3
    assert (
        caplog.records[2]
        .getMessage()
        .startswith("dropped junk from 10.0.0.2 (499 more like this in the last")
    )
    tally.close()
