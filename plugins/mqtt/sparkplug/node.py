"""The Sparkplug B edge node: session rules over the payloads of payloads.py.

One MQTT session is one edge node session: its will is an NDEATH carrying
the session's bdSeq (from the disk buffer, so it goes on counting across
restarts); NBIRTH (seq 0) carries the same bdSeq, then every string that is
not OFFLINE gets its DBIRTH, then the Alarms device. Every message after
NBIRTH takes the next seq, 0..255 and round again. A string going OFFLINE
gets a DDEATH, and a DBIRTH when it returns; a change of its cell count
(a new metric set) a new DBIRTH. An NCMD "Node Control/Rebirth" = true
repeats the births (same bdSeq, seq from 0).

With a primary host configured, the node is born only while the host's
STATE (``spBv1.0/STATE/<host_id>``, retained JSON ``{"online": ...,
"timestamp": ...}``, Sparkplug 3.0) says online; when it says offline the
node publishes its NDEATH and ends the session, and data goes to the buffer
until the host is back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from btms_gateway.core.api import Quality

from ..codec import Message, PlantView
from ..exception import Delta
from . import payloads

log = logging.getLogger("btms_gateway.mqtt")

NAMESPACE = "spBv1.0"


def now_ms() -> int:
    return int(time.time() * 1000)


class EdgeNode:
    sink = "spb"

    def __init__(
        self,
        group_id: str,
        edge_node_id: str,
        plant: PlantView,
        next_bdseq: Callable[[], int],
        *,
        qos: int = 1,
        primary_host_id: str | None = None,
        alarms_device: str = "Alarms",
    ) -> None:
        self.group, self.node = group_id, edge_node_id
        self.plant = plant
        self._next_bdseq = next_bdseq
        self.qos = qos
        self.primary_host_id = primary_host_id
        self.alarms_device = alarms_device
        self.bdseq = -1
        self._seq = 0
        self.born = False
        self.host_online: bool | None = None
        self._host_ts = -1
        #: device -> the slots of its birth certificate
        self.devices: dict[str, frozenset[int]] = {}
        #: devices born for a replay while OFFLINE: their DDEATH waits for its end
        self._replay_births: set[str] = set()
        self.rebirths = 0

    # -- topics ---------------------------------------------------------------------
    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return f"{base}/{device}" if device is not None else base

    @property
    def state_topic(self) -> str | None:
        return f"{NAMESPACE}/STATE/{self.primary_host_id}" if self.primary_host_id else None

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def _msg(
        self, kind: str, payload: bytes, device: str | None = None, record: bool = False
    ) -> Message:
        return Message(self.topic(kind, device), payload, self.qos, False, record)

    # -- the session ------------------------------------------------------------------
    def will(self, fresh: bool) -> Message:
        """The NDEATH with this session's bdSeq: one more than the last CONNECT
        sent (an attempt that never reached the broker sent none, and keeps it)."""
        if fresh or self.bdseq < 0:
            self.bdseq = self._next_bdseq()
        self.born = False
        return Message(self.topic("NDEATH"), payloads.node_death(now_ms(), self.bdseq), 1, False)

    def subscriptions(self) -> list[str]:
        topics = [self.topic("NCMD"), f"{self.topic('DCMD')}/+"]
        if self.state_topic:
            topics.append(self.state_topic)
        return topics

    def connected(self) -> list[Message]:
        self.host_online = None
        if self.primary_host_id is None:
            return self.births()
        return []  # born when the host's retained STATE says online

    def disconnected(self) -> None:
        self.born = False
        self.devices.clear()
        self._replay_births.clear()

    def ready(self) -> bool:
        return self.born

    def births(self) -> list[Message]:
        """NBIRTH, a DBIRTH per string not OFFLINE, the Alarms DBIRTH."""
        ts = now_ms()
        self._seq = 0
        self.devices.clear()
        self._replay_births.clear()
        plant = self.plant
        props = {
            "Gateway": plant.gateway_name,
            "Software Version": plant.version,
            "Strings": len(plant.configured) or len(plant.latest),
        }
        pending = plant.buffer.pending(self.sink) if plant.buffer is not None else 0
        dropped = plant.buffer.dropped if plant.buffer is not None else 0
        out = [self._msg("NBIRTH", payloads.node_birth(ts, self.bdseq, props, pending, dropped))]
        self._seq = 1
        for name in plant.filter.names():
            string = plant.latest.get(name)
            if string is not None and string.quality is not Quality.OFFLINE:
                out.append(self._device_birth(name, ts))
        out.append(
            self._msg(
                "DBIRTH",
                payloads.alarms_birth(ts, self._next_seq(), plant.active),
                self.alarms_device,
            )
        )
        self.born = True
        return out

    def _device_birth(self, name: str, ts: int, record: bool = False) -> Message:
        string = self.plant.latest[name]
        values = list(self.plant.filter.current(name))
        self.devices[name] = frozenset(s for s, _ in values)
        r = string.reading
        at_ms = int(r.read_at * 1000) if r is not None else ts
        payload = payloads.device_birth(
            ts,
            self._next_seq(),
            string.index,
            values,
            string.quality,
            at_ms,
            int(string.changed_at * 1000),
        )
        return self._msg("DBIRTH", payload, name, record)

    def received(self, topic: str, payload: bytes) -> tuple[list[Message], bool]:
        if topic == self.state_topic:
            return self._host_state(payload)
        if topic == self.topic("NCMD"):
            try:
                command = payloads.parse(payload)
            except Exception:
                log.warning("Sparkplug: an NCMD that is not a Sparkplug B payload; ignored")
                return [], False
            for m in command.metrics:
                if m.name == payloads.REBIRTH and m.boolean_value and self.born:
                    self.rebirths += 1
                    log.info("Sparkplug: rebirth requested by NCMD")
                    return self.births(), False
            return [], False
        log.info("Sparkplug: ignoring %s (the gateway is read-only)", topic)
        return [], False

    def _host_state(self, payload: bytes) -> tuple[list[Message], bool]:
        """Sparkplug 3.0 JSON STATE; the 2.2 plain ONLINE/OFFLINE is read too."""
        text = payload.decode("utf-8", "replace").strip()
        if text in ("ONLINE", "OFFLINE"):
            online, ts = text == "ONLINE", self._host_ts
        else:
            try:
                data = json.loads(text)
                online, ts = bool(data["online"]), int(data.get("timestamp", 0))
            except (ValueError, KeyError, TypeError):
                log.warning("Sparkplug: unreadable STATE from %s: %r", self.primary_host_id, text)
                return [], False
            if ts < self._host_ts:
                return [], False  # an older state than one already seen
        self._host_ts = ts
        self.host_online = online
        if online and not self.born:
            log.info("Sparkplug: primary host %s online; publishing births", self.primary_host_id)
            return self.births(), False
        if not online and self.born:
            log.warning(
                "Sparkplug: primary host %s offline; ending the session, buffering",
                self.primary_host_id,
            )
            return self.closing(), True
        return [], False

    # -- data -------------------------------------------------------------------------
    def reading(self, delta: Delta, string: Any) -> list[Message]:
        name = delta.string
        if delta.quality is Quality.OFFLINE:
            if name in self.devices and name not in self._replay_births:
                del self.devices[name]
                death = payloads.device_death(now_ms(), self._next_seq())
                return [self._msg("DDEATH", death, name, record=True)]
            return []
        if name not in self.devices or delta.rebirth:
            self._replay_births.discard(name)
            return [self._device_birth(name, now_ms(), record=True)]
        return [self._data(delta, historical=False)]

    def _data(self, delta: Delta, historical: bool) -> Message:
        payload = payloads.device_data(
            now_ms(),
            self._next_seq(),
            delta.index,
            delta.values,
            delta.at_ms,
            delta.changed_ms,
            delta.quality if delta.quality_changed else None,
            historical,
            self.devices.get(delta.string),
        )
        return self._msg("DDATA", payload, delta.string, record=True)

    def event(self, event: Mapping[str, Any], active: Mapping[str, int]) -> list[Message]:
        return [self._alarm(event, active, historical=False)]

    def _alarm(
        self, event: Mapping[str, Any], active: Mapping[str, int], historical: bool
    ) -> Message:
        payload = payloads.alarm_data(now_ms(), self._next_seq(), event, active, historical)
        return self._msg("DDATA", payload, self.alarms_device, record=True)

    def replay(self, kind: str, body: Any) -> list[Message]:
        if kind == "e":
            return [self._alarm(body["event"], body["active"], historical=True)]
        delta = Delta.from_json(body, 0)
        out = []
        name = delta.string
        if name not in self.devices:
            if self.plant.configured and name not in self.plant.configured:
                log.warning("Sparkplug: dropping a buffered record of %r (no such string)", name)
                return []
            if self.plant.filter.known(name) and name in self.plant.latest:
                out.append(self._device_birth(name, now_ms()))
            else:
                # not read since this process started (a restart): the record's
                # own values are all this node knows of the device
                out.append(self._record_birth(delta))
            self._replay_births.add(name)
        out.append(self._data(delta, historical=True))
        return out

    def _record_birth(self, delta: Delta) -> Message:
        self.devices[delta.string] = frozenset(s for s, _ in delta.values)
        payload = payloads.device_birth(
            now_ms(),
            self._next_seq(),
            delta.index,
            sorted(delta.values, key=lambda sv: sv[0]),
            delta.quality,
            delta.at_ms,
            delta.changed_ms,
        )
        return self._msg("DBIRTH", payload, delta.string)

    def replay_done(self) -> list[Message]:
        out = []
        for name in sorted(self._replay_births):
            self._replay_births.discard(name)
            string = self.plant.latest.get(name)
            gone = string is None or string.quality is Quality.OFFLINE
            if gone and name in self.devices:
                del self.devices[name]
                death = payloads.device_death(now_ms(), self._next_seq())
                out.append(self._msg("DDEATH", death, name))
        return out

    def closing(self) -> list[Message]:
        if not self.born:
            return []
        self.born = False
        return [Message(self.topic("NDEATH"), payloads.node_death(now_ms(), self.bdseq), 1)]
