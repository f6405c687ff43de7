"""The dashboard's history panel in a real headless Chromium, on a gateway fed
by the BM-SM simulator, with three days of history recorded before it started:
the string's voltage, current and SOC, one cell's trend and the resistance
heatmaps are drawn with the vendored uPlot (no CDN), ranges switch, and the
cell installed weak stands out against the string median.

Set BTMS_HISTORY_SCREENSHOT=docs/screenshots/dashboard-history.png to refresh
the screenshot in the docs from this run. Run with -s to see the draw times.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from browser_support import TIMEOUT_MS, chromium
from btms_gateway.core.history import HistorySection, HistoryService
from btms_gateway.core.model import Quality, StringState
from btms_gateway.kit.testing import GatewayHarness, plant_config
from playwright.async_api import expect

DAYS = 3
STEP_S = 60


def _fill(data_dir: Path, sim: object, now: float) -> None:
    """Three days of S1 ending a few minutes ago: float charge, a 2-hour
    discharge a day ago, and cell 5's resistance creeping up."""
    truth = sim.expected(1)  # type: ignore[attr-defined]
    svc = HistoryService(HistorySection(), data_dir).start()
    start = now - DAYS * 86400
    n = DAYS * 86400 // STEP_S
    for i in range(n):
        t = start + i * STEP_S
        into = t - (now - 86400)
        discharging = 0 <= into < 7200
        soc = max(60.0, 100 - into / 180) if discharging else 100.0
        cells = tuple(
            replace(
                c,
                voltage_v=round(
                    (2.02 - into / 7200 * 0.12 if discharging else 2.25)
                    + 0.004 * math.sin(i / 50 + c.index),
                    3,
                ),
                resistance_mohm=round(
                    c.resistance_mohm * (1 + 0.3 * i / n if c.index == 5 else 1), 3
                ),
                temperature_c=round(24 + 1.5 * math.sin(2 * math.pi * i * STEP_S / 86400), 1),
            )
            for c in truth.cells
        )
        svc.write("S1", replace(
            truth, read_at=t, cells=cells, voltage_v=round(sum(c.voltage_v for c in cells), 2),
            current_a=-42.0 if discharging else 0.8, soc_pct=soc,
            state=StringState.DISCHARGE if discharging else StringState.FLOAT_CHARGE))  # fmt: skip
    assert svc.sync(120)
    svc.close()


@pytest.mark.slow  # ~7 s on a shared 2-core box
async def test_history_panel_draws_trends_and_heatmaps(tmp_path: Path) -> None:
    config = plant_config(strings=2, ups=1, data_dir=str(tmp_path),
                          plugins={"web": {"port": 0, "live_interval_s": 0.2}})  # fmt: skip
    config["alarms"] = {}
    h = GatewayHarness(config, simulate=True, alarms=True, cells={"S1": 24, "S2": 12})
    sim = h.sim
    weak = sim.model(1).weak_cell + 1  # the simulator's cell installed 35 % high
    _fill(tmp_path, sim, time.time() - 300)
    async with h, chromium(tmp_path) as page:
        from btms_gateway.plugins.web.plugin import service

        svc = service(h.gateway)
        await h.wait_quality(Quality.GOOD)
        await page.goto(svc.url + "/#S1/voltage")
        trends = page.locator("#trends")
        await expect(trends).to_have_attribute("data-drawn", "1", timeout=TIMEOUT_MS)
        # 24 h (the default): minute roll-ups, uPlot canvases in all four charts
        for box in ("#trend-voltage_v", "#trend-current_a", "#trend-soc_pct", "#trend-cell"):
            await expect(page.locator(f"{box} canvas").first).to_be_visible()
        await expect(page.locator("#trend-note")).to_contain_text("minute roll-ups")
        await expect(page.locator("#trend-state")).to_have_text("History recording")
        median = page.locator("#heat-median")
        await expect(median).to_have_attribute("data-cells", "24")
        await expect(median).to_have_attribute("data-worst-cell", str(weak))
        assert float(await median.get_attribute("data-worst-pct")) > 25
        # the range switches: 7 days shows the discharge a day ago in the current chart
        await page.locator('#trend-ranges [data-range="7d"]').click()
        await expect(trends).to_have_attribute("data-drawn", "2", timeout=TIMEOUT_MS)
        # one cell's resistance: cell 5 crept up by 30 % over the three days
        await page.locator('#trend-cellq [data-cellq="resistance"]').click()
        await expect(trends).to_have_attribute("data-drawn", "3", timeout=TIMEOUT_MS)
        await page.fill("#trend-cell-no", "5")
        await page.locator("#trend-cell-no").dispatch_event("change")
        await expect(trends).to_have_attribute("data-drawn", "4", timeout=TIMEOUT_MS)
        await expect(page.locator("#trend-cell .u-legend")).to_contain_text("Cell 5 resistance")
        timings = await page.evaluate("Trends.timings()")
        drawn = ", ".join(f"{t:.0f}" for t in timings)
        print(f"\nhistory panel: data arrived -> charts drawn: {drawn} ms")
        await asyncio.sleep(0.3)  # cosmetic: the last paint before the picture
        target = Path(os.environ.get("BTMS_HISTORY_SCREENSHOT") or tmp_path / "history.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(target), full_page=True)
        assert target.stat().st_size > 20_000
