"""The MQTT plugin's own thread: it owns the exception filter, the disk
buffer, each mode's uplink and its paho client's socket (link.py), so none
of them needs a lock.

The plugin's hooks (on the gateway's loop) only drop a reading or an event
into the inbox: a dict store or a deque append under a lock, microseconds.
Readings wait there per string (coalescing only when the thread is behind,
as in the gateway's own plugin inboxes); events queue in order. paho's
callbacks post into the same inbox. Nothing the gateway's loop runs ever
waits on the network or the disk for MQTT.

The thread waits on the inbox and the brokers' sockets at once and wakes per
batch of readings, not per reading, and not for an acknowledgement: at full
scale a thread wake-up per reading and per message cost more than encoding
them. See ``Inbox``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from btms_gateway.core.api import ActiveAlarm, ActiveAlarms, StringSnapshot

from .buffer import EVENT, READING, DiskBuffer
from .codec import Codec, PlantView
from .exception import ExceptionFilter
from .jsonmode import JsonTree
from .link import tls_context
from .settings import MqttSettings
from .sparkplug.node import EdgeNode
from .uplink import Uplink

log = logging.getLogger("btms_gateway.mqtt")

#: seconds a clean stop waits for the last acknowledgements
CLOSE_GRACE_S = 0.5
#: while readings keep coming, the session thread takes them this often
BATCH_S = 0.5


class Inbox:
    """What the session thread has to do, from the gateway's loop, paho's
    callbacks and the connect threads; ``fileno`` is readable while something
    asks for the thread at once (it waits on it together with its sockets).

    The first reading after a quiet spell wakes the thread at once; while
    readings keep coming, it takes them every ``batch_s`` instead (their
    strings' messages then also go out together), or as soon as a string has
    a second reading waiting: batching never drops a reading. Events and
    paho's session news (``post``) wake it at once. Acknowledgements do not
    come this way (link.py): they wait in the socket for the next pass.
    """

    def __init__(
        self, latest: dict[str, StringSnapshot] | None = None, batch_s: float = BATCH_S
    ) -> None:
        self.batch_s = batch_s
        #: the newest snapshot of each string (``PlantView.latest``), set here, on
        #: the gateway's loop: the snapshot it replaces is freed right after the
        #: gateway made the new one, as without the plugin. Held until the
        #: thread's next pass, the plant's cells (an object each) outlived
        #: collections and the garbage collector ran six times as often.
        self.latest: dict[str, StringSnapshot] = {} if latest is None else latest
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._readings: dict[str, StringSnapshot] = {}
        self._older: dict[str, StringSnapshot] = {}  # a string's reading before its newest
        self._events: deque[tuple[dict[str, Any], ActiveAlarms]] = deque()
        self._control: deque[tuple[Any, ...]] = deque()
        self._due = False  # the wake socket holds a byte: take the inbox now
        self._batching = False  # readings came in the last pass: more are expected
        self.coalesced = 0

    def reading(self, string: StringSnapshot) -> None:
        with self._lock:
            self.latest[string.name] = string
            earlier = self._readings.get(string.name)
            if earlier is not None:
                # a string polled faster than the batch: the batch ends now and
                # both readings are taken; a third before that finds the thread
                # behind, and coalesces with the one before it (the newest wins)
                if string.name in self._older:
                    self.coalesced += 1
                else:
                    self._older[string.name] = earlier
                self._notify()
            self._readings[string.name] = string
            if not self._batching:
                self._notify()

    def event(self, event: dict[str, Any], active: ActiveAlarms) -> None:
        with self._lock:
            self._events.append((event, active))
            self._notify()

    def post(self, item: tuple[Any, ...]) -> None:
        with self._lock:
            self._control.append(item)
            self._notify()

    def wake(self) -> None:
        with self._lock:
            self._notify()

    def _notify(self) -> None:
        if not self._due:
            self._due = True
            with contextlib.suppress(OSError):  # closed: the thread has ended
                self._wake_w.send(b"\0")

    @property
    def due(self) -> bool:
        """Something is queued that wakes the thread (it takes the rest along)."""
        return self._due

    def fileno(self) -> int:
        return self._wake_r.fileno()

    def wait_s(self, until_tick: float) -> float:
        """How long the thread may wait: 0 when due, ``batch_s`` at most while
        readings keep coming, else until its uplinks' next tick."""
        with self._lock:
            if self._due:
                return 0.0
            return min(until_tick, self.batch_s) if self._batching else until_tick

    def take(
        self,
    ) -> tuple[
        list[tuple[Any, ...]], list[tuple[dict[str, Any], ActiveAlarms]], list[StringSnapshot]
    ]:
        """Everything queued."""
        with self._lock:
            if self._due:
                self._due = False
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(64)
            control, self._control = list(self._control), deque()
            events, self._events = list(self._events), deque()
            readings = [*self._older.values(), *self._readings.values()]
            self._older, self._readings = {}, {}
            self._batching = bool(readings)
        return control, events, readings

    def close(self) -> None:
        self._wake_r.close()
        self._wake_w.close()


def active_counts(active: Sequence[ActiveAlarm]) -> dict[str, int]:
    """Active alarms by severity and acknowledgement: the ``active`` of each
    event record and of the Alarms births. Counted from the tuple the gateway
    delivers with each event (the alarms active after its commit), never kept
    from the events: a count kept that way drifts for good after one event the
    plugin's queue dropped."""
    out = {"total": len(active), "critical": 0, "alarm": 0, "warning": 0, "unacknowledged": 0}
    for a in active:
        severity = a.severity.name.lower()
        out[severity] = out.get(severity, 0) + 1
        out["unacknowledged"] += not a.acknowledged
    return out


class MqttSession:
    def __init__(
        self,
        settings: MqttSettings,
        *,
        gateway_name: str,
        data_dir: Path,
        version: str = "",
        active: Sequence[ActiveAlarm] = (),
    ) -> None:
        self.settings = settings
        self.buffer = DiskBuffer(
            Path(data_dir) / "mqtt" / "buffer.sqlite", int(settings.buffer.max_mb * 1024 * 1024)
        )
        self.filter = ExceptionFilter(settings.deadbands(), settings.report_by_exception)
        self.plant = PlantView(
            self.filter, gateway_name=gateway_name, version=version, buffer=self.buffer
        )
        self.plant.active = active_counts(active)
        self._counted: Sequence[ActiveAlarm] = active  # what plant.active counts
        self.inbox = Inbox(self.plant.latest)
        node = settings.resolved_node_id(gateway_name)
        client_id = settings.resolved_client_id(gateway_name)
        tls = tls_context(settings)
        self.uplinks: list[Uplink] = []
        for mode in settings.mode:
            codec: Codec
            if mode == "sparkplug":
                sp = settings.sparkplug
                codec = EdgeNode(
                    sp.group_id,
                    sp.edge_node_id or node,
                    self.plant,
                    self.buffer.next_bdseq,
                    qos=settings.qos,
                    primary_host_id=sp.primary_host_id,
                    alarms_device=sp.alarms_device,
                )
            else:
                js = settings.json_
                codec = JsonTree(
                    js.topic_prefix,
                    node,
                    self.plant,
                    qos=settings.qos if settings.qos else 1,
                    state=js.state,
                    homeassistant=js.homeassistant,
                    homeassistant_prefix=js.homeassistant_prefix,
                )
            suffix = "" if len(settings.mode) == 1 else f"-{codec.sink}"
            self.uplinks.append(
                Uplink(codec, settings, client_id + suffix, self.buffer, self.inbox.post, tls)
            )
        self._by_sink = {u.sink: u for u in self.uplinks}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-session", daemon=True)
        self.failed: BaseException | None = None

    # -- from the gateway's loop ------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def offer_reading(self, string: StringSnapshot) -> None:
        self.inbox.reading(string)

    def offer_event(self, event: dict[str, Any], active: ActiveAlarms) -> None:
        """An event (``event_dict``) with the alarms active after its commit."""
        self.inbox.event(event, active)

    def stop(self, timeout: float) -> bool:
        """Say goodbye, keep what is unacknowledged, close the buffer (blocking:
        the plugin calls it in a worker thread)."""
        self._stop.set()
        self.inbox.wake()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            wake = time.monotonic()
            while not self._stop.is_set():
                self._pass(max(0.0, wake - time.monotonic()))
                now = time.monotonic()
                wake = min(u.tick(now) for u in self.uplinks)
            self._close()
        except BaseException as exc:  # the plugin stops; the gateway goes on
            self.failed = exc
            log.exception("MQTT session thread failed; MQTT publishing stopped")
            raise
        finally:
            self.buffer.close()
            self.inbox.close()

    def _pass(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the inbox (and a broker's socket, while
        its next word matters at once); then paho's reads, writes and
        keepalives, then whatever the inbox holds."""
        links = [u.link for u in self.uplinks if u.link is not None and u.link.socket()]
        watched = [u.link.socket() for u in self.uplinks if u.link and u.awaits_broker()]
        writing = [link.socket() for link in links if link.wants_write()]
        wait = self.inbox.wait_s(timeout)
        select.select([self.inbox, *filter(None, watched)], writing, [], wait)
        for link in links:
            link.serve()
        for u in self.uplinks:
            u.take_acks()
        self._handle(*self.inbox.take())

    def _handle(
        self,
        control: list[tuple[Any, ...]],
        events: list[tuple[dict[str, Any], ActiveAlarms]],
        readings: list[StringSnapshot],
    ) -> None:
        for item in control:
            self._by_sink[item[0]].handle(item[1:])
        if events:
            self._events(events)
        if readings:
            self._readings(readings)

    def _readings(self, readings: list[StringSnapshot]) -> None:
        """Report what changed: live where the mode is ready, else to the
        buffer (the batch's rows in one transaction)."""
        rows: list[tuple[int, str, str, str]] = []
        for string in readings:
            delta = self.filter.update(string)
            if delta is None:
                continue
            delta.rid = self.buffer.next_rid()
            body = ""
            for u in self.uplinks:
                if u.ready():
                    u.reading(delta, string)
                    continue
                body = body or json.dumps(delta.to_json())
                rows.append((delta.rid, u.sink, READING, body))
                u.backlog = True
                u.stats.buffered_records += 1
        if rows:
            self.buffer.put(rows)

    def _events(self, events: list[tuple[dict[str, Any], ActiveAlarms]]) -> None:
        """Every event goes to the buffer first (the batch in one transaction),
        then to each mode that may publish it now. The events of one commit share
        one active tuple: it is counted once."""
        records: list[tuple[dict[str, Any], int]] = []
        rows: list[tuple[int, str, str, str]] = []
        for event, active in events:
            if active is not self._counted:
                self.plant.active = active_counts(active)
                self._counted = active
            record = {"event": event, "active": self.plant.active}
            rid = self.buffer.next_rid()
            body = json.dumps(record)
            records.append((record, rid))
            rows.extend((rid, u.sink, EVENT, body) for u in self.uplinks)
        ids = self.buffer.put(rows)
        n = len(self.uplinks)
        for k, (record, rid) in enumerate(records):
            for u, row in zip(self.uplinks, ids[k * n : (k + 1) * n], strict=True):
                if not u.ready() or u.backlog:
                    u.stats.buffered_records += 1
                u.event(record, rid, row)

    def _close(self) -> None:
        for u in self.uplinks:
            u.close()
        deadline = time.monotonic() + CLOSE_GRACE_S
        while time.monotonic() < deadline and any(u.unacked and u.connected for u in self.uplinks):
            self._pass(0.02)
        for u in self.uplinks:
            u.finish()

    # -- for tests, benches and the status command ----------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "pending": self.buffer.pending(),
            "dropped_readings": self.buffer.dropped,
            "coalesced": self.inbox.coalesced,
            "uplinks": {
                u.sink: {
                    "connected": u.connected,
                    "ready": u.ready(),
                    "backlog": u.backlog,
                    **vars(u.stats),
                }
                for u in self.uplinks
            },
        }
