"""The example plugin's own tests: it runs inside a real gateway harness."""

import json

from btms_gateway.core.model import Quality
from btms_gateway.core.testing import GatewayHarness, make_reading, plant_config


async def test_every_reading_becomes_a_json_line(tmp_path):
    out = tmp_path / "readings.jsonl"
    config = plant_config(strings=2, ups=1, plugins={"jsonl": {"path": str(out)}})
    async with GatewayHarness(config) as h:
        h.publish("S1", make_reading(3, current_a=-5.5))
        h.publish("S2", make_reading(3), Quality.STALE)
        lines = await h.wait_until(
            lambda: (
                out.exists()
                and len(out.read_text().splitlines()) >= 2
                and out.read_text().splitlines()
            ),
            what="two lines in the file",
        )
    records = [json.loads(line) for line in lines]
    by_name = {r["string"]["name"]: r["string"] for r in records}
    assert by_name["S1"]["reading"]["current_a"] == -5.5
    assert by_name["S1"]["quality"] == "good"
    assert by_name["S2"]["quality"] == "stale"
    assert "cells" not in by_name["S1"]["reading"]
