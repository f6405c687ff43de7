"""bench/scale.py, shortened: a gateway process with every plugin, simulators
in another process (pty and RTU over TCP), every kind of client at once.

Asserts what the full run asserts except timing and resource targets (those
live in bench/): the gateway stays up, no well-behaved client sees an error,
and every protocol serves every change the age probe makes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from scale import clients  # noqa: E402
from scale.plant import bus_spec, strings_of, wire_time_s  # noqa: E402

# bench/scale.py shares its name with the bench/scale/ package: load it by path
_spec = importlib.util.spec_from_file_location("scale_bench", BENCH / "scale.py")
assert _spec is not None and _spec.loader is not None
scale_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale_bench)


def test_buses_are_sized_by_wire_time() -> None:
    per_string = wire_time_s(120, 115200)
    assert 0.12 < per_string < 0.2  # ~0.15 s for a 120-cell string at 115200 (docs/performance.md)
    spec = bus_spec(32, 120, 115200, 1.0, 2, headroom=0.7)
    assert all(len(b["slaves"]) * per_string <= 0.7 for b in spec)
    assert sum(len(b["slaves"]) for b in spec) == 32
    assert [b["transport"] for b in spec][-2:] == ["tcp", "tcp"]
    assert {b["transport"] for b in spec[:-2]} == {"pty"}
    names = [n for n, _, _ in strings_of(spec)]
    assert names == [f"S{i}" for i in range(1, 33)]


@pytest.mark.slow  # ~30 s: a plant of many buses and clients
async def test_short_scale_run_serves_every_client() -> None:
    r = await scale_bench.run(
        minutes=0.3,
        strings=6,
        cells=120,
        tcp_buses=1,
        warmup_s=4.0,
        baseline_s=3.0,
        modbus_period_s=5.0,
        snmp_period_s=5.0,
        cov_cells_strings=1,
        log=lambda *a: None,
    )
    st: clients.Stats = r["stats"]
    assert r["alive"]
    assert {b["transport"] for b in r["spec"]} == {"pty", "tcp"}
    assert not st.errors, st.last_error
    assert st.ops["modbus_sweeps"] >= 1
    assert st.ops["snmpbulkwalk"] >= 1
    # every walk returns the whole cell table: 6 strings x 120 cells x 7 columns
    assert st.ops["snmp_varbinds"] >= 6 * 120 * 7 * st.ops["snmpbulkwalk"]
    assert st.ops["bacnet_subscriptions"] >= 120 and st.ops["bacnet_cov"] > 0
    assert st.ops["sse_events"] > 0
    for proto in scale_bench.PROTOCOLS:
        assert st.lags[proto], f"{proto} never served a probed change"
        assert st.missed[proto] == 0, f"{proto} missed {st.missed[proto]} changes"
    # the watchers read from shortly before the change is due, not from the
    # change on: 11-12 reads a probe (measured here and at full scale), where
    # reading from the change was 34-35 here (0.013-0.018 of a core at full scale)
    for proto, reads in (("modbus", "modbus_probe_reads"), ("rest", "rest_probe_reads")):
        per_probe = st.ops[reads] / len(st.lags[proto])
        assert per_probe <= 22, f"{proto} watcher read {per_probe:.0f} times a probe"
    # every probe seen by all protocols has its window for the steal report,
    # and its age there is the oldest any protocol served
    assert len(r["probe_steal"]) == len(st.lags["rest"])
    oldest = max(max(st.ages[p]) for p in scale_bench.PROTOCOLS)
    assert max(age for age, _stolen in r["probe_steal"]) == pytest.approx(oldest)
    assert all(stolen >= 0 for _age, stolen in r["probe_steal"])
    pooled = r["cpu_by_steal"]
    assert pooled["quiet"][0] + pooled["stolen"][0] >= 2  # 5 s stretches of the 18 s
    assert all(r["cycles"][b["name"]] for b in r["spec"])
    # the CPU split: the loop serves the clients, the bus threads poll.
    # /proc counts CPU in 10 ms ticks: the loop of 6 strings polling alone
    # for 3 s is about one tick, so it may read 0 (a clean clone did, 12-02
    # 19:18), so only the bus threads' part is checked; with the clients the
    # loop's is many ticks.
    clients_split, polling_split = r["cpu_split"]["clients"], r["cpu_split"]["polling"]
    assert clients_split["loop"] > 0 and clients_split["other"] > 0, clients_split
    assert polling_split["other"] > 0, polling_split


def test_the_probe_dates_served_data_from_the_end_of_the_poll_before() -> None:
    """An age is measured from the end of the poll the old value came from,
    whichever range a poll reads last: here two polls of a slave (string block
    last, register 2 in it) and another slave's replies in between."""
    from types import SimpleNamespace

    from scale.simrunner import first_data_after

    def rec(at: float, slave: int, address: int) -> SimpleNamespace:
        return SimpleNamespace(at=at, slave=slave, address=address, count=16, words=(0,))

    log = [rec(10.00, 1, 2000), rec(10.03, 1, 0), rec(10.05, 2, 0), rec(11.00, 1, 2000)]
    log += [rec(11.03, 1, 0), rec(12.00, 1, 2000)]
    sim = SimpleNamespace(truth_log=log)
    assert first_data_after(sim, 1, 10.5, 2) == {"at": 11.03, "prev": 10.03}
    assert first_data_after(sim, 1, 9.0, 2) == {"at": 10.03, "prev": None}
    assert first_data_after(sim, 1, 11.5, 2) == {"at": None, "prev": 12.00}


def test_steal_is_spread_over_the_sample_it_was_counted_in() -> None:
    """A probe's window gets the share of each 0.2 s steal sample it overlaps."""
    from scale.procs import StealMonitor

    m = StealMonitor(every=0.2)
    m.windows = [(10.2, 0.02, 0.4), (10.4, 0.0, 0.4), (10.6, 0.04, 0.4)]
    assert m.stolen_s(10.1, 10.2) == pytest.approx(0.01)
    assert m.stolen_s(10.2, 10.4) == 0.0
    assert m.stolen_s(10.0, 10.6) == pytest.approx(0.06)
    assert m.stolen_s(10.5, 11.0) == pytest.approx(0.02)
    assert m.stolen_s(11.0, 12.0) == 0.0


def test_cpu_is_pooled_by_the_steal_of_each_stretch() -> None:
    """Two quiet stretches and one where the host took 10 % of both cores."""
    import os

    from scale.procs import StealMonitor

    cores = os.cpu_count() or 1
    m = StealMonitor(every=1.0)
    m.windows = [(1.0, 0.0, cores), (2.0, 0.0, cores), (3.0, 0.1 * cores, cores)]
    marks = [(0.0, 10.0), (1.0, 10.05), (2.0, 10.15), (3.0, 10.45)]
    pooled = m.cpu_by_steal(marks)
    assert pooled["quiet"] == (2, pytest.approx(0.075))
    assert pooled["stolen"] == (1, pytest.approx(0.3))
