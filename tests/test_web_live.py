"""The live stream (server-sent events) read by a plain HTTP client: first
state, pushes on change, alarm events, and a clean stop while connected."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.model import Quality
from btms_gateway.kit.events import active_alarm
from web_support import _events, _until, reading, web_gateway


async def test_stream_pushes_state_changes_and_alarms(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, web={"live_interval_s": 0.05}) as (h, svc):
        h.publish("S1", reading(6, voltage_v=13.5), Quality.GOOD)
        async with (
            aiohttp.ClientSession() as s,
            s.get(svc.url + "/api/stream", params={"string": "S1"}) as r,
        ):
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/event-stream"
            stream = _events(r)
            hello = await _until(stream, lambda n, d: n == "hello")
            assert hello == {"string": "S1", "last_seq": 0}
            first = await _until(stream, lambda n, d: n == "string")
            assert first["reading"]["voltage_v"] == 13.5 and len(first["reading"]["cells"]) == 6
            plant = await _until(stream, lambda n, d: n == "plant")
            assert [s["name"] for s in plant["strings"]] == ["S1", "S2", "S3", "S4"]
            assert plant["buses"][0]["name"] == "bus1"

            h.publish("S1", reading(6, voltage_v=14.25, cell_2={"voltage_v": 2.5}), Quality.GOOD)
            pushed = await _until(
                stream, lambda n, d: n == "string" and d["reading"]["voltage_v"] == 14.25
            )
            assert pushed["reading"]["cells"][1]["voltage_v"] == 2.5
            h.publish("S1", reading(6, voltage_v=14.25), Quality.STALE)
            stale = await _until(
                stream, lambda n, d: n == "plant" and d["strings"][0]["quality"] != "good"
            )
            assert stale["strings"][0]["quality"] == "stale"

            event = AlarmEvent(
                seq=41, kind=EventKind.RAISED, alarm_id="string_comm_lost:S2",
                rule="string_comm_lost", severity=Severity.ALARM, path=ObjectPath("UPS2", "S2"),
                value=1.0, limit=None, unit="", message="string S2: communication lost",
                at=time.time(),
            )  # fmt: skip
            h.gateway.emit(event)
            alarms = await _until(stream, lambda n, d: n == "alarms" and d["events"])
            assert [e["seq"] for e in alarms["events"]] == [41]
            assert alarms["events"][0]["message"] == "string S2: communication lost"
            # the gateway stops while the browser is still connected: the stream ends
            h.gateway.request_stop()
            async with asyncio.timeout(10):
                async for _ in stream:
                    pass


async def test_stream_for_unknown_string_is_404(tmp_path: Path) -> None:
    async with (
        web_gateway(tmp_path) as (_, svc),
        aiohttp.ClientSession() as s,
        s.get(svc.url + "/api/stream", params={"string": "NOPE"}) as r,
    ):
        assert r.status == 404


async def test_live_clients_are_bounded(tmp_path: Path) -> None:
    async with (
        web_gateway(tmp_path, web={"max_live_clients": 1}) as (_, svc),
        aiohttp.ClientSession() as s,
        s.get(svc.url + "/api/stream") as first,
    ):
        await _until(_events(first), lambda n, d: n == "hello")
        async with s.get(svc.url + "/api/stream") as second:
            assert second.status == 503
        assert svc.stats.refused["live_clients"] == 1


@contextlib.asynccontextmanager
async def _plant_stream(tmp_path: Path) -> AsyncIterator[tuple[Any, AsyncIterator[Any]]]:
    """A gateway with the web plugin and a browser's stream of the whole plant,
    past its hello."""
    async with (
        web_gateway(tmp_path, web={"live_interval_s": 0.05}) as (h, svc),
        aiohttp.ClientSession() as s,
        s.get(svc.url + "/api/stream") as r,
    ):
        stream = _events(r)
        await _until(stream, lambda n, d: n == "hello")
        yield h, stream


async def test_stream_delivers_events_the_event_log_could_not_write(tmp_path: Path) -> None:
    """Events delivered while the log fails all have seq 0: the stream follows
    what it received, not seq, so every one of them reaches the browser."""
    async with _plant_stream(tmp_path) as (h, stream):
        h.gateway.emit(_alarm(7, "string_comm_lost:S1", persisted=True))
        first = await _until(stream, lambda n, d: n == "alarms" and d["events"])
        assert [e["seq"] for e in first["events"]] == [7]
        seen: list[dict[str, Any]] = []
        for name in ("S2", "S3", "S4"):
            h.gateway.emit(_alarm(0, f"string_comm_lost:{name}", persisted=False))

        def got_all(n: str, d: Any) -> bool:
            if n == "alarms":
                seen.extend(d["events"])
            return len(seen) >= 3

        await _until(stream, got_all)
        assert [(e["alarm_id"], e["seq"], e["persisted"]) for e in seen] == [
            ("string_comm_lost:S2", 0, False),
            ("string_comm_lost:S3", 0, False),
            ("string_comm_lost:S4", 0, False),
        ]


async def test_stream_sends_the_active_alarms_delivered_with_the_events(tmp_path: Path) -> None:
    """An ``alarms`` message pairs the new events with the alarms active after
    the newest of them, as the gateway delivered them with it, not the alarm
    service read back later (which here holds none)."""
    async with _plant_stream(tmp_path) as (h, stream):
        one, two = _alarm(7, "string_comm_lost:S1", True), _alarm(8, "string_comm_lost:S2", True)
        assert not h.gateway.alarms.active()
        h.gateway.emit(two, active=(active_alarm(one), active_alarm(two)))
        got = await _until(stream, lambda n, d: n == "alarms" and d["events"])
        assert [e["seq"] for e in got["events"]] == [8]
        assert [a["alarm_id"] for a in got["active"]] == [one.alarm_id, two.alarm_id]


def _alarm(seq: int, alarm_id: str, persisted: bool) -> AlarmEvent:
    string = alarm_id.split(":")[1]
    return AlarmEvent(
        seq=seq, kind=EventKind.RAISED, alarm_id=alarm_id, rule="string_comm_lost",
        severity=Severity.ALARM, path=ObjectPath(None, string), value=1.0, limit=None,
        unit="", message=f"string {string}: communication lost", at=time.time(),
        persisted=persisted,
    )  # fmt: skip
