"""The BM-SM simulator as a device and as a user command: realistic, seeded,
controllable values; faults on demand and at rates; a bounded truth log."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import pytest
from btms_gateway.core.config import BusConfig
from btms_gateway.core.model import StringState
from btms_gateway.core.profiles import PollError
from btms_gateway.protocols.bmsm.poller import BmsmPoller
from btms_gateway.protocols.bmsm.simulator import Fault, Simulator, StringModel
from btms_gateway.protocols.bmsm.simulator.cli import simulate
from btms_gateway.protocols.bmsm.simulator.faults import parse_rates
from btms_gateway.protocols.rtu import open_link
from click.testing import CliRunner
from conftest import require_tool


def test_same_seed_same_string_different_seed_different() -> None:
    a = StringModel.create(1, 120, seed=4).expected_reading()
    b = StringModel.create(1, 120, seed=4).expected_reading()
    c = StringModel.create(1, 120, seed=5).expected_reading()
    assert a == b
    assert a.cells != c.cells


def test_float_string_is_realistic() -> None:
    m = StringModel.create(1, 120, seed=1)
    r = m.expected_reading()
    volts = [c.voltage_v for c in r.cells]
    assert r.state is StringState.FLOAT_CHARGE and r.current_a > 0 and r.soc_pct == 100
    assert 2.20 < min(volts) < max(volts) < 2.30  # float charge, per-cell spread
    assert r.voltage_v == pytest.approx(sum(volts), abs=0.01)
    res = sorted(c.resistance_mohm for c in r.cells)
    assert r.cells[m.weak_cell].resistance_mohm == res[-1] > 1.2 * res[len(res) // 2]


def test_discharge_string_moves_slowly_and_freezes() -> None:
    m = StringModel.create(2, 24, seed=1, mode="discharge")
    before = m.expected_reading()
    assert before.state is StringState.DISCHARGE and before.current_a < 0
    weak_r = m.cells[m.weak_cell].resistance_mohm
    for _ in range(60):
        m.step(1.0)
    after = m.expected_reading()
    assert after.soc_pct < before.soc_pct
    assert m.cells[m.weak_cell].resistance_mohm > weak_r  # the weak cell drifts up
    assert after.cells != before.cells
    m.frozen = True
    for _ in range(60):
        m.step(1.0)
    assert m.expected_reading() == after


def test_fault_rates_parse_with_clear_errors() -> None:
    assert parse_rates(["bad_crc=0.1", "vanish=0"]) == {Fault.BAD_CRC: 0.1, Fault.VANISH: 0.0}
    with pytest.raises(ValueError, match="unknown fault 'crc'"):
        parse_rates(["crc=0.1"])
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_rates(["no_reply=2"])


def _faults_seen(seed: int) -> list[str | None]:
    rates = {Fault.BAD_CRC: 0.2, Fault.EXCEPTION: 0.2, Fault.NO_REPLY: 0.1}
    with Simulator([1], cells=2, baud=115200, seed=seed, rates=rates, frozen=True) as sim:
        link = open_link(sim.bus_config(timeout_s=0.05, retries=0))
        link.open()
        try:
            for _ in range(25):
                with contextlib.suppress(PollError):
                    link.read_holding_registers(1, 0, 16)
        finally:
            link.close()
        return [t.fault for t in sim.truth_log]


async def test_fault_rates_are_deterministic_with_a_seed() -> None:
    first, again = _faults_seen(11), _faults_seen(11)
    assert first == again
    assert {Fault.BAD_CRC.value, Fault.EXCEPTION.value} <= set(first)
    assert first.count(None) > 5


async def test_truth_log_is_bounded_and_matches_what_was_served() -> None:
    with Simulator([1], cells=12, baud=115200, frozen=True, log_size=5) as sim:
        link = open_link(sim.bus_config(timeout_s=0.2))
        link.open()
        try:
            r = BmsmPoller(link, 1).poll()
            r2 = BmsmPoller(link, 1).poll()
        finally:
            link.close()
        log = sim.truth_log
    assert len(log) == 5  # 16 replies served (two first polls), the newest 5 kept
    assert [(t.address, t.count) for t in log] == [
        (1400, 12),
        (1600, 12),
        (1800, 12),
        (2000, 12),
        (0, 16),  # the block read again after the cells: the count confirmed
    ]
    assert log[0].words == tuple(round(c.temperature_c * 10) for c in r.cells)
    assert r == r2.__class__(**{**{f: getattr(r2, f) for f in r2.__slots__}, "read_at": r.read_at})


async def test_tests_set_a_value_and_the_poller_reads_it() -> None:
    with Simulator([3], cells=12, baud=115200, seed=2) as sim:
        sim.freeze()
        sim.set_cell(3, 5, voltage_v=2.171, temperature_c=31.7)
        link = open_link(sim.bus_config(timeout_s=0.2))
        link.open()
        try:
            r = BmsmPoller(link, 3).poll()
        finally:
            link.close()
        assert r.cells[4].voltage_v == 2.171 and r.cells[4].temperature_c == 31.7
        assert r.cells == sim.expected(3).cells
        assert r.voltage_v == sim.expected(3).voltage_v


async def test_a_vanished_slave_comes_back_by_itself() -> None:
    with Simulator([1], cells=2, baud=115200, frozen=True) as sim:
        link = open_link(sim.bus_config(timeout_s=0.05, retries=0))
        link.open()
        try:
            sim.inject(1, Fault.VANISH, seconds=0.3)
            failures = 0
            for _ in range(200):  # bounded: at most ~200 x 60 ms
                try:
                    link.read_holding_registers(1, 0, 16)
                    break
                except PollError:
                    failures += 1
            else:
                pytest.fail("the slave never came back")
        finally:
            link.close()
    assert failures >= 2


async def test_late_and_swapped_replies_on_the_wire() -> None:
    """A LATE reply leaves its delay after the wire allows (the reply itself
    is good); a SWAPPED one is the frame sent for the slave's previous request,
    recorded as serving no data; a slow slave (``set_reply_delay``) is late on
    every reply until set back. Read raw from the pty, as a master would."""
    import os
    import time

    from btms_gateway.protocols.rtu import framing

    with Simulator([1], cells=12, baud=115200, frozen=True) as sim:
        fd = os.open(sim.port, os.O_RDWR | os.O_NOCTTY)
        try:

            def ask(address: int, count: int) -> tuple[bytes, float]:
                os.write(fd, framing.read_request(1, address, count))
                t, reply = time.monotonic(), b""
                while len(reply) < 5 + 2 * count:
                    reply += os.read(fd, 512)
                return reply, time.monotonic() - t

            volts = framing.read_reply(1, sim.registers(1, 1000, 12))
            temps = framing.read_reply(1, sim.registers(1, 1400, 12))
            assert ask(1000, 12)[0] == volts
            sim.inject(1, Fault.LATE, delay_s=0.2)
            reply, took = ask(1000, 12)
            assert reply == volts and took >= 0.2
            sim.inject(1, Fault.SWAPPED)
            assert ask(1400, 12)[0] == volts  # the previous request's frame
            assert ask(1400, 12)[0] == temps
            sim.set_reply_delay(1, 0.15)
            assert [ask(1400, 12)[1] >= 0.15 for _ in range(2)] == [True, True]
            sim.set_reply_delay(1, 0.0)
            assert ask(1400, 12)[0] == temps  # on time again (its record: no fault)
        finally:
            os.close(fd)
        faults = [t.fault for t in sim.truth_log]
        words = [t.words for t in sim.truth_log]
    assert faults == [None, "late", "swapped", None, "late", "late", None]
    assert words[2] is None and words[1] == words[0]


def test_a_cell_count_change_keeps_cells_and_added_ones_read_0_until_measured() -> None:
    m = StringModel.create(1, 16, seed=3)
    cells = list(m.cells)
    m.set_cell_count(14)
    assert m.zero_filled(1000, 16) == "past_count" and m.read(1000, 16)[14:] == [0, 0]
    assert m.zero_filled(1000, 14) is None
    m.set_cell_count(16, unmeasured_s=0.2)
    assert m.cells == cells  # the same two cells found again
    assert m.read(1200, 16)[14:] == [0, 0] and m.zero_filled(1200, 16) == "unmeasured"
    assert m.zero_filled(1200, 14) is None
    with pytest.raises(PollError, match="cell 15 voltage 0 V"):
        m.expected_reading()  # no correct reading exists while they read 0
    m.unmeasured_until = 0.0  # their time has come
    assert m.zero_filled(1200, 16) is None and m.read(1200, 16)[14] != 0
    assert m.expected_reading().cells[14].voltage_v == cells[14].voltage_v


def test_cli_takes_the_new_fault_options() -> None:
    r = CliRunner().invoke(simulate, ["--help"])
    assert all(o in r.output for o in ("--late-ms", "--reply-delay-ms", "--unmeasured-s"))
    assert "late" in r.output and "swapped" in r.output
    assert parse_rates(["late=0.01", "swapped=0.005"]) == {Fault.LATE: 0.01, Fault.SWAPPED: 0.005}


def test_cli_rejects_bad_options() -> None:
    runner = CliRunner()
    r = runner.invoke(simulate, ["--fault", "crc=0.1"])
    assert r.exit_code == 2 and "unknown fault 'crc'" in r.output
    r = runner.invoke(simulate, ["--tcp", "nohost"])
    assert r.exit_code == 2 and "HOST:PORT" in r.output
    r = runner.invoke(simulate, ["--slaves", "1,1"])
    assert r.exit_code == 2 and "distinct" in r.output
    r = runner.invoke(simulate, ["--pty", "--tcp", "127.0.0.1:0"])
    assert r.exit_code == 2


async def test_simulate_command_serves_a_pty_a_gateway_can_poll() -> None:
    """The user feature end to end: `btms-gateway simulate` in its own
    process, its printed pty polled through the real link and poller."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btms_gateway.core", "simulate", "--slaves", "4,5",
        "--cells", "12", "--baud", "115200", "--pty", "--seed", "3", "--duration", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        path = None
        async with asyncio.timeout(30):
            while path is None:
                line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
                assert line, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                if line.startswith("serial port: "):
                    path = line.split(": ", 1)[1].strip()
        link = open_link(BusConfig(name="b", port=path, baudrate=115200, timeout_s=0.3))
        link.open()
        try:
            r4 = BmsmPoller(link, 4).poll()
            r5 = BmsmPoller(link, 5).poll()
        finally:
            link.close()
        assert r4.cell_count == r5.cell_count == 12
        assert r4.cells != r5.cells
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert "served 16 requests" in out.decode()  # two first polls of 8 transactions


async def test_serial_port_mode_through_a_socat_null_modem() -> None:
    """--port: the simulator drives an existing serial device. socat links two
    ptys like a null-modem cable; the gateway side opens the other end."""
    socat = require_tool("socat", "socat")
    proc = await asyncio.create_subprocess_exec(
        socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0", stderr=asyncio.subprocess.PIPE
    )
    try:
        ptys: list[str] = []
        async with asyncio.timeout(10):
            while len(ptys) < 2:
                line = (await proc.stderr.readline()).decode()  # type: ignore[union-attr]
                assert line, "socat exited"
                if "PTY is " in line:
                    ptys.append(line.rsplit("PTY is ", 1)[1].strip())
        with Simulator(
            [6], cells=12, baud=115200, frozen=True, transport="serial", port=ptys[0]
        ) as sim:
            link = open_link(BusConfig(name="b", port=ptys[1], baudrate=115200, timeout_s=0.3))
            link.open()
            try:
                r = BmsmPoller(link, 6).poll()
            finally:
                link.close()
            assert r.cells == sim.expected(6).cells
    finally:
        proc.terminate()
        await proc.wait()


async def test_simulate_command_over_tcp() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btms_gateway.core", "simulate", "--slaves", "9", "--cells", "12",
        "--baud", "115200", "--tcp", "127.0.0.1:0", "--duration", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        port = None
        async with asyncio.timeout(30):
            while port is None:
                line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
                assert line, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                if "tcp_port = " in line:
                    port = int(line.rsplit("tcp_port = ", 1)[1])
        bus = BusConfig(name="b", transport="rtu-over-tcp", host="127.0.0.1", tcp_port=port)
        link = open_link(bus)
        link.open()
        try:
            r = BmsmPoller(link, 9).poll()
        finally:
            link.close()
        assert r.cell_count == 12
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 10)


def test_mbpoll_reads_the_simulator() -> None:
    """mbpoll (libmodbus, an RTU master no one here wrote) reads the string
    block and a cell array from the simulator's pty: the framing is exact."""
    import re
    import subprocess

    mbpoll = require_tool("mbpoll", "mbpoll")
    with Simulator([3], cells=6, baud=19200, seed=4, frozen=True) as sim:
        for address, count in ((0, 16), (1000, 6), (1400, 6)):
            out = subprocess.run(
                [mbpoll, "-m", "rtu", "-a", "3", "-b", "19200", "-P", "none", "-t", "4:hex",
                 "-0", "-r", str(address), "-c", str(count), "-1", "-o", "2", sim.port],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
            got = [
                int(v, 16) for v in re.findall(r"^\[\d+\]:\s+0x([0-9A-Fa-f]{4})", out.stdout, re.M)
            ]
            assert got == sim.registers(3, address, count)
