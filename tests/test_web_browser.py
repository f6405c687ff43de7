"""The dashboard in a real headless Chromium (Debian's package, driven by
Playwright's Python API; no browser is downloaded), fed by the BM-SM
simulator through the real RTU poller: it loads, shows the strings and a cell
chart, follows a value changed in the simulator, shows the alarm the alarm
engine raises for it and acknowledges it after a login.

Set BTMS_WEB_SCREENSHOT=docs/screenshots/dashboard.png to refresh the
screenshot in the docs from this run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest
from browser_support import TIMEOUT_MS, chromium
from btms_gateway.core.model import Quality, StringState
from btms_gateway.kit.testing import GatewayHarness
from playwright.async_api import Page, expect
from web_support import ALARMS, PASSWORD, USERS, sim_gateway

CELLS = {1: 24, 2: 12, 3: 24, 4: 12}  # UPS1 = S1 + S3, UPS2 = S2 + S4


@pytest.mark.slow  # ~5 s on a shared 2-core box
async def test_dashboard_live_chart_alarm_and_acknowledge(tmp_path: Path) -> None:
    web = {"users": USERS, "live_interval_s": 0.1}
    async with (
        sim_gateway(tmp_path, CELLS, web=web, alarms=ALARMS) as (gw, svc, sim),
        chromium(tmp_path) as page,
    ):
        # two strings discharging, as in a mains failure
        sim.set_string(1, state=int(StringState.DISCHARGE), current_a=-48.6, soc_pct=91.0)
        sim.set_string(3, state=int(StringState.DISCHARGE), current_a=-47.9, soc_pct=92.0)
        await GatewayHarness.wait_until(
            lambda: all(s.quality is Quality.GOOD for s in gw.store.snapshot.strings.values()),
            20,
            what="every simulated string GOOD",
        )
        await page.goto(svc.url + "/#NOPE/voltage")  # a stale link: falls back to the first string
        # the UPS -> string tree and the chart of the chosen string
        await expect(page.locator(".srow")).to_have_count(4, timeout=TIMEOUT_MS)
        await expect(page.locator(".ups-name")).to_have_text(["UPS1", "UPS2"])
        await expect(page.locator("#conn")).to_have_text("Live")
        bars = page.locator("#chart rect.bar")
        await expect(bars).to_have_count(24, timeout=TIMEOUT_MS)
        await expect(page.locator("#s-title")).to_have_text("String S1")
        await expect(page.locator(".badge.b-state")).to_have_text("Discharge", timeout=TIMEOUT_MS)
        cell5 = page.locator('#chart rect[data-cell="5"]')
        first = sim.expected(1).cells[4].voltage_v
        await expect(cell5).to_have_attribute("data-value", str(first))

        # a value changes in the simulator: the page follows without a reload
        sim.set_cell(1, 5, voltage_v=2.301)
        await expect(cell5).to_have_attribute("data-value", "2.301", timeout=TIMEOUT_MS)
        volts = f"{sim.expected(1).voltage_v:.2f}"
        await expect(page.locator(".kpi .v").first).to_contain_text(volts, timeout=TIMEOUT_MS)

        # a cell goes over its limit in the simulator: the alarm engine raises,
        # the dashboard shows the alarm and marks the cell
        sim.set_cell(1, 9, voltage_v=2.468)
        row = page.locator('#alarms tr[data-alarm="cell_voltage_high:S1:9"]')
        await expect(row).to_be_visible(timeout=TIMEOUT_MS)
        await expect(row).to_contain_text("voltage high")
        await expect(page.locator('#chart rect[data-cell="9"]')).to_have_attribute(
            "data-state", "bad", timeout=TIMEOUT_MS
        )
        await expect(page.locator("#out-count")).to_contain_text("1 cell out of limits: 9")
        await expect(page.locator("#alarm-summary")).to_have_text(
            "1 active alarm (1 unacknowledged)"
        )
        await expect(page.locator("#events tbody tr").first).to_contain_text("raised")
        await expect(page.locator("#comm tbody tr.busrow")).to_contain_text("open")
        await page.locator('#tabs [data-metric="temperature"]').click()
        await expect(bars).to_have_count(24)
        await page.locator('#tabs [data-metric="voltage"]').click()
        await _screenshot(page, tmp_path)

        # acknowledging needs a login: the dialog asks, then the ack goes through
        await row.locator("button.ack").click()
        await expect(page.locator("#login-dlg")).to_be_visible()
        await page.fill("#login-user", "tech")
        await page.fill("#login-pass", PASSWORD)
        await page.locator("#login-form button[type=submit]").click()
        await expect(row).to_contain_text("ack: tech", timeout=TIMEOUT_MS)
        (alarm,) = gw.alarms.active()
        assert alarm.acknowledged and alarm.acknowledged_by == "tech"
        await expect(page.locator("#user")).to_have_text("Logged in as tech")

        # choosing another string switches the chart and the live stream
        await page.locator('.srow[data-string="S4"]').click()
        await expect(page.locator("#s-title")).to_have_text("String S4")
        await expect(bars).to_have_count(12, timeout=TIMEOUT_MS)
        await expect(page.locator(".badge.b-state")).to_have_text("Float charge")


async def _screenshot(page: Page, tmp_path: Path) -> None:
    await asyncio.sleep(0.3)  # cosmetic: let the last live update paint before the picture
    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    target = os.environ.get("BTMS_WEB_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


@pytest.mark.slow  # ~4 s on a shared 2-core box
async def test_the_dashboard_follows_hash_changes_and_back(tmp_path: Path) -> None:
    async with (
        sim_gateway(tmp_path, {1: 16, 2: 14, 3: 12}) as (gw, svc, _),
        chromium(tmp_path) as page,
    ):
        await GatewayHarness.wait_until(
            lambda: all(s.quality is Quality.GOOD for s in gw.store.snapshot.strings.values()),
            20,
            what="every simulated string GOOD",
        )
        title, bars = page.locator("#s-title"), page.locator("#chart rect.bar")
        await page.goto(svc.url + "/#S2/voltage")
        await expect(title).to_have_text("String S2", timeout=TIMEOUT_MS)
        await expect(bars).to_have_count(14, timeout=TIMEOUT_MS)
        # the hash changed in the open tab (a followed link, an edited address)
        await page.evaluate("location.hash = '#S3/temperature'")
        await expect(title).to_have_text("String S3", timeout=TIMEOUT_MS)
        await expect(bars).to_have_count(12, timeout=TIMEOUT_MS)
        await expect(page.locator("#tabs .tab.on")).to_have_attribute("data-metric", "temperature")
        # a click is a history entry: Back returns to the string before it
        await page.locator('.srow[data-string="S1"]').click()
        await expect(title).to_have_text("String S1", timeout=TIMEOUT_MS)
        await expect(page).to_have_url(svc.url + "/#S1/temperature")
        await page.go_back()
        await expect(title).to_have_text("String S3", timeout=TIMEOUT_MS)
        await page.go_back()
        await expect(title).to_have_text("String S2", timeout=TIMEOUT_MS)
        await expect(page.locator("#tabs .tab.on")).to_have_attribute("data-metric", "voltage")
        await page.go_forward()
        await expect(title).to_have_text("String S3", timeout=TIMEOUT_MS)
        await expect(bars).to_have_count(12, timeout=TIMEOUT_MS)


@pytest.mark.slow  # ~10 s on a shared 2-core box
async def test_a_discharge_on_the_dashboard_runtime_depth_and_its_report(tmp_path: Path) -> None:
    """While the simulator discharges S1 the string's KPIs show the remaining
    runtime and depth of discharge the gateway estimates; once it ends, the
    battery-health panel lists the discharge with its report links."""
    analytics = {"start_delay_s": 0.5, "end_delay_s": 0.5, "rated_ah": 100}
    async with (
        sim_gateway(tmp_path, {1: 12}, ups=1, analytics=analytics) as (gw, svc, sim),
        chromium(tmp_path) as page,
    ):
        sim.start_discharge(1, 200.0)
        derived = lambda: gw.store.string("S1").derived  # noqa: E731
        await GatewayHarness.wait_until(
            lambda: (derived().get("dod_pct") or 0) >= 0.5, 20, what="a depth of discharge"
        )
        await page.goto(svc.url + "/#S1/voltage")
        runtime = page.locator(".kpi", has_text="Runtime left").locator(".v")
        depth = page.locator(".kpi", has_text="Depth of discharge").locator(".v")
        await expect(runtime).to_have_text(re.compile(r"^\d+min$"), timeout=TIMEOUT_MS)
        shown = int((await runtime.inner_text()).removesuffix("min"))
        assert abs(shown - derived()["runtime_remaining_s"] / 60) <= 1
        await expect(depth).to_have_text(re.compile(r"^\d+%$"))
        assert abs(int((await depth.inner_text()).removesuffix("%")) - derived()["dod_pct"]) <= 1

        sim.stop_discharge(1)
        rows = page.locator("#discharges tbody tr")
        await expect(rows).to_have_count(1, timeout=TIMEOUT_MS)
        (summary,) = gw.analytics.store.list("S1")
        await expect(rows.locator("a", has_text="PDF")).to_have_attribute(
            "href", f"/api/reports/discharge/{summary.id}?format=pdf"
        )
        await expect(page.locator(".kpi", has_text="Runtime left")).to_have_count(0)
