"""Remaining runtime and depth of discharge on Modbus TCP, SNMP and BACnet,
read by independent clients (mbpoll, net-snmp's snmpget, rusty-bacnet), and
on REST and /metrics (aiohttp, parsed by prometheus_client), from
a gateway polling the BM-SM simulator over a real pseudo-terminal, while a
discharge runs that ``btms-gateway simulate-control`` started through the
simulator's control socket.

Expected values are what the gateway derived at the time of the read (its
snapshots, sampled while the clients read): the estimate itself is checked
against the simulator's truth in test_analytics_discharge.py; here, that each
protocol serves it, with its unit and resolution, and "no value" the way the
protocol says it while no discharge runs.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import rusty_bacnet as rb
from btms_gateway.core.model import Quality
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.bacnet.plugin import service as bacnet_service
from btms_gateway.plugins.modbus_tcp.map import point
from btms_gateway.plugins.web.plugin import service as web_service
from btms_gateway.protocols.bmsm.simulator.control import ControlServer, Target
from modbus_support import mbpoll, port_of
from prometheus_client.parser import text_string_to_metric_families
from snmp_support import V2C, agent_address, net_snmp, snmp_settings

pytestmark = pytest.mark.peer

T = TypeVar("T")
DEVICE = 4327
CELLS = 12
RUNTIME = point("string_runtime_remaining")
DOD = point("string_depth_of_discharge")
UNIT = 101  # string S1
NO_SUCH = "No Such Instance"
PI = rb.PropertyIdentifier
NO_SENSOR, NO_FAULT = 1, 0  # BACnetReliability


def _config(data_dir: Path, bacnet_port: int) -> dict[str, Any]:
    plugins = {
        "modbus_tcp": {"port": 0},
        "web": {"port": 0},
        "snmp": snmp_settings(),
        "bacnet": {
            "address": f"127.0.0.1/8:{bacnet_port}",
            "device_instance": DEVICE,
            "cells_per_string": CELLS,
        },
    }
    config = plant_config(strings=1, ups=1, plugins=plugins, stale_after_s=60.0)
    config["gateway"]["data_dir"] = str(data_dir)
    config["analytics"] = {"start_delay_s": 1.0, "end_delay_s": 1.0, "rated_ah": 100}
    return config


async def _control(sock: Path, *args: str) -> str:
    """``btms-gateway simulate-control`` in its own process, as an integrator runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btms_gateway.core", "simulate-control", "--socket", str(sock),
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    return out.decode()


@asynccontextmanager
async def _sampled(h: GatewayHarness) -> AsyncIterator[list[dict[str, Any]]]:
    """Every derived-value set the gateway held while the block ran (sampled
    faster than it polls), so a client's answer is compared with a value the
    gateway really held at some moment of the read."""
    seen: list[dict[str, Any]] = []

    async def sample() -> None:
        while True:
            d = dict(h.gateway.store.string("S1").derived)
            if not seen or seen[-1] != d:
                seen.append(d)
            await asyncio.sleep(0.005)

    task = asyncio.create_task(sample())
    await asyncio.sleep(0)
    try:
        yield seen
    finally:
        task.cancel()


async def _with_samples(h: GatewayHarness, read: Callable[[], Awaitable[T]]) -> tuple[T, list]:  # type: ignore[type-arg]
    async with _sampled(h) as seen:
        got = await read()
    return got, seen


async def _modbus(h: GatewayHarness) -> dict[int, int]:
    code, values, text = await mbpoll(port_of(h), UNIT, RUNTIME.offset, 3)
    assert code == 0, text
    return values


async def _snmp() -> list[str]:
    """The two columns of string 1, values only, units and display hints applied."""
    out = await net_snmp(
        "snmpget", *V2C, "-Ov", agent_address(),
        "BTMS-GATEWAY-MIB::btmsStringRuntimeRemaining.1",
        "BTMS-GATEWAY-MIB::btmsStringDepthOfDischarge.1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


async def _bacnet(client: Any, address: str, h: GatewayHarness) -> list[tuple[float, int]]:
    """(present value, reliability) of S1.runtime_remaining and S1.depth_of_discharge."""
    points = {p.name: p for p in bacnet_service(h.gateway).points}
    specs = [
        (rb.ObjectIdentifier(rb.ObjectType.ANALOG_INPUT, points[name].instance),
         [(PI.PRESENT_VALUE, None), (PI.RELIABILITY, None), (PI.UNITS, None)])
        for name in ("S1.runtime_remaining", "S1.depth_of_discharge")
    ]  # fmt: skip
    results = await client.read_property_multiple(address, specs)
    out = []
    for result, units in zip(results, (73, 98), strict=True):  # seconds, percent
        value, reliability, got_units = (r["value"].value for r in result["results"])
        assert got_units == units
        out.append((value, reliability))
    return out


async def _web(h: GatewayHarness) -> tuple[dict[str, Any], dict[str, float]]:
    """REST's ``derived`` of S1 and the two /metrics samples of S1 (absent: no value)."""
    url = web_service(h.gateway).url
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/api/strings/S1?cells=false") as r:
            assert r.status == 200
            derived = (await r.json())["derived"]
        async with s.get(url + "/metrics") as r:
            text = await r.text()
    names = ("btms_string_runtime_remaining_seconds", "btms_string_depth_of_discharge_ratio")
    metrics = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in names and sample.labels.get("string") == "S1"
    }
    return derived, metrics


def _held(seen: list[dict[str, Any]], key: str) -> list[float]:
    return [d[key] for d in seen if d.get(key) is not None]


@pytest.mark.slow  # ~10 s on a shared 2-core box
async def test_runtime_and_depth_of_discharge_on_modbus_snmp_and_bacnet(tmp_path: Path) -> None:
    bacnet_port = free_udp_port()
    address = f"127.0.0.1:{bacnet_port}"
    sock = tmp_path / "control.sock"
    async with GatewayHarness(_config(tmp_path, bacnet_port), simulate=True, cells=CELLS) as h:
        await h.wait_quality(Quality.GOOD)
        sim, slave = h.sim_for("S1")
        server = ControlServer(sock, {"S1": Target(sim, slave)}).start()
        rusty = rb.BACnetClient(
            interface="127.0.0.1", port=free_udp_port(), broadcast_address="127.255.255.255"
        )
        try:
            async with rusty as client:
                # no discharge: "no value" as each protocol says it
                await h.wait_until(
                    lambda: "runtime_remaining_s" in h.gateway.store.string("S1").derived,
                    what="analytics' first values",
                )
                assert await _modbus(h) == {26: 0xFFFF, 27: 0xFFFF, 28: 0xFFFF}
                assert all(NO_SUCH in line for line in await _snmp())
                assert [r for _, r in await _bacnet(client, address, h)] == [NO_SENSOR] * 2

                # the mains fail: a discharge started from the command line
                assert "S1: discharging at 200 A" in await _control(
                    sock, "discharge", "--string", "S1", "--current", "200"
                )
                await h.wait_until(  # deep enough that a wrong scale shows
                    lambda: (h.gateway.store.string("S1").derived.get("dod_pct") or 0) >= 0.3,
                    timeout=20,
                    what="a runtime estimate and a depth of discharge",
                )
                regs, seen = await _with_samples(h, lambda: _modbus(h))
                runtime = regs[26] << 16 | regs[27]
                assert runtime in {round(v) for v in _held(seen, "runtime_remaining_s")}
                assert 0 < runtime < 3600  # 100 Ah at 200 A
                assert regs[28] in {round(v * 10) for v in _held(seen, "dod_pct")}

                lines, seen = await _with_samples(h, _snmp)
                m = re.fullmatch(r"INTEGER: (\d+) seconds", lines[0])
                assert m, lines
                assert int(m[1]) in {round(v) for v in _held(seen, "runtime_remaining_s")}
                m = re.fullmatch(r"INTEGER: (\d*\.\d) %", lines[1])
                assert m, lines
                assert float(m[1]) in {round(v * 10) / 10 for v in _held(seen, "dod_pct")}

                objs, seen = await _with_samples(h, lambda: _bacnet(client, address, h))
                (rt, rt_rel), (dod, dod_rel) = objs
                assert (rt_rel, dod_rel) == (NO_FAULT, NO_FAULT)
                assert any(
                    rt == pytest.approx(v, rel=1e-6) for v in _held(seen, "runtime_remaining_s")
                )
                assert any(dod == pytest.approx(v, abs=1e-4) for v in _held(seen, "dod_pct"))

                (rest, metrics), seen = await _with_samples(h, lambda: _web(h))
                held = [(d["runtime_remaining_s"], d["dod_pct"]) for d in seen if d]
                assert (rest["runtime_remaining_s"], rest["dod_pct"]) in held
                assert any(
                    metrics["btms_string_runtime_remaining_seconds"] == pytest.approx(rt)
                    and metrics["btms_string_depth_of_discharge_ratio"] == pytest.approx(dod / 100)
                    for rt, dod in held
                ), metrics

                # the mains return: the estimate goes, on every protocol
                assert "discharge stopped" in await _control(sock, "stop", "--string", "S1")
                await h.wait_until(
                    lambda: h.gateway.store.string("S1").derived.get("discharging") == 0.0,
                    timeout=15,
                    what="the discharge to end",
                )
                assert await _modbus(h) == {26: 0xFFFF, 27: 0xFFFF, 28: 0xFFFF}
                assert all(NO_SUCH in line for line in await _snmp())
                assert [r for _, r in await _bacnet(client, address, h)] == [NO_SENSOR] * 2
                rest, metrics = await _web(h)
                assert (rest["runtime_remaining_s"], rest["dod_pct"], metrics) == (None, None, {})
        finally:
            server.stop()
