"""The RTU link over real pseudo-terminals (and TCP): every fault kind becomes
the right ErrorKind and counter, bad frames are never decoded, the next good
request recovers, and a vanished port is reopened."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from btms_gateway.core.config import BusConfig
from btms_gateway.core.profiles import ErrorKind, PollError
from btms_gateway.protocols.bmsm.simulator import Fault, Simulator
from btms_gateway.protocols.bmsm.simulator.server import CHUNK_S
from btms_gateway.protocols.rtu import framing, open_link
from btms_gateway.protocols.rtu.link import RtuLink
from conftest import require_tool

# -- the pure classification -------------------------------------------------


def _ok(slave: int = 1, regs: tuple[int, ...] = (1, 2)) -> bytes:
    return framing.read_reply(slave, list(regs))


def _kind(buf: bytes, slave: int = 1, count: int = 2) -> ErrorKind:
    with pytest.raises(PollError) as err:
        framing.classify(buf, slave, count)
    return err.value.kind


def test_request_frame_is_exact_rtu() -> None:
    # The canonical example: slave 1, read 2 registers from 0 -> CRC C4 0B.
    assert framing.read_request(1, 0, 2) == bytes.fromhex("010300000002c40b")


def test_classification() -> None:
    assert framing.classify(_ok(), 1, 2) == [1, 2]
    assert _kind(b"") is ErrorKind.TIMEOUT
    assert _kind(_ok()[:-3]) is ErrorKind.SHORT_FRAME
    bad = _ok()[:-1] + bytes([_ok()[-1] ^ 1])
    assert _kind(bad) is ErrorKind.CRC
    assert _kind(b"\x00\x55" + _ok()) is ErrorKind.CRC  # garbage before
    assert _kind(_ok() + b"\x12\x34") is ErrorKind.CRC  # garbage after, same burst
    assert _kind(_ok(slave=2)) is ErrorKind.SHORT_FRAME  # wrong slave echo
    assert _kind(_ok(regs=(1, 2, 3))) is ErrorKind.SHORT_FRAME  # wrong length
    assert _kind(framing.adu(1, b"\x04\x04\x00\x01\x00\x02")) is ErrorKind.SHORT_FRAME  # fc
    with pytest.raises(PollError) as err:
        framing.classify(framing.exception_reply(1, 3, 2), 1, 2)
    assert err.value.kind is ErrorKind.EXCEPTION and err.value.exception_code == 2


# -- the simulator over a pty ----------------------------------------------------


def _open(sim: Simulator, **kw: object) -> RtuLink:
    link = open_link(sim.bus_config(**({"timeout_s": 0.3, "retries": 0} | kw)))
    link.open()
    return link


FAULTS = [
    (Fault.NO_REPLY, ErrorKind.TIMEOUT),
    (Fault.BAD_CRC, ErrorKind.CRC),
    (Fault.TRUNCATED, ErrorKind.SHORT_FRAME),
    (Fault.GARBAGE, ErrorKind.CRC),
    (Fault.EXCEPTION, ErrorKind.EXCEPTION),
    (Fault.VANISH, ErrorKind.TIMEOUT),
]


@pytest.mark.parametrize(("fault", "kind"), FAULTS, ids=[f.value for f, _ in FAULTS])
async def test_fault_kind_counter_and_recovery(fault: Fault, kind: ErrorKind) -> None:
    with Simulator([1, 2], cells=4, baud=115200, frozen=True, seed=2) as sim:
        link = _open(sim)
        try:
            sim.inject(1, fault, seconds=0.3)
            with pytest.raises(PollError) as err:
                link.read_holding_registers(1, 1000, 4)
            assert err.value.kind is kind
            if fault is Fault.VANISH:
                sim.restore(1)
            # the neighbour and then the same slave answer fine right after
            assert link.read_holding_registers(2, 0, 16) == sim.model(2).read(0, 16)
            good = link.read_holding_registers(1, 1000, 4)
        finally:
            link.close()
        served = sim.truth_log
    assert good == sim.model(1).read(1000, 4)
    assert served[0].fault == fault.value and served[0].words is None
    for c in (link.counters, link.counters_for(1)):
        assert c.errors[kind] == 1
        assert sum(c.errors.values()) == 1
    assert link.counters.requests == 3 and link.counters_for(1).requests == 2
    assert link.counters_for(2).errors[kind] == 0 and link.counters_for(2).responses == 1
    expected_responses = 1 + (kind is ErrorKind.EXCEPTION)
    assert link.counters_for(1).responses == expected_responses
    assert link.counters_for(1).last_error is not None
    if kind is ErrorKind.EXCEPTION:
        assert err.value.exception_code == 4


@pytest.mark.slow  # ~6 s on a shared 2-core box
async def test_bad_frames_are_never_decoded_even_when_they_hold_data() -> None:
    """Each bad reply carries real register words (see the truth log's
    requests); the link raises instead of returning any of them."""
    with Simulator([1], cells=8, baud=115200, frozen=True, seed=9) as sim:
        link = _open(sim)
        try:
            for fault in (Fault.BAD_CRC, Fault.GARBAGE, Fault.TRUNCATED):
                for _ in range(5):
                    sim.inject(1, fault)
                    with pytest.raises(PollError):
                        link.read_holding_registers(1, 1000, 8)
            assert link.counters.responses == 0
            assert link.read_holding_registers(1, 1000, 8) == sim.model(1).read(1000, 8)
        finally:
            link.close()
    assert link.counters.errors[ErrorKind.CRC] == 10
    assert link.counters.errors[ErrorKind.SHORT_FRAME] == 5


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_a_reply_delivered_in_chunks_is_read_in_few_reads(transport: str) -> None:
    """The simulator releases a reply in chunks of 2 ms of wire time, as UARTs
    and USB adapters do (13 chunks for 120 registers at 115200 baud). The link
    reads nothing before the reply can be complete, so it takes the reply in
    one or two reads instead of one event-loop wake-up per chunk (which was
    most of the gateway's CPU at full scale)."""
    with Simulator([1], cells=120, baud=115200, frozen=True, transport=transport) as sim:
        link = _open(sim)
        reads = 0
        tr = link._transport
        received = tr._received

        def counting(data: bytes) -> None:
            nonlocal reads
            reads += 1
            received(data)

        tr._received = counting  # type: ignore[method-assign]
        try:
            n = 20
            for _ in range(n):
                assert link.read_holding_registers(1, 1000, 120) == sim.model(1).read(1000, 120)
        finally:
            link.close()
    chunk = max(1, int(CHUNK_S / (11 / 115200)))
    chunks_per_reply = -(-framing.reply_length(120) // chunk)
    assert chunks_per_reply >= 10
    assert reads / n <= 3, f"{reads / n:.1f} reads per reply of {chunks_per_reply} chunks"


async def test_retries_and_the_per_call_override() -> None:
    with Simulator([1], cells=2, baud=115200, frozen=True) as sim:
        link = _open(sim, retries=2)
        try:
            sim.inject(1, Fault.NO_REPLY, times=2)
            assert link.read_holding_registers(1, 0, 16) == sim.model(1).read(0, 16)
            assert link.counters.requests == 3
            assert link.counters.errors[ErrorKind.TIMEOUT] == 2
            sim.inject(1, Fault.NO_REPLY)
            with pytest.raises(PollError):  # retries=0: one timeout, no more
                link.read_holding_registers(1, 0, 16, retries=0)
            assert link.counters.requests == 4
            sim.inject(1, Fault.EXCEPTION, times=3)  # an exception is never retried
            with pytest.raises(PollError):
                link.read_holding_registers(1, 0, 16)
            assert link.counters.requests == 5
        finally:
            link.close()


async def test_rtu_over_tcp() -> None:
    with Simulator([5], cells=3, baud=115200, frozen=True, transport="tcp") as sim:
        link = _open(sim)
        try:
            assert link.is_open
            assert link.read_holding_registers(5, 1000, 3) == sim.model(5).read(1000, 3)
            sim.inject(5, Fault.BAD_CRC)
            with pytest.raises(PollError) as err:
                link.read_holding_registers(5, 1000, 3)
            assert err.value.kind is ErrorKind.CRC
            assert link.read_holding_registers(5, 0, 16) == sim.model(5).read(0, 16)
        finally:
            link.close()


async def test_tcp_connection_lost_and_reconnected() -> None:
    with Simulator([5], cells=3, baud=115200, frozen=True, transport="tcp") as sim:
        link = _open(sim)
        try:
            assert link.read_holding_registers(5, 0, 16)
            sim.unplug()  # the converter reboots: connection and listener gone
            with pytest.raises(PollError) as err:
                link.read_holding_registers(5, 0, 16)
            assert err.value.kind is ErrorKind.PORT and not link.is_open
            sim.replug()
            link.open()
            assert link.read_holding_registers(5, 0, 16) == sim.model(5).read(0, 16)
        finally:
            link.close()


async def test_tcp_converter_gone_is_a_port_error() -> None:
    with Simulator([5], cells=1, baud=115200, transport="tcp") as sim:
        bus = sim.bus_config(timeout_s=0.1)
    link = open_link(bus)
    with pytest.raises(PollError) as err:
        link.open()
    assert err.value.kind is ErrorKind.PORT and not link.is_open


async def test_missing_port_is_a_port_error(tmp_path: Path) -> None:
    bus = BusConfig(name="b", port=str(tmp_path / "ttyUSB9"), wait_for_port=True)
    link = open_link(bus)
    with pytest.raises(PollError) as err:
        link.open()
    assert err.value.kind is ErrorKind.PORT and "ttyUSB9" in err.value.detail
    with pytest.raises(PollError) as err:
        link.read_holding_registers(1, 0, 1)
    assert err.value.kind is ErrorKind.PORT


async def test_a_second_master_on_the_same_port_is_refused() -> None:
    with Simulator([1], cells=1, baud=115200) as sim:
        first, second = _open(sim), open_link(sim.bus_config())
        try:
            with pytest.raises(PollError) as err:
                second.open()
            assert err.value.kind is ErrorKind.PORT and not second.is_open
        finally:
            first.close()


async def test_rs485_rts_mode_on_a_pty_fails_clearly() -> None:
    with Simulator([1], cells=1, baud=115200) as sim:
        link = open_link(sim.bus_config(rs485_direction="rts"))
        with pytest.raises(PollError) as err:
            link.open()
    assert err.value.kind is ErrorKind.PORT
    assert "rs485_direction" in err.value.detail and "TIOCSRS485" in err.value.detail
    assert not link.is_open


async def test_unplug_closes_the_link_and_replug_reopens(tmp_path: Path) -> None:
    path = str(tmp_path / "ttyUSB0")
    with Simulator([1], cells=2, baud=115200, frozen=True, link=path) as sim:
        link = _open(sim)
        try:
            assert link.read_holding_registers(1, 0, 16)
            sim.unplug()
            assert not os.path.exists(path)
            with pytest.raises(PollError) as err:
                link.read_holding_registers(1, 0, 16)
            assert err.value.kind is ErrorKind.PORT and not link.is_open
            with pytest.raises(PollError) as err:  # still gone: reopening fails
                link.open()
            assert err.value.kind is ErrorKind.PORT
            sim.replug()
            link.open()
            assert link.read_holding_registers(1, 0, 16) == sim.model(1).read(0, 16)
        finally:
            link.close()
    assert link.counters.errors[ErrorKind.PORT] >= 1


async def test_line_settings_are_applied() -> None:
    """Even parity and two stop bits: 12-bit characters stretch the gap."""
    with Simulator([1], cells=1, baud=9600, parity="E", stopbits=2, frozen=True) as sim:
        bus = sim.bus_config()
        assert bus.char_time_s() == 12 / 9600
        link = _open(sim)
        try:
            assert link._transport._ser.parity == "E"  # type: ignore[attr-defined]
            assert link._transport._ser.stopbits == 2  # type: ignore[attr-defined]
            assert link.read_holding_registers(1, 0, 16) == sim.model(1).read(0, 16)
        finally:
            link.close()


# -- independent peers: the frames are exact Modbus RTU ---------------------------


async def _socat_pair() -> tuple[asyncio.subprocess.Process, list[str]]:
    socat = require_tool("socat", "socat")
    proc = await asyncio.create_subprocess_exec(
        socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0", stderr=asyncio.subprocess.PIPE
    )
    ptys: list[str] = []
    try:
        async with asyncio.timeout(10):
            while len(ptys) < 2:
                line = (await proc.stderr.readline()).decode()  # type: ignore[union-attr]
                assert line, "socat exited"
                if "PTY is " in line:
                    ptys.append(line.rsplit("PTY is ", 1)[1].strip())
    except BaseException:
        proc.terminate()
        await proc.wait()
        raise
    return proc, ptys


async def test_link_against_pymodbus_serial_server() -> None:
    """pymodbus's own RTU slave (not our code) answers our requests; its
    exception 02 for an unmapped address is classified as EXCEPTION."""
    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusSerialServer

    proc, ptys = await _socat_pair()
    try:
        hr = ModbusSequentialDataBlock(1, list(range(100, 2300)))  # pymodbus: address + 1
        ctx = ModbusServerContext(devices={4: ModbusDeviceContext(hr=hr)}, single=False)
        server = ModbusSerialServer(ctx, port=ptys[0], baudrate=115200)
        await server.serve_forever(background=True)
        link = open_link(BusConfig(name="b", port=ptys[1], baudrate=115200, timeout_s=0.5))
        await asyncio.to_thread(link.open)
        try:
            assert await asyncio.to_thread(link.read_holding_registers, 4, 0, 5) == [
                100,
                101,
                102,
                103,
                104,
            ]
            regs = await asyncio.to_thread(link.read_holding_registers, 4, 1000, 125)
            assert regs == list(range(1100, 1225))
            with pytest.raises(PollError) as err:
                await asyncio.to_thread(link.read_holding_registers, 4, 5000, 10)
            assert err.value.kind is ErrorKind.EXCEPTION and err.value.exception_code == 2
        finally:
            link.close()
            await server.shutdown()
    finally:
        proc.terminate()
        await proc.wait()


def test_crc_agrees_with_pymodbus_and_decoding_with_its_pdu():
    """framing's fast CRC and register decoding give pymodbus's own answers."""
    import random

    from btms_gateway.protocols.rtu import framing
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

    rng = random.Random(7)
    for n in (0, 1, 2, 8, 255):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert framing.crc16(data) == FramerRTU.compute_CRC(data).to_bytes(2, "big")
        if n >= 2:  # the residue check: any one flipped bit in data or CRC is caught
            frame = data + framing.crc16(data)
            assert framing.crc_ok(frame)
            bit = rng.randrange(8 * len(frame))
            assert not framing.crc_ok(
                bytes(b ^ (1 << bit % 8) * (i == bit // 8) for i, b in enumerate(frame))
            )
    registers = [rng.randrange(65536) for _ in range(125)]
    frame = framing.read_reply(9, registers)
    reference = ReadHoldingRegistersResponse()
    reference.decode(frame[2:-2])
    assert framing.classify(frame, 9, 125) == list(reference.registers) == registers
