"""bench/fuzz_northbound.py, shortened: hostile input on every northbound port
of a gateway process; a well-behaved client (pymodbus, net-snmp snmpget,
rusty-bacnet, urllib) is served after every batch and after the flood."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import fuzz_northbound as fuzz
from scale.fuzzgen import GENERATORS, mutate


def test_generators_are_seeded_and_hostile() -> None:
    for proto, gen in GENERATORS.items():
        a = [gen(random.Random(3)) for _ in range(3)]
        b = [gen(random.Random(3)) for _ in range(3)]
        assert a == b, proto  # the same seed, the same inputs (a finding can be replayed)
        assert len({gen(random.Random(i)) for i in range(200)}) > 150, proto
    frame = b"\x00\x01\x00\x00\x00\x06\x65\x03\x00\x00\x00\x19"
    assert any(mutate(random.Random(i), frame) != frame for i in range(10))


@pytest.mark.slow  # ~15 s: every protocol fuzzed
def test_short_fuzz_keeps_every_protocol_serving() -> None:
    r = fuzz.run(count=1500, batch=500, max_s=40.0, log=lambda *a: None)
    assert r["alive"]
    assert set(r["results"]) == set(fuzz.PROTOCOLS)
    assert all(res["sent"] >= 1000 for res in r["results"].values()), r["results"]
    assert r["results"]["modbus"]["flooded"] > fuzz.MODBUS_LIMIT  # past the server's limit
    assert fuzz.problems(r) == []
