"""The analytics in a running gateway on the BM-SM simulator over a real
pseudo-terminal: a cell installed weak flagged against the median, a
discharge the simulator runs captured, announced in the event log, listed in
REST and the CLI, its report downloaded; a baseline re-taken by a logged-in
operator (REST) and from the command line (the request inbox), each recorded
in the event log with who did it."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import aiohttp
import pytest
from btms_gateway.core.alarm_types import EventKind
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.cli import build_cli
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, plant_config
from click.testing import CliRunner
from conftest import waiting_gateway_config
from web_support import PASSWORD, USERS, get_json

FAST = {"on_delay_s": 0.5, "off_delay_s": 0.5}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _harness(tmp_path: Path) -> GatewayHarness:
    config = plant_config(strings=1, ups=1, plugins={"web": {"port": 0, "users": USERS}})
    config["gateway"]["data_dir"] = str(tmp_path)
    config["alarms"] = {
        "baseline_readings": 2,
        "rules": {"cell_resistance_median_warning": FAST, "cell_resistance_warning": FAST},
    }
    config["analytics"] = {"start_delay_s": 1.0, "end_delay_s": 1.5, "rated_ah": 100}
    return GatewayHarness(config, simulate=True, alarms=True, cells=12)


def _notes(tmp_path: Path, rule: str) -> list:  # type: ignore[type-arg]
    log = EventLog(tmp_path / "events.sqlite")
    try:
        return [e for e in log.events(kinds=["note"]) if e.rule == rule]
    finally:
        log.close()


@pytest.mark.slow  # ~12 s on a shared 2-core box
async def test_weak_cell_discharge_reports_and_baseline_retake(tmp_path: Path) -> None:
    async with _harness(tmp_path) as h:
        await h.wait_quality(Quality.GOOD)
        gw = h.gateway
        sim, slave = h.sim_for("S1")
        weak = sim.model(slave).weak_cell + 1
        from btms_gateway.plugins.web.plugin import service

        url = service(gw).url
        aid = f"cell_resistance_median_warning:S1:{weak}"
        await h.wait_until(
            lambda: {a.alarm_id for a in gw.alarms.active()} >= {aid},
            timeout=20,
            what="the weak cell flagged against the median",
        )
        flagged = [a.path.cell for a in gw.alarms.active() if a.rule.startswith("cell_resistance")]
        assert flagged == [weak]  # against its own baseline it is not
        status, res = await get_json(url + "/api/strings/S1/resistance")
        assert status == 200
        assert [c["cell"] for c in res["cells"] if c["status"] != "ok"] == [weak]

        # a discharge the simulator runs: captured, announced, listed
        sim.start_discharge(slave, 60.0, duration_s=6.0)
        await h.wait_until(
            lambda: gw.store.string("S1").derived.get("discharging") == 1.0,
            timeout=15,
            what="the discharge to be captured",
        )
        live = gw.store.string("S1").derived
        assert live["runtime_remaining_s"] > 0 and live["dod_pct"] is not None
        await h.wait_until(
            lambda: gw.analytics.store.list("S1"), timeout=30, what="the discharge to end"
        )
        (summary,) = gw.analytics.store.list("S1")
        assert summary.ah > 0 and len(summary.cells) == 12
        notes = [n.message for n in _notes(tmp_path, "discharge")]
        assert notes[0].startswith("string S1: discharge started")
        assert notes[1].startswith("string S1: discharge ended")
        assert f"(discharge {summary.id})" in notes[1]
        status, listed = await get_json(url + "/api/discharges?string=S1")
        assert status == 200 and [d["id"] for d in listed["discharges"]] == [summary.id]
        status, one = await get_json(url + f"/api/discharges/{summary.id}")
        assert status == 200 and one["weakest"] == summary.weakest and len(one["cells"]) == 12
        assert (await get_json(url + "/api/discharges/999"))[0] == 404

        # the reports, downloaded from the dashboard's links
        status, kinds = await get_json(url + "/api/reports")
        assert {"discharge", "health"} <= set(kinds["kinds"])
        async with aiohttp.ClientSession() as s:
            async with s.get(url + f"/api/reports/discharge/{summary.id}?format=pdf") as r:
                assert r.status == 200 and r.content_type == "application/pdf"
                assert (await r.read()).startswith(b"%PDF")
                assert "attachment" in r.headers["Content-Disposition"]
            async with s.get(url + "/api/reports/health/S1?format=html") as r:
                assert r.status == 200 and r.content_type == "text/html"
                assert "Resistance health report" in await r.text()
            async with s.get(url + "/api/reports/discharge/999?format=pdf") as r:
                assert r.status == 404

        # an operator replaces the weak cell and re-takes its baseline
        post = url + "/api/strings/S1/baseline"
        async with aiohttp.ClientSession() as s:
            async with s.post(post, json={"cell": weak}) as r:
                assert r.status == 401
            async with s.post(post, json={"cell": weak}, headers=_basic("tech", PASSWORD)) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
        assert body["by"] == "tech" and body["cell"] == weak
        (note,) = _notes(tmp_path, "baseline")
        assert note.by == "tech" and note.path.cell == weak and note.kind is EventKind.NOTE
        assert "re-taken by tech" in note.message
        rows = {r.cell: r for r in gw.alarms.baseline_rows("S1")}
        assert rows[weak].source == "set"

        # the command line: the same records, and a re-take through the request inbox
        cfg = waiting_gateway_config(tmp_path, data_dir=tmp_path)
        cli = CliRunner()
        out = cli.invoke(build_cli(), ["discharges", "list", "-c", str(cfg)])
        assert out.exit_code == 0 and f"{summary.id:>5} S1" in out.output
        out = cli.invoke(build_cli(), ["discharges", "show", str(summary.id), "-c", str(cfg)])
        assert out.exit_code == 0 and "rank cell" in out.output
        # the resistance view from the records: the weak cell, re-based after its
        # replacement, still stands out against the median
        out = cli.invoke(build_cli(), ["resistance", "S1", "-c", str(cfg), "--json"])
        assert out.exit_code == 0, out.output
        cells = {c["cell"]: c for c in json.loads(out.output)["cells"]}
        assert [n for n, c in cells.items() if c["status"] in ("warning", "alarm")] == [weak]
        assert cells[weak]["baseline_source"] == "set" and cells[weak]["vs_median_pct"] > 25
        argv = ["alarms", "baseline", "set", "S1", "--cell", "3", "--by", "bob", "--db",
                str(tmp_path / "events.sqlite")]  # fmt: skip
        out = await asyncio.to_thread(cli.invoke, build_cli(), argv)
        assert out.exit_code == 0, out.output
        assert [n.by for n in _notes(tmp_path, "baseline")] == ["tech", "bob"]
        out = cli.invoke(
            build_cli(),
            ["report", "discharge", str(summary.id), "-c", str(cfg), "-o", str(tmp_path / "r")],
        )
        assert out.exit_code == 0, out.output
        assert {p.suffix for p in (tmp_path / "r").iterdir()} == {".html", ".pdf"}
