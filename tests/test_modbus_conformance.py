"""What standard clients trip on: the always-readable status block and exception 03.

The guide tells a SCADA to poll a string's status registers (0..1 and
20..24) apart from its measured ones, so status stays readable while the
string's values are withheld; register 24 used to be a measured value (the
derived string SOH), so that poll got 0x0B exactly when it mattered. The
Modbus application protocol (v1.1b3, 6.3/6.4) orders exception 03 for a
read of 0 or more than 125 registers, before any address check.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
from pathlib import Path

import pytest
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, make_reading
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.map import POINTS, Role
from conftest import require_tool
from modbus_support import BOTH_PATHS, mbpoll, modbus_config, port_of
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import DecodePDU, ExceptionResponse

pytestmark = pytest.mark.peer

#: the blocks docs/modbus-scada-guide.md calls always readable
STATUS_BLOCKS = {"ups": (0, *range(20, 25)), "string": (0, 1, *range(20, 25))}

RAW_CLIENT = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <modbus.h>
/* raw HOST PORT UNIT FUNCTION COUNT: a read of COUNT registers at 0, sent as
   is (libmodbus's read functions refuse such counts before sending). */
int main(int argc, char **argv) {
    modbus_t *ctx = modbus_new_tcp(argv[1], atoi(argv[2]));
    if (ctx == NULL || modbus_connect(ctx) == -1) return 2;
    int count = atoi(argv[5]);
    uint8_t req[6] = {(uint8_t)atoi(argv[3]), (uint8_t)atoi(argv[4]), 0, 0,
                      (uint8_t)(count >> 8), (uint8_t)(count & 0xFF)};
    uint8_t rsp[MODBUS_TCP_MAX_ADU_LENGTH];
    if (modbus_send_raw_request(ctx, req, 6) == -1) return 2;
    int n = modbus_receive_confirmation(ctx, rsp);
    if (n == -1) { printf("error: %s\n", modbus_strerror(errno)); return 1; }
    if (rsp[7] & 0x80)
        printf("function %d exception %d: %s\n", rsp[7], rsp[8],
               modbus_strerror(MODBUS_ENOBASE + rsp[8]));
    else
        printf("function %d, %d bytes\n", rsp[7], n);
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
"""


@pytest.fixture(scope="module")
def raw_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A libmodbus (mbpoll's library) client that can send what mbpoll refuses."""
    gcc = require_tool("gcc", "gcc")
    if not Path("/usr/include/modbus/modbus.h").exists():
        pytest.fail("libmodbus headers not found: apt-get install libmodbus-dev")
    folder = tmp_path_factory.mktemp("raw_client")
    (folder / "raw.c").write_text(RAW_CLIENT)
    exe = folder / "raw"
    subprocess.run(
        [gcc, "-o", str(exe), str(folder / "raw.c"), "-I/usr/include/modbus", "-lmodbus"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return exe


def test_the_always_readable_blocks_hold_only_status_registers() -> None:
    for block, registers in STATUS_BLOCKS.items():
        for p in POINTS:
            covered = set(range(p.offset, p.offset + p.words))
            if p.block == block and covered & set(registers):
                assert p.role is Role.STATUS, f"{p.name} (register {p.offset}) is measured"


@BOTH_PATHS
async def test_the_status_block_answers_while_the_string_is_offline_and_soh_moved(
    fast_path: bool,
) -> None:
    async with GatewayHarness(modbus_config(2, 1, fast_path=fast_path)) as h:
        port, svc = port_of(h), plugin.service(h.gateway)
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
        assert await client.connect()
        try:
            # S1 configured, never read: OFFLINE
            rr = await client.read_holding_registers(20, count=5, device_id=101)
            assert not rr.isError(), rr
            assert rr.registers == [int(Quality.OFFLINE), 0xFFFF, 0, 0, 0]
            rr = await client.read_holding_registers(20, count=5, device_id=1)  # UPS1 too
            assert not rr.isError() and rr.registers[:2] == [int(Quality.OFFLINE), 0xFFFF]
            rc, values, text = await mbpoll(port, 101, 20, 5)
            assert rc == 0 and list(values.values()) == [2, 65535, 0, 0, 0], text
            rr = await client.read_holding_registers(25, count=1, device_id=101)
            assert rr.isError() and rr.exception_code == 0x0B  # SOH: measured
            reading = make_reading(6)
            h.publish("S1", reading, Quality.GOOD)
            await h.wait_until(lambda: svc.store.units[101].good, what="S1 GOOD")
            rr = await client.read_holding_registers(20, count=6, device_id=101)
            assert not rr.isError(), rr
            lowest_soh = min(c.soh_pct for c in reading.cells if c.soh_pct is not None)
            assert rr.registers[0] == int(Quality.GOOD) and rr.registers[5] == lowest_soh
            rc, values, text = await mbpoll(port, 101, 25, 1)
            assert rc == 0 and values == {25: lowest_soh}, text
        finally:
            client.close()


@BOTH_PATHS
@pytest.mark.parametrize("count", [0, 126, 0xFFFF])
async def test_a_read_of_0_or_more_than_125_registers_answers_exception_03(
    count: int, raw_client: Path, fast_path: bool
) -> None:
    """On both read functions and both kinds of unit, before any address
    check (address 0 + 126 registers is past every unit's blocks: 02 would
    be wrong). pymodbus's client decoder and libmodbus (mbpoll's library;
    mbpoll itself, like pymodbus's client, refuses to send such a count)
    both read it as "illegal data value". pymodbus's own server, for the
    record, answers these 0x80/01, losing the function code."""
    async with GatewayHarness(modbus_config(2, 1, fast_path=fast_path)) as h:
        port = port_of(h)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        decoder = DecodePDU(is_server=False)
        try:
            for tid, (unit, fc) in enumerate(((101, 3), (101, 4), (1, 3), (1, 4)), start=1):
                writer.write(struct.pack(">HHHBBHH", tid, 0, 6, unit, fc, 0, count))
                answer = await asyncio.wait_for(reader.readexactly(9), 5)
                assert answer == struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, 3), answer
                pdu = decoder.decode(answer[7:])
                assert isinstance(pdu, ExceptionResponse) and pdu.exception_code == 3
        finally:
            writer.close()
        for unit, fc in ((101, 3), (1, 4)):
            out = await asyncio.to_thread(
                subprocess.run,
                [str(raw_client), "127.0.0.1", str(port), str(unit), str(fc), str(count)],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
            expected = f"function {fc | 0x80} exception 3: Illegal data value"
            assert out.stdout.strip() == expected, out.stdout
