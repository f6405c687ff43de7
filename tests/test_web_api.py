"""The web plugin's REST API, OpenAPI description, metrics and health, against
a running gateway (values published as the engine publishes them)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from btms_gateway.core.alarm_types import AlarmEvent, EventKind, ObjectPath, Severity
from btms_gateway.core.model import Quality
from btms_gateway.core.serialize import cell_dict, string_dict, ups_dict
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from web_support import get_json, reading, web_gateway

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _schema_check(doc: dict, name: str, instance: object) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    OAS31Validator(schema).validate(instance)


async def test_rest_answers_equal_the_gateway_values(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        r1 = reading(8, voltage_v=18.07, current_a=-3.21, cell_5={"voltage_v": 2.456})
        h.publish("S1", r1, Quality.GOOD)
        h.publish("S2", reading(6), Quality.STALE)
        status, body = await get_json(svc.url + "/api/strings/S1")
        assert status == 200
        assert body["quality"] == "good"
        assert body["reading"]["voltage_v"] == 18.07
        assert body["reading"]["current_a"] == -3.21
        assert body["reading"]["cells"] == [cell_dict(c) for c in r1.cells]
        assert body["reading"]["cells"][4]["voltage_v"] == 2.456
        assert body["limits"]["voltage_v"]["high"] == pytest.approx(2.40)
        expected = string_dict(h.gateway.store.string("S1"))
        assert {k: v for k, v in body.items() if k not in ("age_s", "limits", "baseline_mohm",
                "ups_index", "derived", "cell_derived")} == {
                k: v for k, v in expected.items() if k != "age_s"}  # fmt: skip
        snap = h.gateway.store.string("S1")
        assert body["derived"] == dict(snap.derived) and snap.derived["discharging"] == 0.0
        assert body["cell_derived"]["resistance_vs_median_pct"] == list(
            snap.cell_derived["resistance_vs_median_pct"]
        )

        status, plant = await get_json(svc.url + "/api/plant")
        assert status == 200
        by_name = {s["name"]: s for s in plant["strings"]}
        assert by_name["S2"]["quality"] == "stale"  # last good values, marked as not current
        assert by_name["S3"]["reading"] is None and by_name["S3"]["quality"] == "offline"
        assert "cells" not in by_name["S1"]["reading"]
        assert plant["ups"] == [ups_dict(u) for u in h.gateway.store.snapshot.ups.values()]

        status, ups = await get_json(svc.url + "/api/ups/UPS1")
        assert status == 200 and ups["strings"] == ["S1", "S3"]
        assert ups["voltage_v"] == h.gateway.store.snapshot.ups["UPS1"].voltage_v
        assert [s["name"] for s in ups["string_details"]] == ["S1", "S3"]
        assert (await get_json(svc.url + "/api/ups/NOPE"))[0] == 404
        assert (await get_json(svc.url + "/api/strings/NOPE"))[0] == 404
        status, buses = await get_json(svc.url + "/api/buses")
        assert status == 200 and buses[0]["name"] == "bus1"
        assert set(buses[0]["strings"]) == {"S1", "S2", "S3", "S4"}


async def test_openapi_document_validates_and_describes_real_answers(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        h.publish("S1", reading(4), Quality.GOOD)
        h.gateway.emit(_event(1, EventKind.RAISED, "S1"))
        await h.wait_until(lambda: svc.ring.last_seq == 1, what="event reaches the plugin")
        status, doc = await get_json(svc.url + "/api/openapi.json")
        assert status == 200
        validate(doc)  # raises on an invalid OpenAPI 3.1 document
        for path, schema in (
            ("/api/plant", "Plant"),
            ("/api/strings/S1", "StringDetail"),
            ("/api/strings/S3", "StringDetail"),
            ("/api/ups/UPS1", "UpsDetail"),
            ("/api/events", "EventPage"),
            ("/api/strings/S1/history", "History"),
            ("/health/ready", "Health"),
            ("/api/session", "Session"),
        ):
            status, body = await get_json(svc.url + path)
            assert status == 200, path
            _schema_check(doc, schema, body)
        for item in (await get_json(svc.url + "/api/buses"))[1]:
            _schema_check(doc, "Bus", item)
        served = {p for p in doc["paths"]}
        routes = {r.resource.canonical for r in svc.runner.app.router.routes() if r.resource}
        assert served == {p for p in routes if p.startswith(("/api", "/health", "/metrics"))}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_parse_and_follow_the_snapshot(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, web={"cell_metrics": True}) as (h, svc):
        h.publish("S1", reading(5, voltage_v=11.5, soc_pct=64.0), Quality.GOOD)
        h.publish("S2", reading(5), Quality.STALE)
        async with aiohttp.ClientSession() as s, s.get(svc.url + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        m = _samples(text)
        assert m[("btms_string_voltage_volts", (("string", "S1"),))] == 11.5
        assert m[("btms_string_soc_ratio", (("string", "S1"),))] == pytest.approx(0.64)
        assert m[("btms_string_quality", (("quality", "good"), ("string", "S1")))] == 1
        assert m[("btms_string_quality", (("quality", "stale"), ("string", "S2")))] == 1
        # stale values are not exported as if current; their age is
        assert ("btms_string_voltage_volts", (("string", "S2"),)) not in m
        assert ("btms_string_last_read_timestamp_seconds", (("string", "S2"),)) in m
        assert m[("btms_cell_voltage_volts", (("cell", "2"), ("string", "S1")))] == 2.252
        assert m[("btms_cell_resistance_ohms", (("cell", "1"), ("string", "S1")))] == (
            pytest.approx(0.501e-3)
        )
        assert m[("btms_bus_requests_total", (("bus", "bus1"),))] == 0
        assert ("btms_alarms_active", (("acknowledged", "false"), ("severity", "alarm"))) in m
        assert m[("btms_gateway_uptime_seconds", ())] > 0


async def test_cell_metrics_are_off_by_default(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        h.publish("S1", reading(5), Quality.GOOD)
        async with aiohttp.ClientSession() as s, s.get(svc.url + "/metrics") as r:
            names = {f.name for f in text_string_to_metric_families(await r.text())}
        assert "btms_string_voltage_volts" in names
        assert "btms_string_cell_voltage_max_volts" in names
        assert not any(n.startswith("btms_cell_") for n in names)


@pytest.mark.parametrize("enabled", [False, True])
async def test_access_log_only_when_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, enabled: bool
) -> None:
    """Off by default: a scraper or a polling SCADA must not write a line per
    request into the gateway's log (and a line costs ~90 us of the ~270 us a
    GET costs); ``access_log = true`` gives aiohttp's line per request."""
    web = {"access_log": True} if enabled else {}
    with caplog.at_level("INFO", logger="aiohttp.access"):
        async with web_gateway(tmp_path, web=web) as (h, svc):
            h.publish("S1", reading(5), Quality.GOOD)
            for _ in range(3):
                status, _body = await get_json(svc.url + "/api/strings/S1?cells=false")
                assert status == 200
    lines = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == (3 if enabled else 0)
    if enabled:
        assert "GET /api/strings/S1?cells=false" in lines[0].getMessage()


async def test_health_ready_says_why_not(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, strings=2, ups=1) as (h, svc):
        assert (await get_json(svc.url + "/health/live"))[0] == 200
        status, body = await get_json(svc.url + "/health/ready")
        assert status == 503
        assert body["reason"] == "no string has GOOD data yet: S1 offline, S2 offline"
        h.publish("S1", reading(4), Quality.GOOD)
        status, body = await get_json(svc.url + "/health/ready")
        assert status == 200 and body["reason"] == "1 of 2 strings GOOD"


def _event(seq: int, kind: EventKind, string: str, severity: Severity = Severity.ALARM):
    return AlarmEvent(
        seq=seq,
        kind=kind,
        alarm_id=f"cell_voltage_high:{string}:{seq}",
        rule="cell_voltage_high",
        severity=severity,
        path=ObjectPath("UPS1", string, seq),
        value=2.5,
        limit=2.4,
        unit="V",
        message=f"event {seq}",
        at=time.time(),
    )


async def test_events_filters_and_paging_without_event_log(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        for seq in range(1, 8):
            kind = EventKind.RAISED if seq % 2 else EventKind.CLEARED
            sev = Severity.WARNING if seq == 3 else Severity.ALARM
            h.gateway.emit(_event(seq, kind, "S1" if seq < 6 else "S2", sev))
        await h.wait_until(lambda: svc.ring.last_seq == 7, what="events reach the plugin")
        url = svc.url + "/api/events"
        status, page = await get_json(url)
        assert status == 200 and page["source"] == "memory"
        assert [e["seq"] for e in page["events"]] == [7, 6, 5, 4, 3, 2, 1]
        _, page = await get_json(url, params={"kind": "raised", "string": "S1"})
        assert [e["seq"] for e in page["events"]] == [5, 3, 1]
        _, page = await get_json(url, params={"severity": "warning"})
        assert [e["seq"] for e in page["events"]] == [3]
        seen, cursor = [], None
        for _ in range(5):  # bounded walk
            params = {"order": "asc", "limit": "3"} | ({"after_seq": cursor} if cursor else {})
            _, page = await get_json(url, params=params)
            seen += [e["seq"] for e in page["events"]]
            cursor = str(page["next_after_seq"])
            if not page["more"]:
                break
        assert seen == [1, 2, 3, 4, 5, 6, 7]
        for bad, text in (
            ({"kind": "exploded"}, "kind: expected one of"),
            ({"limit": "0"}, "limit: expected 1..1000"),
            ({"since": "yesterday"}, "since: expected a number"),
            ({"after_seq": "3"}, "after_seq pages forward"),
        ):
            status, body = await get_json(url, params=bad)
            assert status == 400 and text in body["error"], bad


async def test_docs_list_exactly_the_exported_metrics(tmp_path: Path) -> None:
    import re

    documented = set(
        re.findall(r"^\| `(btms_[a-z_]+)` \|", (DOCS / "web.md").read_text(), re.MULTILINE)
    )
    # a discharge running (no start delay, a rated capacity): every derived value is known
    analytics = {"start_delay_s": 0, "rated_ah": 100}
    async with web_gateway(tmp_path, web={"cell_metrics": True}, analytics=analytics) as (h, svc):
        now = time.time()
        h.publish("S1", reading(3, read_at=now - 1), Quality.GOOD)
        h.publish("S1", reading(3, read_at=now), Quality.GOOD)
        async with aiohttp.ClientSession() as s, s.get(svc.url + "/metrics") as r:
            families = list(text_string_to_metric_families(await r.text()))
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    assert documented == exported


async def test_events_page_through_the_event_log(tmp_path: Path) -> None:
    fast = {"on_delay_s": 0, "off_delay_s": 0}
    alarms = {"rules": {"cell_voltage_high": fast, "cell_temperature_high": fast}}
    async with web_gateway(tmp_path, alarms=alarms) as (h, svc):
        hot = {"voltage_v": 2.6, "temperature_c": 45.0}
        h.publish("S1", reading(4, cell_1=hot, cell_2=hot), Quality.GOOD)
        await h.wait_until(lambda: len(h.gateway.alarms.active()) == 4, what="4 alarms raised")
        url = svc.url + "/api/events"
        _, first = await get_json(url, params={"order": "asc", "limit": "3"})
        assert first["source"] == "event_log" and first["more"] is True
        _, rest = await get_json(
            url, params={"order": "asc", "limit": "3", "after_seq": first["next_after_seq"]}
        )
        seqs = [e["seq"] for e in first["events"] + rest["events"]]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) == 4 and not rest["more"]
        _, newest = await get_json(url, params={"limit": "1"})
        assert newest["events"][0]["seq"] == seqs[-1]
        backwards, cursor = [], newest["next_before_seq"]
        while True:  # newest first, page by page, down to the oldest
            _, page = await get_json(url, params={"limit": "1", "before_seq": cursor})
            backwards += [e["seq"] for e in page["events"]]
            cursor = page["next_before_seq"]
            if not page["more"]:
                break
        assert [newest["events"][0]["seq"], *backwards] == seqs[::-1]
        _, temps = await get_json(url, params={"alarm_id": "cell_temperature_high:S1:2"})
        assert [e["path"]["cell"] for e in temps["events"]] == [2]
        assert {a["alarm_id"] for a in (await get_json(svc.url + "/api/alarms"))[1]} == {
            e["alarm_id"] for e in first["events"] + rest["events"]
        }


async def test_a_taken_port_stops_the_gateway_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    from btms_gateway.core.gateway import GatewayStartError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GatewayStartError, match=f"web: cannot listen on 127.0.0.1:{port}"):
            async with web_gateway(tmp_path, web={"port": port}):
                pass
