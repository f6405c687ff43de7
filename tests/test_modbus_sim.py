"""End to end: BM-SM simulator on a pty -> real RTU poller -> engine -> Modbus TCP ->
pymodbus's client and mbpoll. Every expected value is what the SIMULATOR holds
(``sim.expected(slave)``), never what the gateway computed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from btms_gateway.core.model import Quality, StringReading
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.map import cell_register
from modbus_support import BOTH_PATHS, close_to, mbpoll, wire
from pymodbus.client import AsyncModbusTcpClient

CELLS = {"S1": 120, "S2": 12}
STALE_AFTER_S = 2.0


def _config(**settings: Any) -> dict[str, Any]:
    return plant_config(
        2, 1, plugins={"modbus_tcp": {"port": 0, **settings}}, stale_after_s=STALE_AFTER_S
    )


def _truth(h: GatewayHarness, name: str) -> StringReading:
    sim, slave = h.sim_for(name)
    return sim.expected(slave)


async def _served(h: GatewayHarness, *names: str) -> dict[str, StringReading]:
    """Wait until the gateway holds the simulator's values for ``names`` and the
    Modbus image was rebuilt from them; return the simulator's truth."""
    svc = plugin.service(h.gateway)

    def current() -> bool:
        for name in names:
            s = h.gateway.store.string(name)
            img = svc.store.units.get(100 + s.index)
            if s.quality is not Quality.GOOD or s.reading is None or img is None:
                return False
            if replace(s.reading, read_at=0.0) != _truth(h, name):
                return False
            if img.read_at != s.reading.read_at or not img.good:
                return False
        return svc.store.units[1].good

    await h.wait_until(current, timeout=15, what=f"simulator values of {names} served")
    return {name: _truth(h, name) for name in names}


async def _client(h: GatewayHarness) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=plugin.service(h.gateway).port, timeout=3, retries=0
    )
    assert await client.connect()
    return client


def _discharge(h: GatewayHarness) -> None:
    sim, slave = h.sim_for("S1")
    sim.set_string(slave, current_a=-123.45, state=2, soc_pct=81.0)
    sim.set_cell(slave, 120, voltage_v=2.031, resistance_mohm=0.512, temperature_c=-3.4)


@pytest.mark.parametrize("word_order", ["high_first", "low_first"])
async def test_pymodbus_client_reads_what_the_simulator_holds(word_order: str) -> None:
    high = word_order == "high_first"
    async with GatewayHarness(_config(word_order=word_order), simulate=True, cells=CELLS) as h:
        _discharge(h)
        truth = await _served(h, "S1", "S2")
        s1, s2 = truth["S1"], truth["S2"]
        assert s1.current_a == -123.45 and s1.cell_count == 120
        client = await _client(h)
        try:
            for read in (client.read_holding_registers, client.read_input_registers):
                u = (await read(0, count=6, device_id=1)).registers
                assert close_to(wire("ups_voltage", u, 0, high), (s1.voltage_v + s2.voltage_v) / 2,
                                "ups_voltage")  # fmt: skip
                assert close_to(wire("ups_current", u, 0, high), s1.current_a + s2.current_a,
                                "ups_current")  # fmt: skip
                assert close_to(wire("ups_soc", u), (s1.soc_pct + s2.soc_pct) / 2, "ups_soc")

                s = (await read(0, count=15, device_id=101)).registers
                assert wire("string_ups_index", s) == 1
                assert close_to(wire("string_voltage", s, 0, high), s1.voltage_v, "string_voltage")
                assert wire("string_current", s, 0, high) < 0
                assert close_to(wire("string_current", s, 0, high), s1.current_a, "string_current")
                assert close_to(wire("string_soc", s), s1.soc_pct, "string_soc")
                assert close_to(wire("string_balance", s), s1.balance_pct, "string_balance")
                assert wire("string_state", s) == int(s1.state) == 2
                assert wire("string_alarm_word", s) == int(s1.alarms)
                assert wire("string_cell_count", s) == 120
                assert close_to(wire("ambient_temperature", s), s1.ambient_temperature_c,
                                "ambient_temperature")  # fmt: skip
                assert close_to(wire("ambient_humidity", s), s1.ambient_humidity_pct,
                                "ambient_humidity")  # fmt: skip

                for ci in (1, 77, 120):
                    cell = s1.cells[ci - 1]
                    c = (await read(cell_register(ci, 0), count=8, device_id=101)).registers
                    assert wire("cell_status", c) == 1
                    assert close_to(wire("cell_voltage", c), cell.voltage_v, "cell_voltage")
                    assert close_to(wire("cell_resistance", c, 0, high), cell.resistance_mohm,
                                    "cell_resistance")  # fmt: skip
                    assert close_to(wire("cell_temperature", c), cell.temperature_c,
                                    "cell_temperature")  # fmt: skip
                    assert close_to(wire("cell_soc", c), cell.soc_pct, "cell_soc")
                    assert close_to(wire("cell_soh", c), cell.soh_pct, "cell_soh")
            assert s1.cells[119].temperature_c == -3.4  # the signed cell value was exercised
        finally:
            client.close()


@pytest.mark.peer
@BOTH_PATHS
@pytest.mark.parametrize("word_order", ["high_first", "low_first"])
async def test_mbpoll_reads_what_the_simulator_holds(word_order: str, fast_path: bool) -> None:
    order = ["-B"] if word_order == "high_first" else []  # mbpoll: low word first unless -B
    config = _config(word_order=word_order, fast_path=fast_path)
    async with GatewayHarness(config, simulate=True, cells=CELLS) as h:
        _discharge(h)
        truth = await _served(h, "S1", "S2")
        s1, s2 = truth["S1"], truth["S2"]
        port = plugin.service(h.gateway).port

        rc, v, text = await mbpoll(port, 101, 2, 2, "-t", "4:int", *order)
        assert rc == 0, text
        assert v[2] == round(s1.voltage_v * 100), text
        assert v[4] == round(s1.current_a * 100) == -12345, text

        rc, v, text = await mbpoll(port, 1, 3, 1, "-t", "3:int", *order)  # FC 04, UPS current
        assert rc == 0 and v[3] == round((s1.current_a + s2.current_a) * 100), text

        c120 = s1.cells[119]
        rc, v, text = await mbpoll(port, 101, cell_register(120, 0), 2)
        assert rc == 0, text
        assert v[12000] == 1 and v[12001] == round(c120.voltage_v * 1000) == 2031, text
        rc, v, text = await mbpoll(port, 101, cell_register(120, 2), 1, "-t", "4:int", *order)
        assert rc == 0 and v[12002] == round(c120.resistance_mohm * 1000) == 512, text
        rc, v, text = await mbpoll(port, 101, cell_register(120, 4), 1)
        assert rc == 0 and v[12004] in (-34, 65536 - 34), text  # -3.4 C, two's complement


async def test_a_vanished_string_answers_0x0b_within_the_stale_limit_then_recovers() -> None:
    async with GatewayHarness(_config(), simulate=True, cells=CELLS) as h:
        await _served(h, "S1", "S2")
        svc = plugin.service(h.gateway)
        port = svc.port
        client = await _client(h)
        try:
            assert not (await client.read_holding_registers(2, count=2, device_id=101)).isError()
            sim, slave = h.sim_for("S1")
            sim.vanish(slave)

            async def withheld() -> bool:
                rr = await client.read_holding_registers(2, count=2, device_id=101)
                return rr.isError() and rr.exception_code == 0x0B

            # bounded: the stale limit plus a poll cycle and a timeout of slack
            deadline = STALE_AFTER_S + 3.0
            await h.wait_until(lambda: not svc.store.units[101].good, timeout=deadline,
                               what="S1 withheld after vanishing")  # fmt: skip
            assert await withheld()
            assert h.gateway.store.string("S1").quality is not Quality.GOOD
            rr = await client.read_holding_registers(cell_register(120, 1), count=1, device_id=101)
            assert rr.isError() and rr.exception_code == 0x0B
            rr = await client.read_holding_registers(0, count=6, device_id=1)  # its UPS
            assert rr.isError() and rr.exception_code == 0x0B
            status = (await client.read_holding_registers(0, count=2, device_id=101)).registers
            assert status == [1, 2]
            quality = (await client.read_holding_registers(20, count=1, device_id=101)).registers
            assert quality[0] in (int(Quality.STALE), int(Quality.OFFLINE))
            rc, _, text = await mbpoll(port, 101, 2, 2)
            assert rc != 0 and "Target device failed to respond" in text, text
            # the other string on the same bus is still served
            assert not (await client.read_holding_registers(2, count=2, device_id=102)).isError()

            sim.set_string(slave, current_a=-7.5)
            sim.restore(slave)
            truth = (await _served(h, "S1"))["S1"]
            rr = await client.read_holding_registers(2, count=4, device_id=101)
            assert not rr.isError()
            assert close_to(wire("string_current", rr.registers, 2), truth.current_a,
                            "string_current")  # fmt: skip
            assert truth.current_a == -7.5
        finally:
            client.close()


async def test_bmgw_mode_serves_the_last_values_with_status_2() -> None:
    async with GatewayHarness(_config(stale_behaviour="bmgw"), simulate=True, cells=CELLS) as h:
        _discharge(h)
        last = (await _served(h, "S1", "S2"))["S1"]
        svc = plugin.service(h.gateway)
        sim, slave = h.sim_for("S1")
        sim.vanish(slave)
        await h.wait_until(lambda: svc.store.units[101].regs[1] == 2,
                           timeout=STALE_AFTER_S + 3.0, what="S1 status 2")  # fmt: skip
        client = await _client(h)
        try:
            s = (await client.read_holding_registers(0, count=15, device_id=101)).registers
            assert s[1] == 2
            assert close_to(wire("string_current", s), last.current_a, "string_current")
            c = await client.read_holding_registers(cell_register(120, 0), count=2, device_id=101)
            assert c.registers == [2, round(last.cells[119].voltage_v * 1000)]
            assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [2]
        finally:
            client.close()
