"""``GET /api/strings/{name}/history`` over the core history store, its
OpenAPI description, its input errors, the history metrics, and the CLI
export read back equal to the REST answer (CSV and Parquet)."""

from __future__ import annotations

import csv
import io
import math
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from btms_gateway.core.cli import build_cli
from btms_gateway.core.history import FILE_NAME
from click.testing import CliRunner
from history_support import T0, reading_at, service, write_all
from openapi_schema_validator import OAS31Validator
from web_support import get_json, web_gateway

SPAN = 3 * 3600


def _write(h: Any) -> None:
    history = h.gateway.history
    rng = random.Random(11)
    for i in range(SPAN // 5):
        history.write("S1", reading_at(T0 + 5 * i, rng, cells=6))
    assert history.sync(60)


def _by_column(answer: dict[str, Any]) -> dict[tuple[str, int | None], dict[float, tuple]]:
    """REST series -> {(quantity, cell): {t: values}} for the rows with a value."""
    out: dict[tuple[str, int | None], dict[float, tuple]] = {}
    stats = ["value"] if answer["resolution"] == "raw" and answer["step_s"] is None else [
        "min", "mean", "max", "count"]  # fmt: skip
    for s in answer["series"]:
        rows = out.setdefault((s["quantity"], s["cell"]), {})
        for i, t in enumerate(answer["t"]):
            values = tuple(s[k][i] for k in stats)
            if values[0] is not None and (stats == ["value"] or values[-1] > 0):
                rows[t] = values
    return out


def _table(rows: list[dict[str, Any]], raw: bool) -> dict[tuple[str, int | None], dict]:
    out: dict[tuple[str, int | None], dict] = {}
    stats = ["value"] if raw else ["min", "mean", "max", "count"]
    for r in rows:
        cell = r["cell"]
        cell = (
            None
            if cell in ("", None) or (isinstance(cell, float) and math.isnan(cell))
            else int(cell)
        )
        values = tuple(float(r[k]) if k != "count" else int(r[k]) for k in stats)
        out.setdefault((r["quantity"], cell), {})[float(r["t"])] = values
    return out


async def test_history_endpoint_answers_from_the_store(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        _write(h)
        url = f"{svc.url}/api/strings/S1/history"
        status, body = await get_json(
            url,
            params={
                "from": T0,
                "to": T0 + 3600,
                "quantities": "voltage_v,cell_voltage_v",
                "cells": "1-2",
            },
        )
        assert status == 200, body
        assert body["resolution"] == "raw" and body["step_s"] is None
        assert body["history"]["state"] == "recording"
        assert len(body["t"]) == 720 and body["t"][0] == T0
        assert [(s["quantity"], s["cell"]) for s in body["series"]] == [
            ("voltage_v", None), ("cell_voltage_v", 1), ("cell_voltage_v", 2)]  # fmt: skip
        direct = h.gateway.history.queries.series(
            "S1", ["cell_voltage_v"], T0, T0 + 3600, cells=[2], resolution="raw"
        )
        want = [None if math.isnan(v) else v for v in direct.stats["value"][:, 0]]
        assert body["series"][2]["value"] == want
        # the tier follows the span unless asked; max_points merges buckets
        status, day = await get_json(url, params={"from": T0, "to": T0 + 7 * 86400})
        assert status == 200 and day["resolution"] == "minute" and day["step_s"] == 60
        assert set(day["series"][0]) >= {"min", "mean", "max", "count"}
        status, few = await get_json(url, params={"from": T0, "to": T0 + SPAN, "max_points": 10})
        assert status == 200 and len(few["t"]) <= 10 and few["step_s"] >= SPAN / 10
        status, since = await get_json(url, params={"since": T0 + 600, "to": T0 + 3600, "limit": 3})
        assert since["t"] == [T0 + 3600 - 15, T0 + 3600 - 10, T0 + 3600 - 5]
        _, doc = await get_json(svc.url + "/api/openapi.json")
        for answer in (body, day, few, since):
            schema = {"$ref": "#/components/schemas/History", "components": doc["components"]}
            OAS31Validator(schema).validate(answer)
        for bad, text in (
            ({"from": "yesterday"}, "from: expected epoch seconds or an ISO 8601 time"),
            ({"quantities": "volts"}, "quantities: expected some of"),
            ({"cells": "1-x"}, "cells: numbers like"),
            ({"cells": "0"}, "cells are numbered from 1"),
            ({"resolution": "daily"}, "resolution: expected one of auto, raw"),
            ({"max_points": "1"}, "max_points: expected an integer 2..100000"),
            ({"limit": "many"}, "limit: expected an integer"),
            ({"from": T0 + 10, "to": T0}, "to: expected a time after from"),
            ({"from": T0, "since": T0}, "same parameter"),
        ):
            status, err = await get_json(url, params=bad)
            assert status == 400 and text in err["error"], (bad, err)
        assert (await get_json(f"{svc.url}/api/strings/NOPE/history"))[0] == 404
        # a configured string not recorded yet: an empty answer, not an error
        status, empty = await get_json(f"{svc.url}/api/strings/S4/history")
        assert status == 200 and empty["t"] == [] and empty["series"] == []
        status, info = await get_json(f"{svc.url}/api/history")
        assert status == 200 and info["status"]["state"] == "recording"
        assert {t["tier"] for t in info["info"]["tiers"]} == {"raw", "minute", "hour"}


async def test_history_metrics(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with web_gateway(tmp_path) as (h, svc):
        _write(h)
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(svc.url + "/metrics") as r:
            text = await r.text()
    samples = {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for m in text_string_to_metric_families(text)
        for x in m.samples
    }
    assert samples[("btms_history_state", (("state", "recording"),))] == 1
    assert samples[("btms_history_state", (("state", "paused"),))] == 0
    assert samples[("btms_history_readings_recorded_total", ())] == SPAN // 5
    assert samples[("btms_history_readings_dropped_total", (("reason", "clock"),))] == 0


async def test_export_round_trip_equals_the_rest_answer(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        _write(h)
        url = f"{svc.url}/api/strings/S1/history"
        cases = []
        for resolution in ("raw", "minute"):
            params = {
                "from": T0 + 1800,
                "to": T0 + 2 * 3600,
                "quantities": "voltage_v,current_a,cell_voltage_v,cell_status",
                "cells": "1-3",
                "resolution": resolution,
            }
            status, body = await get_json(url, params=params)
            assert status == 200
            cases.append((params, body))
    runner = CliRunner()
    for params, body in cases:
        raw = params["resolution"] == "raw"
        want = _by_column(body)
        assert sum(len(v) for v in want.values()) > 100
        common = ["history", "export", "--db", str(tmp_path / FILE_NAME), "--string", "S1",
                  "--from", str(params["from"]), "--to", str(params["to"]), "--cells", "1-3",
                  "--resolution", params["resolution"]]  # fmt: skip
        for q in params["quantities"].split(","):
            common += ["--quantity", q]
        result = runner.invoke(build_cli(), [*common, "--format", "csv"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert _table(rows, raw) == want
        out = tmp_path / f"{params['resolution']}.parquet"
        result = runner.invoke(
            build_cli(), [*common, "--format", "parquet", "-o", str(out)], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert _table(pq.read_table(out).to_pylist(), raw) == want


def test_history_info_command(tmp_path: Path) -> None:
    rng = random.Random(12)
    with service(tmp_path) as svc:
        write_all(svc, "S1", [reading_at(T0 + i, rng) for i in range(1300)])
    result = CliRunner().invoke(build_cli(), ["history", "info", "--db", str(tmp_path / FILE_NAME)])
    assert result.exit_code == 0, result.output
    assert "strings: S1" in result.output
    assert "raw" in result.output and "minute" in result.output and "hour" in result.output
    missing = CliRunner().invoke(build_cli(), ["history", "info", "--db", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no history at" in missing.output


def test_parquet_export_says_when_pyarrow_is_missing(tmp_path: Path, monkeypatch) -> None:
    import sys

    rng = random.Random(13)
    with service(tmp_path) as svc:
        write_all(svc, "S1", [reading_at(T0 + i, rng) for i in range(20)])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    result = CliRunner().invoke(
        build_cli(),
        ["history", "export", "--db", str(tmp_path / FILE_NAME), "--from", str(T0),
         "--to", str(T0 + 20), "--format", "parquet", "-o", str(tmp_path / "x.parquet")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Parquet export needs pyarrow: pip install 'btms-gateway[parquet]'" in result.output
