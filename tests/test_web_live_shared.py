"""The live stream's plant event: composed once per flush of the hub and shared
by the clients it wakes, the same JSON as the plain dicts, and the cache lets
go of the readings the store has replaced as the changes arrive."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from btms_gateway.core.model import Quality
from btms_gateway.plugins.web import api, data
from btms_gateway.plugins.web.json_cache import LIVE, JsonCache
from web_support import _events, _until, reading, web_gateway


def _timeless(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _timeless(v) for k, v in body.items() if k not in ("age_s", "uptime_s")}
    if isinstance(body, list):
        return [_timeless(v) for v in body]
    return body


def _plain_event(gw: Any) -> dict[str, Any]:
    """The plant event as the stream composed it before the cache."""
    payload = data.plant(gw)
    payload["buses"] = data.buses(gw)
    return payload


async def test_every_client_gets_the_plain_plant_event(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, web={"live_interval_s": 0.05}) as (h, svc):
        h.publish("S1", reading(6, voltage_v=13.5), Quality.GOOD)
        async with (
            aiohttp.ClientSession() as s,
            s.get(svc.url + "/api/stream") as r1,
            s.get(svc.url + "/api/stream") as r2,
        ):
            streams = [_events(r1), _events(r2)]
            for stream in streams:
                await _until(stream, lambda n, d: n == "plant")
            h.publish("S2", reading(5, voltage_v=11.25), Quality.GOOD)
            for stream in streams:
                event = await _until(
                    stream, lambda n, d: n == "plant" and d["strings"][1]["reading"] is not None
                )
                assert event["strings"][1]["reading"]["voltage_v"] == 11.25
                assert _timeless(event) == _timeless(_plain_event(h.gateway))
                assert list(event) == ["taken_at", "ups", "strings", "gateway", "buses"]


async def test_one_flush_composes_once_and_the_next_flush_anew(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, web={"live_interval_s": 0.05}) as (h, svc):
        hub = svc.hub
        handlers = api.Handlers(svc)
        h.publish("S1", reading(4, voltage_v=9.0), Quality.GOOD)
        await h.wait_until(lambda: hub.generation > 0, what="the hub's first flush")
        generation = hub.generation
        first = await handlers._live_plant()
        assert await handlers._live_plant() is first  # a second client of the same flush
        body = json.loads(first.decode().split("data: ", 1)[1])
        assert _timeless(body) == _timeless(_plain_event(h.gateway))

        h.publish("S1", reading(4, voltage_v=9.5), Quality.GOOD)
        await h.wait_until(lambda: hub.generation > generation, what="the next flush")
        fresh = await handlers._live_plant()
        assert fresh is not first
        assert json.loads(fresh.decode().split("data: ", 1)[1])["strings"][0]["reading"][
            "voltage_v"
        ] == 9.5  # fmt: skip

        # no flush, but older than live_interval_s: composed again (bus counters move)
        start = asyncio.get_running_loop().time()
        await h.wait_until(
            lambda: asyncio.get_running_loop().time() - start > 0.05, what="one interval"
        )
        assert hub.generation == generation + 1  # still the same flush: nothing else publishes
        assert await handlers._live_plant() is not fresh


async def test_changes_release_replaced_readings_but_keep_current_ones(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        cache: JsonCache = svc.json_cache
        h.publish("S1", reading(4, voltage_v=9.0), Quality.GOOD)
        h.publish("S2", reading(4, voltage_v=8.0), Quality.GOOD)
        snap = h.gateway.store.snapshot
        for name in ("S1", "S2"):
            cache.string(snap.strings[name], LIVE, False, None)
        old_s1 = snap.strings["S1"].reading
        generation = svc.hub.generation
        h.publish("S1", reading(4, voltage_v=9.5), Quality.GOOD)
        await h.wait_until(lambda: svc.hub.generation > generation, what="the flush")
        # the replaced S1 reading is let go at the flush; S2's entry is still current
        held = {name: entry[0] for name, entry in cache._readings.items()}
        assert held.get("S1") is not old_s1
        assert held["S2"] is snap.strings["S2"].reading
        text = cache.string(h.gateway.store.string("S1"), LIVE, False, None)
        assert json.loads(text)["reading"]["voltage_v"] == 9.5
