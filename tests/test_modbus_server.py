"""Protocol behaviour that does not need the simulator: exceptions 01/02/0x0A,
device identification, the live data-age register and gateway alarms in the
extension registers. Readings are published into a whole running gateway;
values travelling from the simulator are in test_modbus_sim.py.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from btms_gateway.core.alarm_types import EventKind, Severity
from btms_gateway.core.model import Quality
from btms_gateway.kit.events import active_alarm, make_event
from btms_gateway.kit.testing import GatewayHarness, make_reading
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.map import cell_register
from modbus_support import BOTH_PATHS, _publish_good, mbpoll, modbus_config, port_of
from pymodbus.client import AsyncModbusTcpClient


async def _client(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert await client.connect()
    return client


@BOTH_PATHS
async def test_writes_illegal_addresses_unknown_units_and_identification(fast_path: bool) -> None:
    async with GatewayHarness(modbus_config(2, 1, fast_path=fast_path)) as h:
        await _publish_good(h)
        port = port_of(h)
        tcp = plugin.service(h.gateway).tcp
        assert tcp is not None and (tcp.answerer is not None) is fast_path  # the switch took
        client = await _client(port)
        try:
            for rr in (
                await client.write_register(0, 5, device_id=101),
                await client.write_registers(2, [1, 2], device_id=101),
                await client.write_coil(0, True, device_id=1),
                await client.read_coils(0, count=8, device_id=101),
            ):
                assert rr.isError() and rr.exception_code == 0x01, rr
            for unit, address, count in ((101, 30, 1), (101, 12100, 1), (101, 25, 10), (1, 30, 1)):
                rr = await client.read_holding_registers(address, count=count, device_id=unit)
                assert rr.isError() and rr.exception_code == 0x02, (unit, address, rr)
            for unit in (0, 3, 50, 103, 133, 255):  # no such UPS/string configured
                rr = await client.read_holding_registers(0, count=1, device_id=unit)
                assert rr.isError() and rr.exception_code == 0x0A, (unit, rr)
            info = (await client.read_device_information(device_id=101)).information
            from btms_gateway.core.version import PRODUCT, VENDOR, __version__

            assert info[0] == VENDOR.encode() and info[1] == PRODUCT.encode()
            assert info[2] == __version__.encode()
        finally:
            client.close()
        rc, _, text = await mbpoll(port, 101, 0, None, "--", "5")
        assert rc != 0 and "Illegal function" in text, text
        rc, _, text = await mbpoll(port, 101, 12100, 1)
        assert rc != 0 and "Illegal data address" in text, text
        rc, _, text = await mbpoll(port, 50, 0, 1)
        assert rc != 0 and "Gateway path unavailable" in text, text


@BOTH_PATHS
async def test_data_age_register_counts_seconds_since_the_values_were_read(
    fast_path: bool,
) -> None:
    async with GatewayHarness(modbus_config(2, 1, fast_path=fast_path)) as h:
        svc = plugin.service(h.gateway)
        client = await _client(port_of(h))
        try:
            never = (await client.read_holding_registers(20, count=2, device_id=102)).registers
            assert never == [int(Quality.OFFLINE), 0xFFFF]
            h.publish("S1", make_reading(4, read_at=time.time() - 100), Quality.GOOD)
            await h.wait_until(lambda: svc.store.units[101].good, what="S1 image")
            age = (await client.read_holding_registers(21, count=1, device_id=101)).registers[0]
            assert 100 <= age < 130
        finally:
            client.close()


async def test_gateway_alarms_reach_the_extension_registers(tmp_path: Path) -> None:
    cfg = modbus_config(2, 1)
    cfg["gateway"]["data_dir"] = str(tmp_path)
    cfg["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
    async with GatewayHarness(cfg, alarms=True) as h:
        svc = plugin.service(h.gateway)
        reading = make_reading(8)
        hot = tuple(
            replace(c, voltage_v=2.65) if c.index == 3 else c for c in reading.cells
        )  # cell 3 above the 2.40 V default limit
        h.publish("S1", replace(reading, cells=hot), Quality.GOOD)
        await h.wait_until(
            lambda: svc.store.units[101].regs[cell_register(3, 7)] & 1 << 8,
            what="cell 3 voltage-high bit in the image",
        )
        client = await _client(port_of(h))
        try:
            ext = (await client.read_holding_registers(20, count=4, device_id=101)).registers
            assert ext[2] >= 1 and ext[3] >= 2  # active alarms, highest severity >= alarm
            bits = await client.read_holding_registers(cell_register(3, 7), count=1, device_id=101)
            assert bits.registers[0] & 1 << 8
            other = await client.read_holding_registers(cell_register(4, 7), count=1, device_id=101)
            assert not other.registers[0] & 1 << 8
            ups = (await client.read_holding_registers(22, count=1, device_id=1)).registers
            assert ups[0] >= 1
        finally:
            client.close()


async def test_the_extension_registers_count_the_active_alarms_delivered_with_each_event() -> None:
    """The alarm registers count the tuple delivered with each alarm event (the
    alarms active after its commit), not the gateway's active alarms read back:
    this gateway runs no alarm engine (``gateway.alarms.active()`` is empty)."""
    async with GatewayHarness(modbus_config(2, 1)) as h:
        await _publish_good(h)
        svc = plugin.service(h.gateway)
        s1 = make_event(string="S1", cell=3)
        s2 = make_event(
            "raised", "cell_voltage_low", string="S2", cell=1, severity=Severity.CRITICAL
        )
        h.gateway.emit(s1, active=(active_alarm(s1), active_alarm(s2)))
        await h.wait_until(lambda: svc.store.alarms.by_ups.get("UPS1") == (2, 3), what="2 alarms")
        client = await _client(port_of(h))
        try:

            async def counts(unit: int) -> list[int]:  # active alarms, highest severity
                return (await client.read_holding_registers(22, count=2, device_id=unit)).registers

            assert await counts(101) == [1, 2] and await counts(102) == [1, 3]
            assert (await counts(1))[0] == 2
            h.gateway.emit(replace(s1, kind=EventKind.CLEARED), active=(active_alarm(s2),))
            await h.wait_until(lambda: svc.store.alarms.by_ups.get("UPS1") == (1, 3), what="1")
            assert await counts(101) == [0, 0] and await counts(102) == [1, 3]
            assert (await counts(1))[0] == 1
        finally:
            client.close()


async def test_an_image_is_built_when_a_request_reads_it_and_holds_the_newest_reading(
    monkeypatch,
) -> None:
    """Readings only mark a unit's image out of date: with no client, nothing is
    built (at full scale that building was most of the plugin's CPU); the first
    read builds it once, from the newest reading."""
    from btms_gateway.plugins.modbus_tcp import image

    builds: list[int] = []
    real = image.string_image

    def counting(string, *args):
        builds.append(string.index)
        return real(string, *args)

    monkeypatch.setattr(image, "string_image", counting)
    async with GatewayHarness(modbus_config(2, 1)) as h:
        svc = plugin.service(h.gateway)
        for i in range(20):
            h.publish("S1", make_reading(4, current_a=float(i)), Quality.GOOD)
        await h.wait_until(
            lambda: (
                h.gateway.channels["modbus_tcp"].stats.readings_delivered
                + h.gateway.channels["modbus_tcp"].stats.readings_coalesced
                >= 20
            ),
            what="the readings to reach the plugin",
        )
        assert builds == []
        client = await _client(port_of(h))
        try:
            for _ in range(3):
                rr = await client.read_holding_registers(4, count=2, device_id=101)
                assert rr.registers == [0, 1900]  # 19.00 A, the last reading, high word first
        finally:
            client.close()
        assert builds == [1]  # built once, for S1, by the first read
        assert svc.stats.requests == 3
