"""bench/attack.py, shortened: every attack of the bench against a gateway
process (2 strings x 8 cells, 2 s each), with the well-behaved clients of
every protocol asking throughout.

Asserts what the bench asserts except timing (the p99 targets live in the
bench): the gateway survives every attack, no string leaves GOOD, SNMP
answers nothing to a source not allowed and stays within its bound for an
allowed one, another client gets a live-update slot, and every
well-behaved client is served during every attack."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
# bench/attack.py shares its name with the bench/attack/ package: load it by path
_spec = importlib.util.spec_from_file_location("attack_bench", BENCH / "attack.py")
assert _spec is not None and _spec.loader is not None
attack_bench = importlib.util.module_from_spec(_spec)
sys.modules["attack_bench"] = attack_bench  # its dataclasses look their module up
_spec.loader.exec_module(attack_bench)

pytestmark = pytest.mark.peer  # prlimit


@pytest.mark.slow  # ~65 s: every hostile client in turn
async def test_every_attack_leaves_the_plant_served() -> None:
    # strings of 12 cells: the device measures 20..800 V, so fewer would never be GOOD
    result = await attack_bench.run(strings=2, cells=12, seconds=2.0, log=lambda *a: None)
    by_name = {r["attack"]: r for r in result["attacks"]}
    assert list(by_name) == list(attack_bench.ATTACKS)
    for name, r in by_name.items():
        assert r["left_good"] == [], name
        assert not [m for m in r["missed"] if "p99" not in m], (name, r["missed"])
        for protocol, seen in r["latency"].items():
            assert seen["requests"] > seen["failures"], (name, protocol, seen)
    assert by_name["snmp-refused"]["extra"]["answered"] == 0
    allowed = by_name["snmp-allowed"]["extra"]
    assert 0 < allowed["answered"] <= allowed["bound_answers"]
    assert allowed["largest_response"] <= attack_bench.SNMP_LIMITS["max_response_bytes"]
    assert by_name["web-sse-hog"]["extra"]["other_client_status"] == 200
    assert by_name["http-idle-1100"]["extra"]["connections_opened"] == 1100
    assert by_name["modbus-pipelined"]["extra"]["requests_answered"] > 0
    report = attack_bench.report(result)
    assert all(name in report for name in by_name)
