"""The line feed against a gateway polling the BM-SM simulator over a real
pseudo-terminal, read by real TCP clients: asyncio streams and socat.

Only the test kit's fixtures (btms-gateway's pytest plugin: ``start_gateway``,
``make_event``) and the public API, as a third party's tests would be.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket

import pytest
from btms_gateway.core.api import Quality

LINE = re.compile(
    r"^(?P<name>\S+) (?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (?P<quality>[A-Z]+)(?P<rest>.*)$"
)
MEASURED_KEYS = {"voltage", "current", "soc", "soh", "balance", "state", "alarm_word", "cell_count"}


def fields(line: str) -> dict[str, str]:
    """``key=value`` pairs of a reading line, with its ``NAME`` and ``QUALITY``."""
    match = LINE.match(line)
    assert match, f"not a reading line: {line!r}"
    pairs = dict(word.split("=", 1) for word in match["rest"].split())
    return {"NAME": match["name"], "QUALITY": match["quality"], **pairs}


async def line_where(reader: asyncio.StreamReader, wanted, what: str, timeout: float = 15.0) -> str:
    """The first line ``wanted(line)`` accepts; fails after ``timeout`` seconds."""

    async def scan() -> str:
        while True:
            raw = await reader.readline()
            assert raw, f"connection closed before {what}"
            line = raw.decode().rstrip("\n")
            if wanted(line):
                return line

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def test_each_reading_is_a_line_with_the_values_the_device_has(start_gateway):
    h = await start_gateway({"linefeed": {}}, strings=2)
    await h.wait_quality(Quality.GOOD)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port("linefeed"))
    assert await reader.readline() == f"# btms-gateway linefeed {h.gateway.name}\n".encode()
    for name in ("S1", "S2"):
        line = await line_where(reader, lambda x, n=name: x.startswith(f"{n} "), f"{name}'s line")
        got = fields(line)
        sim, slave = h.sim_for(name)
        truth = sim.expected(slave)
        assert got["QUALITY"] == "GOOD" and got["quality"] == "good"
        assert got["voltage"] == f"{truth.voltage_v:.2f}"
        assert got["current"] == f"{truth.current_a:.2f}"
        assert got["soc"] == f"{truth.soc_pct:.0f}"
        assert got["state"] == truth.state.name.lower()
        assert got["cell_count"] == str(truth.cell_count) == "12"
        assert got["status"] in ("ok", "error") and got["active_alarms"] == "0"
    writer.close()


@pytest.mark.peer
async def test_socat_reads_readings_and_alarm_events(start_gateway, make_event):
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat not found: apt-get install socat (./run.sh test installs it)")
    h = await start_gateway({"linefeed": {}}, strings=1)
    await h.wait_quality(Quality.GOOD)
    proc = await asyncio.create_subprocess_exec(
        socat, "-u", f"TCP:127.0.0.1:{h.port('linefeed')}", "STDOUT",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        await line_where(proc.stdout, lambda x: x.startswith("S1 "), "S1 through socat")
        h.gateway.emit(make_event("raised", value=2.451, seq=41))
        h.gateway.emit(make_event("acknowledged", seq=42, by="noc"))
        raised = await line_where(proc.stdout, lambda x: x.startswith("ALARM "), "the alarm")
        assert re.fullmatch(
            r"ALARM \S+Z RAISED ALARM cell_voltage_high:S1:7 UPS1/S1/7 value=2.451 limit=2.4 "
            r"unit=V seq=41 msg=\S.*",
            raised,
        ), raised
        acked = await line_where(proc.stdout, lambda x: x.startswith("ALARM "), "the ack")
        assert " ACKNOWLEDGED " in acked and " by=noc seq=42 " in acked
    finally:
        proc.kill()
        await proc.wait()


async def test_a_stale_string_has_its_measured_values_withheld(start_gateway):
    h = await start_gateway({"linefeed": {}}, strings=2, offline_after_failures=1000)
    await h.wait_quality(Quality.GOOD)
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port("linefeed"))
    sim, slave = h.sim_for("S1")
    sim.vanish(slave)  # the BM-SM stops answering: S1 turns STALE at the first failed poll
    stale = fields(await line_where(reader, lambda x: x.startswith("S1 ") and " STALE " in x,
                                    "S1 STALE"))  # fmt: skip
    assert (
        stale["QUALITY"] == "STALE" and stale["quality"] == "stale" and stale["status"] == "error"
    )
    assert "data_age" in stale and MEASURED_KEYS.isdisjoint(stale), stale
    fresh = fields(await line_where(reader, lambda x: x.startswith("S2 "), "S2 still polled"))
    assert fresh["QUALITY"] == "GOOD" and set(fresh) >= MEASURED_KEYS
    # a client that arrives now gets the plant as it is: S1 withheld there too
    late_reader, late_writer = await asyncio.open_connection("127.0.0.1", h.port("linefeed"))
    first = fields(
        await line_where(late_reader, lambda x: x.startswith("S1 "), "S1 for a newcomer")
    )
    assert first["QUALITY"] == "STALE" and MEASURED_KEYS.isdisjoint(first)
    for w in (writer, late_writer):
        w.close()


async def test_a_slow_client_misses_lines_and_holds_up_no_one(start_gateway, make_event):
    h = await start_gateway({"linefeed": {"max_buffer_bytes": 4096}}, strings=1)
    await h.wait_quality(Quality.GOOD)
    port = h.port("linefeed")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, never read
    slow.setblocking(False)
    await asyncio.get_running_loop().sock_connect(slow, ("127.0.0.1", port))
    fast, fast_writer = await asyncio.open_connection("127.0.0.1", port)
    await line_where(fast, lambda x: x.startswith("S1 "), "the fast client's first line")
    seqs: list[int] = []
    for batch in range(100):  # 0.5 MB of lines in all, as fast as the fast client reads
        for seq in range(10 * batch + 1, 10 * batch + 11):
            h.gateway.emit(make_event(seq=seq, message="x" * 500))
        while len(seqs) < 10 * batch + 10:
            line = await line_where(fast, lambda x: x.startswith("ALARM "), f"event {len(seqs)}")
            seqs.append(int(re.findall(r" seq=(\d+) ", line)[0]))
    assert seqs == list(range(1, 1001))  # every event, in order, while the slow one sleeps
    await line_where(fast, lambda x: x.startswith("S1 "), "readings after the flood")
    slow_reader, slow_writer = await asyncio.open_connection(sock=slow)  # now it reads
    got: list[int] = []  # the events the slow client gets, and how many it is told it missed
    missed = 0
    while len(got) + missed < 1000:  # each event delivered or counted (readings count too)
        line = await line_where(slow_reader, lambda x: True, "the slow client's backlog")
        got += [int(n) for n in re.findall(r"^ALARM .* seq=(\d+) ", line)]
        if line.startswith("# dropped "):
            assert re.fullmatch(r"# dropped \d+ lines: reading too slowly", line)
            missed += int(line.split()[2])
    assert 0 < len(got) < 1000 and got == sorted(got), got
    assert h.gateway.plugin_failures() == {}
    for w in (fast_writer, slow_writer):
        w.close()


async def test_one_client_too_many_is_told_it_is_busy(start_gateway):
    h = await start_gateway({"linefeed": {"max_clients": 2}}, strings=1)
    port = h.port("linefeed")
    first = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for reader, _ in first:
        assert (await reader.readline()).startswith(b"# btms-gateway linefeed")
    reader, _ = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.read() == b"# busy: 2 clients connected\n"  # and closed
    first[0][1].close()  # one leaves: a newcomer gets in

    async def greeted() -> bool:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        line = await r.readline()
        w.close()
        return line.startswith(b"# btms-gateway linefeed")

    for _ in range(100):
        if await greeted():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no client got in after one of two left")


async def test_a_bad_section_is_refused_naming_the_key(start_gateway):
    with pytest.raises(Exception, match=r"plugins\.linefeed\.max_clients"):
        await start_gateway({"linefeed": {"max_clients": 0}})
