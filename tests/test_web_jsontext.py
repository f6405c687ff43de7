"""The web plugin's cached JSON text against the straightforward serialization.

The handlers answer from ``json_cache.JsonCache`` (text pieces kept per
immutable reading / snapshot) and ``core.serialize`` looks field names up
once per class. These tests hold both to the plain statement: the
dataclasses.fields() loops the serializer used to run, encoded whole with
``json.dumps``, byte for byte, for random readings; and they show that a new
object is never answered from an older object's entry, even when the two are
equal as values (``-0.0 == 0.0`` but their JSON differs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from btms_gateway.core import api, serialize
from btms_gateway.core.model import (
    CellReading,
    CellStatus,
    DeviceStatus,
    PlantSnapshot,
    Quality,
    StringAlarm,
    StringReading,
    StringSnapshot,
    StringState,
    UpsSnapshot,
)
from btms_gateway.plugins.web import data
from btms_gateway.plugins.web.json_cache import LIVE, PIECES_PER_STEP, REST, JsonCache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_support import reading, web_gateway

STYLES = {"rest": (REST, lambda o: json.dumps(o, default=str)),
          "live": (LIVE, lambda o: json.dumps(o, separators=(",", ":")))}  # fmt: skip


# --- the reference: core.serialize as it was written first ---------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, enum.Flag):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, enum.IntEnum) else value.value
    return value


def ref_cell(cell: CellReading) -> dict[str, Any]:
    return {f.name: _plain(getattr(cell, f.name)) for f in dataclasses.fields(cell)}


def ref_reading(r: StringReading, cells: bool = True) -> dict[str, Any]:
    out = {f.name: _plain(getattr(r, f.name)) for f in dataclasses.fields(r) if f.name != "cells"}
    out["alarm_bits"] = [a.name.lower() for a in type(r.alarms) if a and a in r.alarms]
    out["soh_pct"] = r.soh_pct
    if cells:
        out["cells"] = [ref_cell(c) for c in r.cells]
    return out


def ref_string(s: StringSnapshot, cells: bool = True, now: float | None = None) -> dict[str, Any]:
    return {
        "name": s.name, "index": s.index, "ups": s.ups, "bus": s.bus, "slave_id": s.slave_id,
        "quality": s.quality.name.lower(), "status": s.device_status.name.lower(),
        "changed_at": s.changed_at, "age_s": s.age_s(now),
        "reading": ref_reading(s.reading, cells) if s.reading else None,
    }  # fmt: skip


def ref_ups(u: UpsSnapshot) -> dict[str, Any]:
    plain = {f.name: _plain(getattr(u, f.name)) for f in dataclasses.fields(u)}
    return plain | {"strings": list(u.strings)}


def ref_plant(p: PlantSnapshot, cells: bool = False) -> dict[str, Any]:
    return {
        "taken_at": p.taken_at,
        "ups": [ref_ups(u) for u in p.ups.values()],
        "strings": [ref_string(s, cells, p.taken_at) for s in p.strings.values()],
    }


# --- random model objects ----------------------------------------------------------------
values = st.one_of(st.none(), st.floats(), st.sampled_from([0.0, -0.0, 1e-320, 2.25]))
flags = st.integers(0, 127)
cells_ = st.lists(
    st.builds(
        CellReading,
        index=st.integers(1, 400),
        voltage_v=values,
        resistance_mohm=values,
        temperature_c=values,
        soc_pct=values,
        soh_pct=values,
        status=st.integers(0, 3).map(CellStatus),
    ),
    max_size=12,
).map(tuple)
readings = st.builds(
    StringReading,
    voltage_v=st.floats(),
    current_a=st.floats(),
    soc_pct=st.floats(0, 100),
    balance_pct=st.floats(0, 100),
    state=st.sampled_from(list(StringState)),
    alarms=flags.map(StringAlarm),
    cell_count=st.integers(0, 400),
    ambient_temperature_c=values,
    ambient_humidity_pct=values,
    relay_closed=st.none() | st.booleans(),
    aux_input_on=st.none() | st.booleans(),
    cells=cells_,
    read_at=st.floats(),  # any float: an age may come out infinite or NaN
)
names = st.text(min_size=1, max_size=8)  # any text: quotes, control and non-ASCII characters


@st.composite
def plants(draw: Any) -> PlantSnapshot:
    n = draw(st.integers(0, 5))
    strings = {}
    for i, name in enumerate(draw(st.lists(names, min_size=n, max_size=n, unique=True)), 1):
        strings[name] = StringSnapshot(
            name=name,
            index=i,
            ups=draw(st.none() | names),
            ups_index=draw(st.integers(0, 4)),
            slave_id=draw(st.integers(1, 247)),
            bus=draw(names),
            quality=draw(st.sampled_from(list(Quality))),
            reading=draw(st.none() | readings),
            changed_at=draw(st.floats()),
        )
    ups = {
        u: UpsSnapshot(
            name=u,
            index=i,
            strings=tuple(strings)[:2],
            voltage_v=draw(values),
            current_a=draw(values),
            soc_pct=draw(values),
            quality=draw(st.sampled_from(list(Quality))),
            status=draw(st.sampled_from(list(DeviceStatus))),
            read_at=draw(values),
        )
        for i, u in enumerate(draw(st.lists(names, max_size=3, unique=True)), 1)
    }
    return PlantSnapshot(strings=strings, ups=ups, taken_at=draw(st.floats()))


# one cache for every example: entries left by earlier examples must never leak into later ones
CACHE = JsonCache()


@pytest.mark.slow  # ~4 s on a shared 2-core box
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(plant=plants(), cells=st.booleans(), now=st.none() | st.floats())
def test_cached_text_equals_plain_serialization(
    plant: PlantSnapshot, cells: bool, now: float | None
) -> None:
    ref_text = ref_plant(plant, cells)
    for style, dumps in STYLES.values():
        opened = CACHE.plant_open(plant, style, cells)
        assert CACHE.extend(opened, style, {}) == dumps(ref_text)
        assert CACHE.extend(opened, style, {"gateway": {"x": 1}}) == dumps(
            ref_text | {"gateway": {"x": 1}}
        )
        assert CACHE.strings(plant, style, cells) == dumps(ref_text["strings"])
        assert CACHE.ups_list(plant, style) == dumps(ref_text["ups"])
        for s in plant.strings.values():
            fixed = now if now is not None else time.time()
            assert CACHE.string(s, style, cells, fixed) == dumps(ref_string(s, cells, fixed))
            if s.reading is not None:
                # the other variant of the same cached reading must not be mixed up with this one
                other = CACHE.reading(s.name, s.reading, style, not cells)
                assert other == dumps(ref_reading(s.reading, not cells))


@settings(max_examples=200)
@given(plant=plants())
def test_serialize_dicts_equal_the_field_loops(plant: PlantSnapshot) -> None:
    """core.serialize's per-class field names give the same dicts as fields() per object."""
    for cells in (False, True):
        assert json.dumps(serialize.plant_dict(plant, cells)) == json.dumps(ref_plant(plant, cells))
    for s in plant.strings.values():
        if s.reading is not None:
            for c in s.reading.cells:
                got, want = serialize.cell_dict(c), ref_cell(c)
                assert json.dumps(got) == json.dumps(want)
                assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


def test_serialized_keys_are_the_documented_ones() -> None:
    """A field added to the model (a cached value, say) must not reach the JSON
    unannounced: the keys are exactly the OpenAPI schema's properties."""
    from btms_gateway.plugins.web.openapi import openapi_document

    schemas = openapi_document()["components"]["schemas"]
    r = reading(3, alarms=StringAlarm.SOC_LOW)
    s = StringSnapshot("S1", 1, "UPS1", 1, 1, "bus1", Quality.GOOD, r, 1.0)
    u = UpsSnapshot("UPS1", 1, ("S1",), 2.0, 1.0, 50.0, Quality.GOOD, DeviceStatus.OK, 1.0)
    for name, value in (
        ("Reading", serialize.reading_dict(r)),
        ("Cell", serialize.cell_dict(r.cells[0])),
        ("String", serialize.string_dict(s)),
        ("Ups", serialize.ups_dict(u)),
    ):
        assert set(value) == set(schemas[name]["properties"]), name


@settings(max_examples=100)
@given(
    first=readings,
    later=st.lists(readings, min_size=1, max_size=4),
    style=st.sampled_from(list(STYLES)),
)
def test_a_new_reading_is_never_served_from_an_older_entry(
    first: StringReading, later: list[StringReading], style: str
) -> None:
    cache = JsonCache()
    st_, dumps = STYLES[style]
    snap = StringSnapshot("S1", 1, "UPS1", 1, 1, "bus1", Quality.GOOD, first, 10.0)
    assert cache.string(snap, st_, True, 20.0) == dumps(ref_string(snap, True, 20.0))
    for r in later:
        # an equal copy, and one whose only change is the sign of a zero, are new objects too
        for new in (r, replace(r), replace(r, current_a=-0.0), replace(r, current_a=0.0)):
            snap = replace(snap, reading=new, quality=Quality.STALE)
            for cells in (True, False):
                want = dumps(ref_string(snap, cells, 20.0))
                assert cache.string(snap, st_, cells, 20.0) == want


async def test_prepare_builds_in_steps_and_leaves_nothing_to_build() -> None:
    """A plant whose strings all changed is built over several loop callbacks,
    and afterwards the answer is only joined (nothing is built in it)."""
    strings = {
        f"S{i}": StringSnapshot(f"S{i}", i, None, 0, i, "b", Quality.GOOD, reading(4), 1.0)
        for i in range(1, 3 * PIECES_PER_STEP)
    }
    plant = PlantSnapshot(strings=strings, ups={}, taken_at=5.0)
    cache = JsonCache()
    task = asyncio.ensure_future(cache.prepare(plant, LIVE))
    seen: list[bool] = []
    asyncio.get_running_loop().call_soon(lambda: seen.append(task.done()))
    await task
    assert seen == [False]  # another callback ran while the plant was being built
    assert list(cache.fill(plant, LIVE)) == []
    fresh = replace(plant, strings=strings | {"S2": replace(strings["S2"], reading=reading(5))})
    assert len(list(cache.fill(fresh, LIVE))) == 1  # only the string that changed
    assert cache.extend(cache.plant_open(fresh, LIVE), LIVE, {}) == STYLES["live"][1](
        ref_plant(fresh)
    )


def test_the_same_reading_under_a_new_snapshot_gets_a_new_head() -> None:
    """Quality and status live in the string snapshot, not the reading: a
    snapshot that keeps its reading but changes quality is not served old."""
    cache = JsonCache()
    snap = StringSnapshot("S1", 1, None, 0, 1, "bus1", Quality.GOOD, reading(3), 10.0)
    assert json.loads(cache.string(snap, REST, False, 11.0))["quality"] == "good"
    stale = replace(snap, quality=Quality.STALE, changed_at=12.0)
    body = json.loads(cache.string(stale, REST, False, 13.0))
    assert (body["quality"], body["status"], body["changed_at"]) == ("stale", "error", 12.0)


# --- through the running server -------------------------------------------------------------
def _timeless(body: Any) -> Any:
    """The answer without what moves with the clock (ages, uptime)."""
    if isinstance(body, dict):
        return {k: _timeless(v) for k, v in body.items() if k not in ("age_s", "uptime_s")}
    if isinstance(body, list):
        return [_timeless(v) for v in body]
    return body


async def _get(url: str) -> tuple[int, str]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_http_answers_equal_the_dict_functions(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        h.publish("S1", reading(8, voltage_v=18.07, cell_3={"soh_pct": 71.5}), Quality.GOOD)
        h.publish("S2", reading(6), Quality.STALE)
        gw = h.gateway
        for path, plain in (
            ("/api/plant", lambda: data.plant(gw)),
            ("/api/strings", lambda: data.plant(gw)["strings"]),
            ("/api/ups", lambda: data.plant(gw)["ups"]),
            ("/api/ups/UPS1", lambda: data.ups(gw, "UPS1")),
            ("/api/strings/S1", lambda: data.string(gw, "S1")),
            ("/api/strings/S1?cells=false", lambda: data.string(gw, "S1", False)),
            ("/api/strings/S3", lambda: data.string(gw, "S3")),
        ):
            for _ in range(2):  # the second answer comes from the cache
                status, text = await _get(svc.url + path)
                assert status == 200
                assert _timeless(json.loads(text)) == _timeless(plain()), path
                assert list(json.loads(text)) == list(plain()), path  # key order too


class CellQuantityPlugin:
    """Registers a cell quantity: REST serves it in each cell of the string detail."""

    @api.hookimpl
    def register_quantities(self, register: Any) -> None:
        register(api.Quantity("position", api.Level.CELL, "", None, False, "count",
                              api.Role.STATUS, "position in the string",
                              lambda c: 10 * c.index))  # fmt: skip


async def test_registered_cell_quantities_are_in_both_answers(tmp_path: Path) -> None:
    """The cached text (REST, live stream) and the dict function agree on a cell
    quantity a plugin registered: after core's keys, in every cell."""
    plugins = {"cellq": CellQuantityPlugin()}
    async with web_gateway(tmp_path, extra_plugins=plugins) as (h, svc):
        h.publish("S1", reading(3), Quality.GOOD)
        for _ in range(2):  # the second answer comes from the cache
            status, text = await _get(svc.url + "/api/strings/S1")
            assert status == 200
            cells = json.loads(text)["reading"]["cells"]
            assert [(c["index"], c["position"]) for c in cells] == [(1, 10), (2, 20), (3, 30)]
            assert list(cells[0])[-1] == "position"
            assert _timeless(json.loads(text)) == _timeless(data.string(h.gateway, "S1"))
        _, text = await _get(svc.url + "/api/strings/S1?cells=false")
        assert "position" not in text


async def test_http_never_serves_the_previous_reading(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        url = svc.url + "/api/strings/S1"
        h.publish("S1", reading(4, current_a=0.0, read_at=1e9), Quality.GOOD)
        assert '"current_a": 0.0,' in (await _get(url))[1]
        # equal as a value, different as JSON: a cache keyed by equality would answer 0.0
        assert reading(4, current_a=-0.0, read_at=1e9) == reading(4, current_a=0.0, read_at=1e9)
        h.publish("S1", reading(4, current_a=-0.0, read_at=1e9), Quality.GOOD)
        assert '"current_a": -0.0,' in (await _get(url))[1]
        h.publish("S1", reading(4, current_a=-0.0, cell_2={"voltage_v": 2.5}), Quality.GOOD)
        _, text = await _get(url)
        assert json.loads(text)["reading"]["cells"][1]["voltage_v"] == 2.5
        _, text = await _get(url + "?cells=false")
        assert "cells" not in json.loads(text)["reading"]


def test_limits_cache_follows_the_settings_object_and_the_engine() -> None:
    from types import SimpleNamespace

    from btms_gateway.core.alarms.config import AlarmsSection

    high = {"cell_voltage_high": {"limit": 2.35}}
    first = AlarmsSection(strings={"S2": {"block": "12V", "rules": high}})
    gw = SimpleNamespace(settings=SimpleNamespace(alarms=first), events=object())
    limits = data.LimitsCache()
    for name in ("S1", "S2", "S1"):
        assert limits(gw, name) == data.cell_limits(gw, name)
    assert limits(gw, "S2")["voltage_v"]["high"] == pytest.approx(2.35 * 6)
    gw.settings.alarms = AlarmsSection(rules={"cell_voltage_high": {"enabled": False}})
    assert limits(gw, "S2")["voltage_v"]["high"] == pytest.approx(2.40)
    assert limits(gw, "S2")["voltage_v"]["high_source"] == "display"  # the rule is off
    assert limits(gw, "S1")["voltage_v"]["low_source"] == "alarm"
    gw.events = None  # no alarm engine: every band is for display only
    assert limits(gw, "S1")["voltage_v"]["low_source"] == "display"
