"""The data-age registers (string and UPS register 21) over the wire.

A UPS whose string master never answered has no age the gateway could
state: its aggregate holds only the strings that were read, but its data age
must read 65535 ("never read"), as docs/modbus-map.md says, not the few
seconds of the strings that did answer. Read with pymodbus's client and with
mbpoll (independent), against BM-SM simulators on pseudo-terminals.
"""

from __future__ import annotations

import pytest
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.map import AGE_REGISTER, NO_VALUE_U16, string_unit, ups_unit
from modbus_support import BOTH_PATHS, mbpoll
from pymodbus.client import AsyncModbusTcpClient

UPS_AGE, STRING_AGE = AGE_REGISTER["ups"], AGE_REGISTER["string"]


async def _ages(port: int, units: list[int]) -> dict[int, int]:
    """Register 21 of each unit, by pymodbus's client."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert await client.connect()
    try:
        out = {}
        for unit in units:
            reply = await client.read_holding_registers(UPS_AGE, count=1, device_id=unit)
            assert not reply.isError(), reply
            out[unit] = reply.registers[0]
        return out
    finally:
        client.close()


async def _mbpoll_age(port: int, unit: int) -> int:
    rc, values, text = await mbpoll(port, unit, UPS_AGE, 1)
    assert rc == 0, text
    return values[UPS_AGE]


@pytest.mark.peer
@BOTH_PATHS
async def test_a_ups_with_a_string_never_read_has_no_data_age(fast_path: bool) -> None:
    assert UPS_AGE == STRING_AGE
    plugins = {"modbus_tcp": {"port": 0, "fast_path": fast_path}}
    data = plant_config(2, 1, plugins=plugins, stale_after_s=60.0)
    h = GatewayHarness(data, simulate=True, cells=12)
    dead, slave = h.sim_for("S2")
    dead.vanish(slave)  # S2's string master never answers
    async with h:
        await h.wait_quality(Quality.GOOD, "S1")
        await h.wait_quality(Quality.OFFLINE, "S2")
        svc = plugin.service(h.gateway)
        port = svc.port
        ups, s1, s2 = ups_unit(1), string_unit(1), string_unit(2)
        await h.wait_until(lambda: svc.store.units[s1].read_at is not None, what="S1 served")
        assert h.gateway.store.snapshot.ups["UPS1"].read_at is not None  # S1's, not the UPS's

        ages = await _ages(port, [ups, s1, s2])
        assert ages[ups] == NO_VALUE_U16, ages
        assert ages[s2] == NO_VALUE_U16, ages
        assert ages[s1] < 60, ages
        assert await _mbpoll_age(port, ups) == NO_VALUE_U16
        assert await _mbpoll_age(port, s2) == NO_VALUE_U16

        dead.restore(slave)  # S2 answers: the UPS has an age now
        await h.wait_quality(Quality.GOOD, "S2")
        await h.wait_until(lambda: svc.store.units[ups].read_at is not None, what="UPS age")
        ages = await _ages(port, [ups, s2])
        assert ages[ups] < 60 and ages[s2] < 60, ages
        assert await _mbpoll_age(port, ups) < 60
