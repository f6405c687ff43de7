"""REST and metrics against the BM-SM simulator through the real RTU poller:
what the web plugin serves equals what the simulated string masters hold."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from btms_gateway.core.model import Quality
from btms_gateway.core.serialize import reading_dict
from btms_gateway.kit.testing import GatewayHarness
from prometheus_client.parser import text_string_to_metric_families
from web_support import get_json, sim_gateway

CELLS = {1: 24, 2: 16, 3: 12}


def _without_time(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "read_at"}


async def _string(svc, name: str) -> dict:  # type: ignore[no-untyped-def]
    status, body = await get_json(f"{svc.url}/api/strings/{name}")
    assert status == 200
    return body


async def test_rest_and_metrics_equal_the_simulator(tmp_path: Path) -> None:
    async with sim_gateway(tmp_path, CELLS) as (gw, svc, sim):
        await GatewayHarness.wait_until(
            lambda: all(s.quality is Quality.GOOD for s in gw.store.snapshot.strings.values()),
            20,
            what="every simulated string GOOD",
        )
        for slave in CELLS:
            body = await _string(svc, f"S{slave}")
            assert body["quality"] == "good"
            assert _without_time(body["reading"]) == _without_time(
                reading_dict(sim.expected(slave))
            )
        # a value changes in the simulator: the API follows
        sim.set_cell(1, 5, voltage_v=2.512)
        sim.set_string(2, current_a=-87.25, soc_pct=61.0)

        async def changed() -> bool:
            # the whole reading, not just the changed cell: a poll is several
            # transactions, and one that straddles the change carries the new
            # cell with the string block (voltage, balance) read before it
            s1, s2 = await _string(svc, "S1"), await _string(svc, "S2")
            return (
                _without_time(s1["reading"]) == _without_time(reading_dict(sim.expected(1)))
                and s2["reading"]["current_a"] == -87.25
            )

        await _wait_async(changed, "the change reaches the REST API")
        s1 = await _string(svc, "S1")
        assert s1["reading"]["cells"][4]["voltage_v"] == 2.512
        status, ups = await get_json(svc.url + "/api/ups/UPS2")
        assert ups["current_a"] == -87.25  # UPS2 = S2 alone: sum of its strings

        async with aiohttp.ClientSession() as s, s.get(svc.url + "/metrics") as r:
            samples = {
                (x.name, tuple(sorted(x.labels.items()))): x.value
                for f in text_string_to_metric_families(await r.text())
                for x in f.samples
            }
        expected = sim.expected(2)
        assert samples[("btms_string_voltage_volts", (("string", "S2"),))] == expected.voltage_v
        assert samples[("btms_string_current_amperes", (("string", "S2"),))] == -87.25
        assert samples[("btms_string_cells", (("string", "S3"),))] == 12
        assert samples[("btms_bus_requests_total", (("bus", "bus1"),))] > 0
        assert samples[("btms_string_polls_total", (("string", "S1"),))] > 0

        # a string master stops answering: its data is no longer served as current
        sim.vanish(3)
        await GatewayHarness.wait_until(
            lambda: gw.store.string("S3").quality is not Quality.GOOD, 20, what="S3 not GOOD"
        )
        s3 = await _string(svc, "S3")
        assert s3["quality"] in ("stale", "offline") and s3["status"] == "error"
        status, buses = await get_json(svc.url + "/api/buses")
        assert buses[0]["strings"]["S3"]["polls_failed"] > 0
        assert buses[0]["strings"]["S3"]["errors"]["timeout"] > 0
        async with aiohttp.ClientSession() as s, s.get(svc.url + "/metrics") as r:
            text = await r.text()
        assert 'btms_string_voltage_volts{string="S3"}' not in text
        assert 'btms_string_voltage_volts{string="S1"}' in text
        status, ready = await get_json(svc.url + "/health/ready")
        assert status == 200 and ready["reason"] == "2 of 3 strings GOOD"


async def _wait_async(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_simulated_alarm_acknowledge_needs_credentials_and_answers_match_openapi(
    tmp_path: Path,
) -> None:
    from btms_gateway.core.model import StringAlarm
    from openapi_schema_validator import OAS31Validator
    from openapi_spec_validator import validate
    from web_support import TOKEN, TOKENS, post_json

    web = {"tokens": TOKENS}
    async with sim_gateway(tmp_path, {1: 12, 2: 12}, ups=1, web=web) as (gw, svc, sim):
        await GatewayHarness.wait_until(
            lambda: all(s.quality is Quality.GOOD for s in gw.store.snapshot.strings.values()),
            20,
            what="both simulated strings GOOD",
        )
        # the BM-SM itself raises its "voltage high" alarm bit
        sim.set_string(2, alarms=int(StringAlarm.VOLTAGE_HIGH))
        alarm_id = "bmsm_voltage_high:S2"
        await GatewayHarness.wait_until(
            lambda: [a for a in gw.alarms.active() if a.alarm_id == alarm_id],
            20,
            what="the alarm engine raises the BM-SM alarm",
        )
        status, doc = await get_json(svc.url + "/api/openapi.json")
        validate(doc)
        for path, schema in (
            ("/api/plant", "Plant"),
            ("/api/strings/S2", "StringDetail"),
            ("/api/ups/UPS1", "UpsDetail"),
            ("/api/events", "EventPage"),
        ):
            status, body = await get_json(svc.url + path)
            assert status == 200, path
            ref = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
            OAS31Validator(ref).validate(body)
        status, body = await get_json(svc.url + "/api/strings/S2")
        assert body["reading"]["alarm_bits"] == ["voltage_high"] and body["status"] == "error"
        status, alarms = await get_json(svc.url + "/api/alarms")
        # the UPS holding S2 is in error too (ups_string_error), as the alarm rules say
        assert {a["alarm_id"] for a in alarms} == {alarm_id, "ups_string_error:UPS1"}

        def acked_by() -> str | None:
            return next(a for a in gw.alarms.active() if a.alarm_id == alarm_id).acknowledged_by

        url = f"{svc.url}/api/alarms/{alarm_id}/acknowledge"
        status, body = await post_json(url)
        assert status == 401 and acked_by() is None
        status, body = await post_json(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body["by"] == "token:scada"
        assert acked_by() == "token:scada"
        _, events = await get_json(svc.url + "/api/events", params={"alarm_id": alarm_id})
        assert [e["kind"] for e in events["events"]] == ["acknowledged", "raised"]
