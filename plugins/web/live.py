"""Live updates to browsers over server-sent events (one-way, plain HTTP,
reconnects by itself; the dashboard never needs to send on the stream).

Readings arrive on the event loop (the plugin's hooks are ``async def``); the
hub schedules one flush per burst of them (from another thread, through
``call_soon_threadsafe``) and each client then sends the newest state, no
faster than ``live_interval_s``. So 32 strings
polled five times a second cost a browser two small updates a second, and a
slow browser only ever delays itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

KEEPALIVE_S = 15.0


@dataclass(eq=False)
class Client:
    string: str | None
    address: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    plant: bool = True
    selected: bool = True
    alarms: bool = True
    last_seq: int = 0  # the newest event in the log when the client joined (said in hello)
    position: int = 0  # how far the client has read the plugin's event ring


class LiveHub:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_changed: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.loop = loop
        #: called on the loop with the names of the strings that changed, once per flush
        self.on_changed = on_changed
        self.clients: set[Client] = set()
        self.closing = False
        self._loop_thread = threading.get_ident()  # made on the loop, by the plugin's startup
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._alarm = False
        self._scheduled = False
        #: counts flushes: what clients compose for one generation they may share
        self.generation = 0

    # --- from the plugin's hooks (the loop) or any other thread --------------------
    def string_changed(self, name: str) -> None:
        with self._lock:
            self._changed.add(name)
            self._schedule()

    def alarm_changed(self) -> None:
        with self._lock:
            self._alarm = True
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self.loop.is_closed():
            self._scheduled = True
            if threading.get_ident() == self._loop_thread:
                self.loop.call_soon(self._flush)  # no self-pipe write and wake-up
            else:
                self.loop.call_soon_threadsafe(self._flush)

    # --- on the event loop -----------------------------------------------------------
    def _flush(self) -> None:
        with self._lock:
            changed, self._changed = self._changed, set()
            alarm, self._alarm = self._alarm, False
            self._scheduled = False
        self.generation += 1
        if changed and self.on_changed is not None:
            self.on_changed(changed)
        for c in self.clients:
            if changed:
                c.plant = True
                c.selected = c.selected or c.string in changed
            c.alarms = c.alarms or alarm
            c.wake.set()

    def join(self, string: str | None, address: str = "") -> Client:
        client = Client(string, address)
        client.wake.set()  # everything is due at first
        self.clients.add(client)
        return client

    def clients_from(self, address: str) -> int:
        return sum(1 for c in self.clients if c.address == address)

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    def close(self) -> None:
        """Wake every stream so it ends before the server shuts down."""
        self.closing = True
        for c in self.clients:
            c.wake.set()


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; JSON has no raw newlines, so one data line suffices."""
    return sse_text(event, json.dumps(data, separators=(",", ":")))


def sse_text(event: str, text: str) -> bytes:
    """``sse()`` of data already encoded as one line of compact JSON."""
    return f"event: {event}\ndata: {text}\n\n".encode()


async def serve_client(
    hub: LiveHub,
    client: Client,
    write: Callable[[bytes], Awaitable[None]],
    compose: Callable[[Client], Awaitable[list[bytes]]],
    interval_s: float,
) -> None:
    """Send what changed for ``client`` until it disconnects or the hub closes."""
    while not hub.closing:
        try:
            await asyncio.wait_for(client.wake.wait(), KEEPALIVE_S)
        except TimeoutError:
            await write(b": keepalive\n\n")
            continue
        client.wake.clear()
        if hub.closing:
            break
        for chunk in await compose(client):
            await write(chunk)
        await asyncio.sleep(interval_s)
