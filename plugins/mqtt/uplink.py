"""One payload mode's way to the broker: sessions, acknowledgements, buffer, replay.

Everything here runs on the plugin's session thread (session.py); paho's
callbacks arrive as tuples through its inbox. A record (a reading's delta,
an alarm event) is either published live or written to the disk buffer:

- live while the mode is ready (connected; for Sparkplug, born). A live
  message is kept in memory until the broker acknowledges it; when the
  session ends first, what is unacknowledged goes to the buffer, so a broker
  that dies mid-flight loses nothing (with QoS 1; with QoS 0, paho's "sent"
  is all there is to know).
- buffered otherwise, and replayed in record order as historical once the
  mode is ready again, in steps of ``replay_batch`` records that take at
  most ``replay_share`` of the thread's time: live data is published between
  steps and never waits behind more than one step and the replay messages
  on the wire (at most half of ``max_inflight``).

Alarm events are written to the buffer always, before they are published,
and deleted when acknowledged: an event survives a kill -9 at any moment
after the plugin received it. While older events wait in the buffer a new
one waits behind them, so events reach the broker in order.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .buffer import READING, DiskBuffer
from .codec import Codec, Message
from .exception import Delta
from .link import CONNECT_FAILED, Link, Post
from .settings import MqttSettings

log = logging.getLogger("btms_gateway.mqtt")


@dataclass(slots=True)
class Tracked:
    """A record's message awaiting its acknowledgement."""

    rid: int
    delta: Delta | None = None  # a live reading (not on disk yet)
    row: int | None = None  # a buffer row (an event, or a replayed record)
    replay: bool = False


@dataclass
class UplinkStats:
    sessions: int = 0
    messages: int = 0
    bytes: int = 0
    acked: int = 0
    live_records: int = 0
    buffered_records: int = 0
    replayed_records: int = 0
    requeued_records: int = 0
    connected_since: float | None = None
    last_error: str = ""
    replay_started: float | None = None
    replay_seconds: list[float] = field(default_factory=list)


class Uplink:
    def __init__(
        self,
        codec: Codec,
        settings: MqttSettings,
        client_id: str,
        buffer: DiskBuffer,
        post: Post,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.codec = codec
        self.sink = codec.sink
        self.settings = settings
        self.client_id = client_id
        self.buffer = buffer
        self._post = post
        self._tls = tls
        self.link: Link | None = None
        self.generation = 0
        self.connected = False
        self.next_connect = 0.0
        self._failures = 0
        self._connect_sent = True  # the last attempt reached the broker (or there was none)
        self.unacked: dict[int, Tracked] = {}
        self._inflight_rows: set[int] = set()
        self._acked_rows: list[int] = []
        self.backlog = buffer.pending(self.sink) > 0
        self._cursor = 0
        self._replay_at = 0.0
        self._replay_unacked = 0
        self.stats = UplinkStats()

    def ready(self) -> bool:
        return self.connected and self.codec.ready()

    def awaits_broker(self) -> bool:
        """Whether the broker's next word must wake the session thread: before
        data may flow (the CONNACK; a Sparkplug primary host's STATE) and
        while a replay waits for acknowledgements to go on. Otherwise it waits
        for the thread's next pass (at most ``BATCH_S`` while readings come,
        1 s when idle): acknowledgements are bookkeeping, and a command or a
        host's going offline is handled that much later."""
        return not self.ready() or self.backlog

    # -- the connection ---------------------------------------------------------------
    def tick(self, now: float) -> float:
        """Connect when due, replay a step when allowed; the next time to look again."""
        wake = now + 1.0
        if self.link is None:
            if now >= self.next_connect:
                self._open()
            else:
                wake = min(wake, self.next_connect)
        self.flush_acks()
        if self.backlog and self.ready():
            window = max(1, self.settings.max_inflight // 2)
            if now >= self._replay_at and self._replay_unacked < window:
                self._replay_step(now, window - self._replay_unacked)
            wake = min(wake, max(now + 0.005, self._replay_at))
        return wake

    def _open(self) -> None:
        self.generation += 1
        self.stats.sessions += 1
        try:
            will = self.codec.will(self._connect_sent)
            self._connect_sent = False
            self.link = Link(
                self.settings, self.client_id, will, self.generation, self._tagged, self._tls
            )
            self.link.start()
        except Exception as exc:
            self._ended(f"could not start a session: {exc}")

    def _tagged(self, item: tuple[Any, ...]) -> None:
        """A paho callback (or the connect thread): to the session thread's inbox,
        naming this uplink."""
        self._post((self.sink, *item))

    def handle(self, item: tuple[Any, ...]) -> None:
        """A paho callback, posted by the Link of ``item[1]``'s generation."""
        kind, generation = item[0], item[1]
        if generation != self.generation or self.link is None:
            return  # a finished session's late word
        if kind != "ended" or not item[2].startswith(CONNECT_FAILED):
            self._connect_sent = True  # paho sends CONNECT once the socket is up
        if kind == "connected":
            failed, reason = item[2], item[3]
            if failed:
                self._ended(f"broker refused the connection: {reason}")
            else:
                self._connected()
        elif kind == "ended":
            self._ended(item[2])
        elif kind == "message":
            messages, end = self.codec.received(item[2], item[3])
            self._send(messages)
            if end:
                self._ended("primary host offline")

    def _connected(self) -> None:
        assert self.link is not None
        self.connected = True
        self._failures = 0
        self.stats.connected_since = time.time()
        s = self.settings
        log.info("MQTT %s: connected to %s:%d as %s", self.sink, s.host, s.port, self.client_id)
        self.link.subscribe(self.codec.subscriptions())
        self._send(self.codec.connected())

    def _ended(self, why: str) -> None:
        """The session is over: take back what was not acknowledged, schedule
        the next attempt (exponential backoff with jitter, so a fleet does not
        reconnect in step after a broker restart)."""
        was_connected = self.connected
        self.connected = False
        self.codec.disconnected()
        self.flush_acks()
        self._requeue()
        self._inflight_rows.clear()
        self._cursor = 0
        self._replay_unacked = 0
        if self.link is not None:
            self.link.stop()
            self.link = None
        self._failures += 1
        delay = min(
            self.settings.reconnect_max_s,
            self.settings.reconnect_min_s * 2 ** min(self._failures - 1, 30),
        )
        delay *= random.uniform(0.8, 1.2)
        self.next_connect = time.monotonic() + delay
        self.stats.last_error = why
        self.stats.connected_since = None
        level = logging.WARNING if was_connected or self._failures == 1 else logging.DEBUG
        log.log(
            level,
            "MQTT %s: %s; buffering, next attempt in %.1f s (%d pending)",
            self.sink,
            why,
            delay,
            self.buffer.pending(self.sink),
        )

    def _requeue(self) -> None:
        rows = sorted(
            (t.rid, self.sink, READING, json.dumps(t.delta.to_json()))
            for t in self.unacked.values()
            if t.delta is not None
        )
        self.unacked.clear()
        if rows:
            self.buffer.put(rows)
            self.stats.requeued_records += len(rows)
        if rows or self.buffer.pending(self.sink):
            self.backlog = True

    def close(self) -> None:
        """A clean stop, first half: the goodbye (the session thread then gives
        acknowledgements a moment and calls ``finish``)."""
        if self.link is not None and self.connected:
            self._send(self.codec.closing())

    def finish(self) -> None:
        """A clean stop, second half: what is still unacknowledged goes to the buffer."""
        self.flush_acks()
        self._requeue()
        if self.link is not None:
            self.link.stop()
            self.link = None
        self.connected = False

    # -- publishing -------------------------------------------------------------------
    def _send(
        self,
        messages: list[Message],
        rid: int = 0,
        delta: Delta | None = None,
        row: int | None = None,
        replay: bool = False,
    ) -> bool:
        assert self.link is not None or not messages
        tracked = False
        for msg in messages:
            assert self.link is not None
            mid = self.link.publish(msg)
            self.stats.messages += 1
            self.stats.bytes += len(msg.payload) + len(msg.topic)
            if msg.record and not tracked and mid is not None:
                tracked = True
                self.unacked[mid] = Tracked(rid, delta, row, replay)
                if replay:
                    self._replay_unacked += 1
        return tracked

    def reading(self, delta: Delta, string: Any) -> None:
        """A live record (only called while ready)."""
        self.stats.live_records += 1
        self._send(self.codec.reading(delta, string), delta.rid, delta)

    def event(self, record: Mapping[str, Any], rid: int, row: int) -> None:
        """An event already on disk: publish it now unless older ones wait."""
        if not self.ready() or self.backlog:
            self.backlog = True
            return
        if self._send(self.codec.event(record["event"], record["active"]), rid, row=row):
            self._inflight_rows.add(row)
        else:
            self._acked_rows.append(row)  # nothing to wait for

    def take_acks(self) -> None:
        """What the broker acknowledged, as paho read it in this pass (called
        right after the link's ``serve``, so before an "ended" it posted)."""
        if self.link is not None:
            acked = self.link.acked
            while acked:
                self._acked(acked.popleft())

    def _acked(self, mid: int) -> None:
        t = self.unacked.pop(mid, None)
        self.stats.acked += 1
        if t is None:
            return
        if t.row is not None:
            self._acked_rows.append(t.row)
            self._inflight_rows.discard(t.row)
        if t.replay:
            self._replay_unacked -= 1

    def flush_acks(self) -> None:
        if self._acked_rows:
            rows, self._acked_rows = self._acked_rows, []
            self.buffer.delete(rows)

    # -- replay -----------------------------------------------------------------------
    def _replay_step(self, now: float, room: int) -> None:
        started = time.perf_counter()
        if self.stats.replay_started is None:
            self.stats.replay_started = time.time()
            log.info(
                "MQTT %s: replaying %d buffered records", self.sink, self.buffer.pending(self.sink)
            )
        batch = min(room, self.settings.buffer.replay_batch)
        rows = self.buffer.head(self.sink, batch, self._cursor)
        if not rows:
            if self._replay_unacked == 0:
                self.backlog = False
                self._send(self.codec.replay_done())
                took = time.time() - self.stats.replay_started
                self.stats.replay_seconds.append(took)
                self.stats.replay_started = None
                log.info("MQTT %s: replay done in %.1f s", self.sink, took)
            else:
                self._replay_at = now + 0.01
            return
        for row in rows:
            self._cursor = row.rid
            if row.id in self._inflight_rows:
                continue
            messages = self.codec.replay(row.kind, json.loads(row.body))
            if self._send(messages, row.rid, row=row.id, replay=True):
                self._inflight_rows.add(row.id)
            else:
                self._acked_rows.append(row.id)  # nothing left to send (a string removed)
            self.stats.replayed_records += 1
        took = time.perf_counter() - started
        share = self.settings.buffer.replay_share
        self._replay_at = now + took * (1 - share) / share
