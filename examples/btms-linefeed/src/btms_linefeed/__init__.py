"""btms-linefeed: the plant as a line-oriented TCP feed, a northbound protocol in one file.

A client connects to ``[plugins.linefeed]`` host:port and reads a line per
string reading and per alarm event (README.md)::

    S2 2026-12-04T15:56:30Z STALE status=error quality=stale data_age=1 active_alarms=0 ...
    ALARM 2026-12-04T15:56:31Z RAISED ALARM cell_voltage_high:S1:7 UPS1/S1/7 value=2.448 ...

Reading lines carry the gateway's quantity table, so a quantity a plugin
registers appears too; MEASURED values are withheld while a string is not
GOOD (the stale rule). Every hook is ``async def``, on the gateway's loop, and
never waits: a client whose send buffer is full misses lines (and is told how
many) instead of holding anyone up.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable
from typing import Annotated

from btms_gateway.core import api
from pydantic import Field

NAME = "linefeed"


class LinefeedSettings(api.PluginSection):
    """``[plugins.linefeed]``: where to listen, and how much a client may cost."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 7070
    #: clients at once; one more is told "# busy" and disconnected
    max_clients: Annotated[int, Field(ge=1, le=1000)] = 8
    #: unsent bytes kept per client (and the socket's send buffer): past them, lines are dropped
    max_buffer_bytes: Annotated[int, Field(ge=1024, le=16 * 2**20)] = 64 * 1024


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def text(q: api.Quantity, value: float | int | bool) -> str:
    """A value as the feed writes it: enumerations by name, numbers at the device's resolution."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if q.kind == "enum" and q.values:
        return q.values.get(int(value), str(int(value)))
    if q.kind == "number" and q.resolution:
        return f"{value:.{max(0, round(-math.log10(q.resolution)))}f}"
    return str(int(value)) if float(value).is_integer() else str(value)


def computed(q: api.Quantity, s: api.StringSnapshot, active: api.ActiveAlarms) -> float | None:
    """The values the table leaves to the protocol (``read is None``): the data
    age now, and the alarms active on the string (and on the gateway itself)."""
    mine = [a for a in active if a.path.string == s.name or a.path.is_gateway]
    if q.key == "data_age":
        return s.age_s()
    if q.key == "active_alarms":
        return len(mine)
    if q.key == "alarm_severity":
        return max((int(a.severity) for a in mine), default=0)
    return None  # a computed quantity this feed does not know


def reading_line(
    s: api.StringSnapshot, table: tuple[api.Quantity, ...], active: api.ActiveAlarms
) -> str:
    """``NAME TIME QUALITY key=value ...``: TIME is when the values were read,
    or, while they are withheld, when the string stopped being GOOD."""
    good = s.quality is api.Quality.GOOD and s.reading is not None
    at = s.reading.read_at if good and s.reading is not None else s.changed_at
    fields = [s.name, utc(at), s.quality.name]
    for q in table:
        if q.measured and not good:
            continue  # the stale rule: withheld, never served as fresh
        value = computed(q, s, active) if q.read is None else q.read(s)
        if value is not None:
            fields.append(f"{q.key}={text(q, value)}")
    return " ".join(fields)


def alarm_line(e: api.AlarmEvent) -> str:
    """``ALARM TIME KIND SEVERITY ID PATH [value= limit= unit= by=] seq=N msg=...``"""
    fields = ["ALARM", utc(e.at), e.kind.name, e.severity.name, e.alarm_id, str(e.path)]
    optional = (("value", e.value), ("limit", e.limit), ("unit", e.unit), ("by", e.by))
    fields += [f"{key}={value}" for key, value in optional if value not in (None, "")]
    fields.append(f"seq={e.seq}")
    return " ".join(fields) + " msg=" + " ".join(e.message.split())


class Client:
    """One connection: lines go into its send buffer, never past ``limit`` bytes."""

    def __init__(self, writer: asyncio.StreamWriter, limit: int) -> None:
        self.writer = writer
        self.limit = limit
        self.dropped = 0

    def send(self, data: bytes) -> None:
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(data) > self.limit:
            self.dropped += 1
            return
        if self.dropped:
            transport.write(f"# dropped {self.dropped} lines: reading too slowly\n".encode())
            self.dropped = 0
        transport.write(data)


class Feed:
    """The listener of one gateway and its clients."""

    def __init__(self, settings: LinefeedSettings, gateway: api.Gateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self.table = gateway.quantities(api.Level.STRING)
        self.active: api.ActiveAlarms = ()
        self.clients: set[Client] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, self.settings.host, self.settings.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for client in list(self.clients):
            client.writer.transport.abort()  # a slow client's backlog is not waited for
        if self.server is not None:
            await self.server.wait_closed()

    def broadcast(self, line: str) -> None:
        data = (line + "\n").encode()
        for client in list(self.clients):
            client.send(data)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.clients) >= self.settings.max_clients:
            writer.write(f"# busy: {len(self.clients)} clients connected\n".encode())
            writer.close()
            return
        sock = writer.get_extra_info("socket")  # the kernel's share of the backlog: bounded too
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.max_buffer_bytes)
        client = Client(writer, self.settings.max_buffer_bytes)
        self.clients.add(client)
        client.send(f"# btms-gateway linefeed {self.gateway.name}\n".encode())
        for s in self.gateway.store.snapshot.strings.values():  # where the plant is now
            client.send((reading_line(s, self.table, self.active) + "\n").encode())
        try:
            while await reader.read(4096):
                pass  # what a client sends is ignored; end of input means it left
        except ConnectionError:
            pass
        finally:
            self.clients.discard(client)
            writer.transport.abort()


feeds: api.PerGateway[Feed] = api.PerGateway()


@api.hookimpl
def register_config_sections(register: Callable[[str, type[api.PluginSection]], None]) -> None:
    register(NAME, LinefeedSettings)


@api.hookimpl
async def startup(gateway: api.Gateway) -> None:
    settings = gateway.plugin_config(NAME)
    assert isinstance(settings, LinefeedSettings)
    feed = Feed(settings, gateway)
    await feed.start()
    feeds.add(gateway, feed)


@api.hookimpl
async def shutdown(gateway: api.Gateway) -> None:
    feed = feeds.pop(gateway)
    if feed is not None:
        await feed.stop()


@api.hookimpl
async def string_reading(string: api.StringSnapshot, gateway: api.Gateway) -> None:
    feed = feeds.get(gateway)
    if feed is not None:
        feed.broadcast(reading_line(string, feed.table, feed.active))


@api.hookimpl
async def alarm_event(
    event: api.AlarmEvent, active: api.ActiveAlarms, gateway: api.Gateway
) -> None:
    feed = feeds.get(gateway)
    if feed is not None:
        feed.active = active
        feed.broadcast(alarm_line(event))
