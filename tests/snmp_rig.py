"""Helpers (no tests): a gateway with the SNMP agent on its own thread's event
loop, so synchronous hypothesis tests can send it real datagrams, and the two
clients they use: raw SNMPv2c datagrams from pyasn1 over a UDP socket
(made by bench/attack/snmp.py's ``v2c_message``), and
pysnmp's command generator for SNMPv3 authPriv (USM, not a mock); the plant
those tests serve, the start OIDs they draw and how they compare answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.model import Quality
from btms_gateway.kit.events import active_alarm
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
from btms_gateway.plugins.snmp import plugin
from btms_gateway.plugins.snmp.image import ServeContext
from btms_gateway.plugins.snmp.tables import (
    DEFAULT_BASE,
    SCALARS,
    TABLES,
    object_oids,
    parse_oid,
)
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import ContextData, UdpTransportTarget, UsmUserData
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c
from snmp_support import snmp_settings

Varbinds = list[tuple[tuple[int, ...], str, bytes]]  # (name, value type, value BER)
Answer = tuple[str | None, int, int, Varbinds]  # (error indication, status, index, varbinds)


def normal(varbinds: Any) -> Varbinds:
    """Comparable varbinds: the name, the value's type and its BER octets."""
    return [(tuple(n), type(v).__name__, encoder.encode(v)) for n, v in varbinds]


class AgentThread:
    """``with AgentThread(config, setup) as rig:`` a gateway serving on its own
    loop; ``setup(harness)`` runs there once the gateway is up."""

    def __init__(self, config: dict[str, Any], setup: Callable[[Any], Awaitable[None]]) -> None:
        self.config = config
        self.setup = setup
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.harness: GatewayHarness | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.clients: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name="snmp-agent", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __enter__
            self._error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with GatewayHarness(self.config) as h:
            self.harness = h
            await self.setup(h)
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> AgentThread:
        self._thread.start()
        self.ready.wait(60)
        if self._error is not None or self.loop is None:
            raise RuntimeError("the agent's gateway did not start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def call(self, make: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
        """Run ``make()`` on the agent's loop and wait for its result."""
        assert self.loop is not None

        async def run() -> Any:
            return await make()

        future: Future[Any] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return future.result(timeout)


def v2c_exchange(address: tuple[str, int], datagram: bytes, timeout: float = 5) -> Answer:
    reply = datagram_exchange(address, datagram, timeout)
    assert reply is not None, "no answer"
    return decode_v2c(reply)


def datagram_exchange(address: tuple[str, int], datagram: bytes, timeout: float) -> bytes | None:
    """The reply's octets, or None when none came within ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(datagram, address)
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def decode_v2c(reply: bytes) -> Answer:
    msg, rest = decoder.decode(reply, asn1Spec=v2c.Message())
    assert rest == b""
    pdu = v2c.apiMessage.get_pdu(msg)
    return (
        None,
        int(v2c.apiPDU.get_error_status(pdu)),
        int(v2c.apiPDU.get_error_index(pdu)),
        normal(v2c.apiPDU.get_varbinds(pdu)),
    )


class V2cEndpoint(asyncio.DatagramProtocol):
    """A UDP client on the agent's own loop, opened before a test changes the
    plant, so that nothing but the request itself runs between the change
    and the agent's answer to it."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] | None = None
        self.transport: Any = None

    @classmethod
    async def open(cls, address: tuple[str, int]) -> V2cEndpoint:
        _, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, remote_addr=address
        )
        return endpoint

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(data)

    async def ask(self, datagram: bytes, timeout: float = 10) -> Answer:
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.sendto(datagram)
        return decode_v2c(await asyncio.wait_for(self.reply, timeout))

    def close(self) -> None:
        self.transport.close()


class V3Client:
    """pysnmp's command generator on the agent's loop, one USM user."""

    def __init__(self, address: tuple[str, int], user: UsmUserData) -> None:
        self.address = address
        self.user = user
        self.engine: SnmpEngine | None = None
        self.target: Any = None

    async def bulk(self, oids: list[tuple[int, ...]], n: int, m: int) -> Answer:
        if self.engine is None:
            self.engine = SnmpEngine()
            self.target = await UdpTransportTarget.create(self.address, timeout=5, retries=0)
        addr, _params = CommandGeneratorLcdConfigurator().configure(
            self.engine, self.user, self.target, ContextData().contextName
        )
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        def done(
            _e: Any, _h: Any, indication: Any, status: Any, index: Any, vbs: Any, *_: Any
        ) -> None:
            if not future.done():
                text = None if indication is None else type(indication).__name__
                future.set_result((text, int(status or 0), int(index or 0), normal(vbs or [])))

        varbinds = [(rfc1902.ObjectName(oid), rfc1902.Null("")) for oid in oids]
        cmdgen.BulkCommandGenerator().send_varbinds(
            self.engine, addr, None, b"", n, m, varbinds, done, None
        )
        return await future

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close_dispatcher()


BASE = parse_oid(DEFAULT_BASE)
OIDS = object_oids(BASE)
VOLATILE = (
    (1, 3, 6, 1, 2, 1, 1, 3),  # sysUpTime
    (1, 3, 6, 1, 2, 1, 11),  # snmp group counters (one more packet each request)
    (1, 3, 6, 1, 6, 3, 10, 2, 1, 3),  # snmpEngineTime
    OIDS["btmsGwUptime"],
    OIDS["btmsStringDataAge"],
    OIDS["btmsUpsDataAge"],
)


def alarm(n: int) -> AlarmEvent:
    return AlarmEvent(
        seq=n, kind=EventKind.RAISED, alarm_id=f"cell_voltage_high:S1:{n}",
        rule="cell_voltage_high", severity=Severity.ALARM, path=ObjectPath("UPS1", "S1", n),
        value=2.45, limit=2.4, unit="V", message=f"cell {n} high", at=time.time(),
    )  # fmt: skip


async def publish_plant(h: Any) -> None:
    """Three strings (one STALE, with values missing) and three alarms."""
    h.publish("S1", make_reading(12, current_a=-3.5), Quality.GOOD)
    sparse = make_reading(5)
    cells = tuple(
        replace(c, temperature_c=None) if c.index % 2 else c for c in sparse.cells
    )  # absent values are skipped by GETNEXT
    h.publish("S3", replace(sparse, cells=cells, ambient_temperature_c=None), Quality.STALE)
    h.publish("S4", make_reading(3), Quality.GOOD)
    active: list[Any] = []
    for n in (3, 5, 8):  # each with the alarms active after it, as the alarm engine emits
        active.append(active_alarm(alarm(n)))
        h.gateway.emit(alarm(n), active=tuple(active))
    snmp = plugin.current()
    await h.wait_until(
        lambda: (
            len(snmp.ctx.alarms) == 3
            and all(snmp.ctx.plant.strings[s].reading for s in ("S1", "S3", "S4"))
        ),
        what="the plant and the alarms",
    )


def comparable(answer: Answer) -> Answer:
    indication, status, index, varbinds = answer
    out = []
    for name, kind, ber in varbinds:
        volatile = any(name[: len(v)] == v for v in VOLATILE)
        out.append((name, kind, b"" if volatile else ber))
    return indication, status, index, out


ANCHORS = [
    (0, 0), (1, 3, 6, 1, 2, 1, 1), (1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 2, 1, 1, 9, 1),
    (1, 3, 6, 1, 4, 1, 8072), (*BASE[:-1], 9998), BASE, (*BASE, 0), (*BASE, 1), (*BASE, 1, 1),
    (*BASE, 1, 2, 1), (*BASE, 1, 4), (*BASE, 1, 5, 1, 12), (*BASE, 1, 6), (*BASE, 2),
    (1, 3, 6, 1, 6, 3, 10, 2, 1), (1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0), (1, 3, 6, 1, 6, 3, 16),
    (2, 999),
    *OIDS.values(),
    *((*OIDS[c], s, i) for c in ("btmsCellVoltage", "btmsCellTemperature", "btmsCellSoc")
      for s in (1, 2, 3, 4) for i in (1, 2, 5, 12)),
]  # fmt: skip


@st.composite
def oids(draw: st.DrawFn) -> tuple[int, ...]:
    oid = draw(st.sampled_from(ANCHORS))
    change = draw(st.sampled_from(["as is", "cut", "extend", "next"]))
    if change == "cut" and len(oid) > 2:
        oid = oid[: draw(st.integers(2, len(oid) - 1))]
    elif change == "extend":
        tail = st.one_of(st.integers(0, 130), st.just(2**32 - 1))
        oid = (*oid, *draw(st.lists(tail, min_size=1, max_size=3)))
    elif change == "next":
        oid = (*oid[:-1], oid[-1] + 1)
    return oid


def rig_config() -> dict[str, Any]:
    """Four strings, two UPS, readings that never go stale, GETBULK up to 300
    varbinds and 4,096 bytes (so that either bound may cut it), no rate limit
    (hypothesis sends hundreds of requests a second)."""
    return plant_config(
        strings=4, ups=2, stale_after_s=3600,
        plugins={"snmp": snmp_settings(
            max_bulk_varbinds=300, max_response_bytes=RIG_MAX_RESPONSE, rate_limit_per_s=0
        )},
    )  # fmt: skip


RIG_MAX_RESPONSE = 4096


def model(ctx: ServeContext) -> list[tuple[tuple[int, ...], Any, str]]:
    """(instance OID, value, base type) of every present value, sorted by OID."""
    out = []
    for s in SCALARS:
        raw = s.get(None, ctx)  # type: ignore[misc]
        if raw is not None:
            out.append(((*OIDS[s.name], 0), raw, s.base))
    for t in TABLES:
        for sfx, key in t.rows(ctx):
            row = t.resolve(ctx, key)
            for col in t.columns:
                if col.access != "not-accessible" and row is not None:
                    raw = col.get(row, ctx)  # type: ignore[misc]
                    if raw is not None:
                        out.append(((*OIDS[col.name], *sfx), raw, col.base))
    return sorted(out, key=lambda kv: kv[0])
