"""A port or converter that is gone, seen the way an operator sees it: every
failed poll counted by cause on REST, SNMP (net-snmp's snmpget) and the
Prometheus metrics (issue 23 item 6), and log lines that say what changed
and why, with repeated failures summarised, never a line per poll (item 12).

Real links throughout: the simulator on a pty and behind a TCP port, a
"converter" that accepts connections and closes them, and a port nobody
listens on."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from btms_gateway.core import commlog
from btms_gateway.core.model import Quality
from btms_gateway.kit.ports import free_tcp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from prometheus_client.parser import text_string_to_metric_families
from snmp_support import V2C, agent_address, net_snmp, snmp_settings
from web_support import get_json

ENGINE = "btms_gateway.engine"


def _bus(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "port": "/placeholder", "baudrate": 115200, "timeout_s": 0.2} | kw


def _tcp_bus(name: str, port: int = 1, **kw: Any) -> dict[str, Any]:
    bus = {"name": name, "transport": "rtu-over-tcp", "host": "127.0.0.1", "tcp_port": port}
    return bus | {"baudrate": 115200, "timeout_s": 0.2} | kw


def _plant(
    buses: list[dict[str, Any]], plugins: dict[str, Any] | None = None, per_bus: int = 1
) -> dict[str, Any]:
    """``per_bus`` strings on each bus (slaves 1..), named S1, S2... in bus order."""
    data = plant_config(
        strings=len(buses) * per_bus, ups=1, buses=buses, plugins=plugins, poll_interval_s=0.2
    )
    for i, s in enumerate(data["strings"]):
        s["bus"], s["slave_id"] = buses[i // per_bus]["name"], i % per_bus + 1
    return data


@contextlib.contextmanager
def accept_and_close() -> Iterator[int]:
    """A "converter" that accepts every connection and closes it at once."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        server.close()


# -- item 6: every failed poll counted, by cause, on every output ------------------


async def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    return {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for f in text_string_to_metric_families(text)
        for x in f.samples
    }


async def _rest_failed(url: str) -> dict[str, dict[str, Any]]:
    status, buses = await get_json(url + "/api/buses")
    assert status == 200
    return {name: c for b in buses for name, c in b["strings"].items()}


async def _snmp_failed() -> dict[str, int]:
    r = await net_snmp(
        "snmpget", *V2C, "-Oqv", agent_address(),
        "BTMS-GATEWAY-MIB::btmsStringPollsFailed.1",
        "BTMS-GATEWAY-MIB::btmsStringPollsFailed.2",
        "BTMS-GATEWAY-MIB::btmsGwPollsFailed.0",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    s1, s2, gw = (int(v) for v in r.stdout.split())
    return {"S1": s1, "S2": s2, "gateway": gw}


async def test_an_unplugged_adapter_and_a_stopped_converter_count_every_failed_poll() -> None:
    """S1 on a pty, S2 behind an RTU-over-TCP converter (the simulator's TCP
    port). Both are pulled: every cycle that cannot open the port is a failed
    poll of each string, cause "port", and REST, snmpget and the metrics show
    the count growing (before, it stopped at the one poll that found the port
    gone, while the strings sat OFFLINE with dozens of port errors)."""
    from btms_gateway.plugins.web.plugin import service

    data = _plant(
        [_bus("bus1"), _tcp_bus("bus2")],
        {"web": {"port": 0}, "snmp": snmp_settings()},
    )
    async with GatewayHarness(data, simulate=True) as h:
        await h.wait_quality(Quality.GOOD)
        url = service(h.gateway).url
        for sim in h.sims.values():
            sim.unplug()
        await h.wait_quality(Quality.OFFLINE)
        before = await _rest_failed(url)
        await h.wait_until(
            lambda: all(
                h.gateway.string_counters(n).polls_failed >= before[n]["polls_failed"] + 5
                for n in ("S1", "S2")
            ),
            what="five more failed polls of each string",
        )
        rest = await _rest_failed(url)
        metrics = await _metrics(url)
        snmp = await _snmp_failed()
        buses = {b.name: b for b in h.gateway.bus_status()}
    for name, bus in (("S1", "bus1"), ("S2", "bus2")):
        c = rest[name]
        assert c["polls_failed"] >= before[name]["polls_failed"] + 5
        assert c["polls_failed_by_cause"]["port"] >= 5
        assert c["polls_failed"] == sum(c["polls_failed_by_cause"].values())
        assert c["polls_failed"] <= c["polls"]
        label = (("cause", "port"), ("string", name))
        assert (
            metrics[("btms_string_polls_failed_total", label)] >= c["polls_failed_by_cause"]["port"]
        )
        failed = sum(
            v for (m, lbl), v in metrics.items()
            if m == "btms_string_polls_failed_total" and ("string", name) in lbl
        )  # fmt: skip
        assert failed >= c["polls_failed"]
        assert metrics[("btms_bus_polls_failed_total", (("bus", bus), ("cause", "port")))] >= 5
        assert snmp[name] >= c["polls_failed"]
        assert buses[bus].counters.polls_failed_by[commlog.ErrorKind.PORT] >= 5
    assert snmp["gateway"] >= snmp["S1"] + snmp["S2"]


async def test_a_value_the_device_cannot_measure_is_a_failed_poll_by_decode() -> None:
    """A cell voltage outside what the device can measure (0.5 V: no 2 V or
    12 V block reads that) fails the poll: counted as "decode" with the cell,
    the value and the range in the last error, and the string is not GOOD."""
    async with GatewayHarness(_plant([_bus("bus1")]), simulate=True) as h:
        await h.wait_quality(Quality.GOOD)
        sim, slave = h.sim_for("S1")
        sim.set_cell(slave, 3, voltage_v=0.5)
        await h.wait_quality(Quality.STALE, timeout=10)
        c = h.gateway.string_counters("S1")
        await h.wait_until(lambda: c.polls_failed_by[commlog.ErrorKind.DECODE] >= 2)
        assert c.errors[commlog.ErrorKind.DECODE] >= 2
        assert "cell 3 voltage 0.5 V outside 1.6..2.6 or 7.5..15.6 V" in (c.last_error or "")
        assert h.gateway.store.string("S1").reading.cells[2].voltage_v != 0.5


# -- item 12: log lines an operator can act on -------------------------------------


def _engine_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ENGINE]


@pytest.fixture
def quick_summary(monkeypatch: pytest.MonkeyPatch) -> float:
    """A summary line at most once a second, so a test sees several."""
    monkeypatch.setattr(commlog, "SUMMARY_S", 1.0)
    return 1.0


async def _run_for(h: GatewayHarness, bus: str, cycles: int) -> None:
    status = next(b for b in h.gateway.bus_status() if b.name == bus)
    start = status.cycles
    await h.wait_until(lambda: status.cycles >= start + cycles, timeout=30, what=f"{cycles} cycles")


def _summaries(lines: list[str], bus: str) -> list[str]:
    return [x for x in lines if x.startswith(f"bus {bus}: in the last ")]


@pytest.mark.slow  # ~5 s on a shared 2-core box
async def test_a_converter_that_accepts_and_closes_logs_its_cause_once_then_summaries(
    caplog: pytest.LogCaptureFixture, quick_summary: float
) -> None:
    """Before: "port reopened" every cycle, forever, and never the cause. The
    string is probed every cycle (back-off capped at the interval), so the
    port is opened and lost every cycle."""
    caplog.set_level(logging.INFO, logger=ENGINE)
    with accept_and_close() as port:
        data = _plant([_tcp_bus("conv", port, backoff_max_s=0.2)])
        async with GatewayHarness(data, simulate=True, unsimulated=["conv"]) as h:
            await _run_for(h, "conv", 25)  # 5 s at 0.2 s: five summaries at most
            reopens = h.gateway.bus_status()[0].counters.port_reopens
    lines = _engine_lines(caplog)
    assert reopens >= 8  # it did open (and lose) the port again and again
    assert not any("reopened" in x for x in lines)
    first = [x for x in lines if x.startswith("bus conv: port")]
    assert len(first) == 1, lines
    assert "port unavailable" in first[0] and "end of file" in first[0]
    assert "converter closed the connection" in first[0]
    summaries = _summaries(lines, "conv")
    assert 2 <= len(summaries) <= 6, lines
    assert re.search(r"\d+ failures \(it opened \d+ times in between\)", summaries[-1])
    assert "S1 " in summaries[-1] and "(port " in summaries[-1]
    assert len(lines) == 1 + len(summaries), lines  # nothing else: no line per poll


@pytest.mark.slow  # ~5 s on a shared 2-core box
async def test_a_dead_converter_says_so_once_then_summaries(
    caplog: pytest.LogCaptureFixture, quick_summary: float
) -> None:
    """Nothing listens at the converter's address: before, nothing at all was
    logged (the strings start OFFLINE, so no transition either)."""
    caplog.set_level(logging.INFO, logger=ENGINE)
    port = free_tcp_port()
    data = _plant([_tcp_bus("dead", port)])
    async with GatewayHarness(data, simulate=True, unsimulated=["dead"]) as h:
        await _run_for(h, "dead", 25)
        failed = h.gateway.string_counters("S1").polls_failed
    lines = _engine_lines(caplog)
    first = [x for x in lines if x.startswith("bus dead: port")]
    assert len(first) == 1, lines
    assert f"cannot connect to 127.0.0.1:{port}" in first[0]
    summaries = _summaries(lines, "dead")
    assert 2 <= len(summaries) <= 6, lines
    assert "port unavailable for" in summaries[-1]
    assert failed >= 25  # every cycle a failed poll, and far fewer lines
    assert len(lines) == 1 + len(summaries), lines


@pytest.mark.slow  # ~9 s on a shared 2-core box
async def test_a_string_that_never_answers_says_so_once_then_summaries(
    caplog: pytest.LogCaptureFixture, quick_summary: float
) -> None:
    """S2 never answers (its slave vanished before the gateway started): one
    line with the cause, then the bus's summaries; S1 goes on and is not
    mentioned. When S2 answers at last, its transition says so."""
    caplog.set_level(logging.INFO, logger=ENGINE)
    data = _plant([_bus("bus1")], per_bus=2)
    async with GatewayHarness(data, simulate=True) as h:
        sim, slave = h.sim_for("S2")
        sim.vanish(slave)
        await h.wait_quality(Quality.GOOD, "S1")
        await _run_for(h, "bus1", 25)
        sim.restore(slave)
        await h.wait_quality(Quality.GOOD, "S2", timeout=15)
    lines = _engine_lines(caplog)
    s2 = [x for x in lines if x.startswith("string S2:")]
    assert s2[0] == "string S2: no reading yet, poll failed (timeout: no reply from slave 2)"
    assert s2[1:] == ["string S2: OFFLINE -> GOOD (poll succeeded)"]
    summaries = _summaries(lines, "bus1")
    assert summaries and all("S2 " in x and "(timeout " in x for x in summaries), lines
    assert not any("S1 " in x for x in summaries)
    assert not any(x.startswith("bus bus1: port") for x in lines)
    other = [x for x in lines if x not in s2 and x not in summaries]
    assert other == ["string S1: OFFLINE -> GOOD (poll succeeded)"], lines
