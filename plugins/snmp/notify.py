"""Notifications to every configured receiver: v2c traps, v3 traps, informs.

Each receiver has its own bounded queue and sender task, so a dead or slow
receiver (an inform waiting for its timeouts) only backs up its own queue:
the hook that enqueues never awaits a receiver, and the other receivers and
the agent's request handling go on. A full queue drops the newest
notification and counts it; an inform that is never acknowledged after its
retries is counted in btmsGwInformsFailed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from btms_gateway.core.api import AlarmEvent, EventKind, StringSnapshot
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    send_notification,
)
from pysnmp.proto import rfc1902

from .agent import AUTH, PRIV
from .conventions import QUALITY, date_and_time, text
from .image import AgentStats
from .settings import ReceiverSettings, SnmpSettings
from .tables import object_oids

log = logging.getLogger("btms_gateway.plugins.snmp")

SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
COLD_START = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)
PARALLEL_PER_RECEIVER = 8
EVENT_TRAP = {
    EventKind.RAISED: "btmsTrapAlarmRaised",
    EventKind.CLEARED: "btmsTrapAlarmCleared",
    EventKind.ACKNOWLEDGED: "btmsTrapAlarmAcknowledged",
}

VarBinds = list[tuple[tuple[int, ...], Any]]


class Receiver:
    def __init__(self, settings: ReceiverSettings, auth: Any, stats: AgentStats) -> None:
        self.settings = settings
        self.auth = auth
        self.stats = stats
        self.queue: asyncio.Queue[VarBinds] = asyncio.Queue(settings.queue_size)
        self.target: Any = None
        self.task: asyncio.Task[None] | None = None
        self.failed = 0
        self.sent = 0

    def offer(self, varbinds: VarBinds) -> None:
        try:
            self.queue.put_nowait(varbinds)
        except asyncio.QueueFull:
            self.stats.notifications_dropped += 1

    async def run(self, snmp_engine: Any) -> None:
        s = self.settings
        self.target = await UdpTransportTarget.create(
            (s.host, s.port), timeout=s.timeout_s, retries=s.retries
        )
        slots = asyncio.Semaphore(PARALLEL_PER_RECEIVER)
        pending: set[asyncio.Task[None]] = set()
        while True:
            varbinds = await self.queue.get()
            await slots.acquire()
            task = asyncio.create_task(self._send(snmp_engine, varbinds, slots))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def _send(self, snmp_engine: Any, varbinds: VarBinds, slots: asyncio.Semaphore) -> None:
        s = self.settings
        limit = s.timeout_s * (s.retries + 1) + 2.0
        try:
            binds = [ObjectType(ObjectIdentity(oid), value) for oid, value in varbinds]
            result = await asyncio.wait_for(
                send_notification(
                    snmp_engine, self.auth, self.target, ContextData(), s.kind, *binds
                ),
                limit,
            )
            error_indication, error_status = result[0], result[1]
            if error_indication or error_status:
                raise RuntimeError(str(error_indication or error_status))
            self.sent += 1
            self.stats.notifications_sent += 1
        except Exception as exc:
            self.failed += 1
            if s.kind == "inform":
                self.stats.informs_failed += 1
            log.warning("SNMP %s to receiver %r failed: %s", s.kind, s.name, exc)
        finally:
            slots.release()


class Notifier:
    """Builds notification varbinds from events and fans them out."""

    def __init__(
        self, settings: SnmpSettings, base: tuple[int, ...], engine_id: bytes, stats: AgentStats
    ) -> None:
        self.base = base
        self.oids = object_oids(base)
        self.engine_id = engine_id
        self.engine: Any = None  # created only when there are receivers (about 1 MB)
        self.receivers = [Receiver(r, self._auth(settings, r), stats) for r in settings.receivers]

    @staticmethod
    def _auth(settings: SnmpSettings, r: ReceiverSettings) -> Any:
        if r.version == "v2c":
            community = r.community or settings.community
            assert community is not None  # the settings validator guarantees it
            return CommunityData(community.get_secret_value(), mpModel=1)
        user = settings.user(r.user or "")
        return UsmUserData(
            user.name,
            user.auth_key.get_secret_value(),
            user.priv_key.get_secret_value(),
            authProtocol=AUTH[user.auth_protocol],
            privProtocol=PRIV[user.priv_protocol],
        )

    def start(self) -> None:
        if self.receivers:
            self.engine = SnmpEngine(rfc1902.OctetString(self.engine_id))
        for r in self.receivers:
            r.task = asyncio.create_task(r.run(self.engine), name=f"snmp-notify-{r.settings.name}")

    async def stop(self) -> None:
        tasks = [r.task for r in self.receivers if r.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.engine is not None:
            self.engine.close_dispatcher()

    def _fan_out(self, trap_oid: tuple[int, ...], varbinds: VarBinds) -> None:
        full = [(SNMP_TRAP_OID, rfc1902.ObjectIdentifier(trap_oid)), *varbinds]
        for r in self.receivers:
            r.offer(full)

    def cold_start(self) -> None:
        self._fan_out(COLD_START, [])

    def _obj(self, name: str, value: Any, instance: tuple[int, ...] = (0,)) -> Any:
        return (*self.oids[name], *instance), value

    def alarm(self, event: AlarmEvent) -> None:
        o, s = self._obj, rfc1902.OctetString
        binds = [
            o("btmsNotifAlarmId", s(event.alarm_id)),
            o("btmsNotifObject", s(str(event.path))),
            o("btmsNotifSeverity", rfc1902.Integer(int(event.severity))),
            o("btmsNotifValue", s(text(event.value))),
            o("btmsNotifLimit", s(text(event.limit))),
            o("btmsNotifUnit", s(event.unit)),
            o("btmsNotifTime", s(date_and_time(event.at) or b"")),
            o("btmsNotifMessage", s(event.message)),
        ]
        if event.kind is EventKind.ACKNOWLEDGED:
            binds.append(o("btmsNotifAckBy", s(event.by or "")))
        self._fan_out(self.oids[EVENT_TRAP[event.kind]], binds)

    def string_quality(self, string: StringSnapshot, offline: bool) -> None:
        trap = "btmsTrapStringOffline" if offline else "btmsTrapStringOnline"
        idx = (string.index,)
        binds = [
            self._obj("btmsStringName", rfc1902.OctetString(string.name), idx),
            self._obj("btmsStringQuality", rfc1902.Integer(QUALITY[string.quality]), idx),
            self._obj("btmsNotifTime", rfc1902.OctetString(date_and_time(time.time()) or b"")),
        ]
        self._fan_out(self.oids[trap], binds)
