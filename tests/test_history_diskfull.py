"""A full disk pauses history (log line, state, metric) while acquisition and
the web plugin carry on, and history resumes by itself when space returns.

The data directory is a small tmpfs mounted for the test (the tests run as
root, as CI does); a filler file takes the space, SQLite's write fails with
SQLITE_FULL, history pauses; the filler goes, history resumes."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from btms_gateway.core.history import HistorySection
from btms_gateway.core.history.store import FILE_NAME, HistoryStore
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, plant_config
from fs_support import fill_but
from web_support import get_json


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the history disk-full test needs root): {done.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow  # ~7 s on a shared 2-core box
async def test_disk_full_pauses_history_and_it_resumes_by_itself(tmp_path: Path) -> None:
    with small_disk(tmp_path / "small", "8m") as disk:
        config = plant_config(strings=2, ups=1, data_dir=str(disk),
                              plugins={"web": {"port": 0}})  # fmt: skip
        config["history"] = {"commit_interval_s": 0.3, "min_free_mb": 0}
        async with GatewayHarness(config, simulate=True, cells=120, frozen=False) as h:
            from btms_gateway.plugins.web.plugin import service

            web = service(h.gateway)
            history = h.gateway.history
            await h.wait_quality(Quality.GOOD)
            await h.wait_until(lambda: history.status().counters["recorded"] >= 4, what="records")
            filler = fill_but(disk, leave=16 * 1024)
            await h.wait_until(lambda: history.status().state == "paused", 30, what="a pause")
            assert "disk full" in history.status().reason
            # acquisition and the web plugin carry on while history is paused
            before = h.gateway.store.string("S1").reading.read_at
            await h.wait_until(
                lambda: h.gateway.store.string("S1").reading.read_at > before + 1,
                what="polling to go on",
            )
            status, body = await get_json(web.url + "/api/strings/S1?cells=false")
            assert status == 200 and body["quality"] == "good"
            status, info = await get_json(web.url + "/api/history")
            assert info["status"]["state"] == "paused"
            async with __import__("aiohttp").ClientSession() as s, s.get(web.url + "/metrics") as r:
                assert 'btms_history_state{state="paused"} 1.0' in await r.text()
            await h.wait_until(
                lambda: history.status().counters["dropped_paused"] > 0, what="drops counted"
            )
            recorded = history.status().counters["recorded"]
            filler.unlink()  # space returns
            await h.wait_until(lambda: history.status().state == "recording", 30, what="resume")
            await h.wait_until(
                lambda: history.status().counters["recorded"] > recorded + 2, what="recording"
            )
            assert history.status().counters["pauses"] == 1
            assert history.sync()
            s1 = history.queries.series("S1", ["voltage_v"], 0, 2e9, resolution="raw")
            assert s1.t.max() > before + 1  # readings after the pause are on disk
        store = HistoryStore(disk / FILE_NAME, HistorySection())
        store.open()  # the integrity check passes
        store.close()
