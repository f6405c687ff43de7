"""The example plugin's own tests: it runs inside a real gateway harness."""

import json
import subprocess
import sys

from btms_gateway.core.api import Quality
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config


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


def summary(path):
    """`btms-gateway jsonl-summary PATH`, the real command line."""
    return subprocess.run(
        [sys.executable, "-m", "btms_gateway.core", "jsonl-summary", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


READING = '{"type":"reading","string":{"name":"A1","quality":"good"}}\n'


def test_the_summary_skips_a_line_cut_by_a_power_loss(tmp_path):
    out = tmp_path / "readings.jsonl"
    # the last record cut inside a two-byte UTF-8 character, as a power cut leaves it
    out.write_bytes((READING * 3 + '{"type":"alarm"}\n').encode() + READING[:30].encode()
                    + "é".encode()[:1])  # fmt: skip
    result = summary(out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["alarm:alarm\t1", "reading:A1\t3"]
    assert result.stderr.strip() == (
        f"warning: {out}: skipped 1 unreadable line(s) (line 5): not a whole record, "
        "e.g. the last line cut by a power loss"
    )


async def test_records_after_a_restart_start_on_a_line_of_their_own(tmp_path):
    out = tmp_path / "readings.jsonl"
    out.write_text(READING + READING[:25])  # the gateway lost power mid-write
    config = plant_config(strings=1, ups=1, plugins={"jsonl": {"path": str(out)}})
    async with GatewayHarness(config) as h:
        h.publish("S1", make_reading(3))
        await h.wait_until(
            lambda: len(out.read_text().splitlines()) == 3, what="the new record in the file"
        )
    lines = out.read_text().splitlines()
    assert lines[1] == READING[:25]
    assert json.loads(lines[2])["string"]["name"] == "S1"
    result = summary(out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["reading:A1\t1", "reading:S1\t1"]
    assert "skipped 1 unreadable line(s) (line 2)" in result.stderr
