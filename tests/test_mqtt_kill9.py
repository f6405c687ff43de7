"""Store-and-forward across a kill -9: a ``btms-gateway run`` process polls
simulators (another process) while its broker is down, buffers the changes
and an alarm event on disk, and is killed with SIGKILL. Restarted with the
broker up, it replays every record it had buffered, in order, as
historical, to a Sparkplug host we did not write (pysparkplug); its bdSeq
goes on from where the killed process left it."""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from mqtt_peers import Mosquitto, SparkplugHost
from sparkplug_view import HostView, f32

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from scale.plant import Ports, bus_spec, gateway_config
from scale.procs import GatewayProcess, SimRunner

pytestmark = pytest.mark.peer

NODE = "kill9"


def buffered(db: Path) -> list[tuple[int, str]]:
    """(rid, kind) of what waits in the buffer, read with sqlite3 (no project code)."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT rid, kind FROM queue ORDER BY rid").fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        return []
    finally:
        con.close()


def bdseq(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT value FROM meta WHERE key = 'bdseq'").fetchone()[0])
    finally:
        con.close()


@pytest.mark.slow  # ~25 s: kill -9 rounds
def test_buffer_survives_kill9_and_replays_in_order(tmp_path: Path) -> None:
    workdir = tempfile.mkdtemp(prefix="btms-mqtt-kill9-")
    broker = Mosquitto(tmp_path / "broker")  # made, not started: the uplink is down
    spec = bus_spec(2, 12, 115200, 0.5, 0, frozen=True)
    runner = SimRunner(spec)
    section: dict[str, Any] = broker.plugin_section(
        node_id=NODE, deadband={"cell_voltage_v": 0.0}, sparkplug={"group_id": "k9"}
    )
    config = gateway_config(spec, runner.where, Ports.free(), workdir, 0.5, ups=1, plugins=(),
                            extra={"mqtt": section})  # fmt: skip
    config["alarms"] = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}
    db = Path(workdir) / "mqtt" / "buffer.sqlite"
    gw = GatewayProcess(config, workdir)
    host = None
    try:
        set_values = [2.211, 2.212, 2.213, 2.214]
        wait_for(lambda: len(buffered(db)) >= 2, 30, "the first buffered readings")
        for v in set_values:
            runner.call(op="set_cells", bus="b1", slave=1, cells=[5], values={"voltage_v": v})
            n = len(buffered(db))
            wait_for(lambda n=n: len(buffered(db)) > n, 10, "the change buffered")
        runner.call(op="set_cells", bus="b1", slave=1, cells=[6], values={"voltage_v": 2.5})
        wait_for(lambda: any(k == "e" for _, k in buffered(db)), 10, "the alarm event buffered")
        gw.kill9()
        at_kill = buffered(db)
        assert [r for r, _ in at_kill] == sorted(r for r, _ in at_kill)
        before = bdseq(db)

        broker.start()
        host = SparkplugHost(broker, "k9")
        gw = GatewayProcess(config, workdir)
        wait_for(lambda: host.of_type("NBIRTH"), 30, "the restarted gateway's NBIRTH")
        wait_for(lambda: not buffered(db), 30, "the replay to drain the buffer")
        time.sleep(0.5)
        view = HostView.build(host.messages, NODE)
        assert view.seq_problems() == []
        assert view.sessions[0].bdseq == (before + 1) % 256  # counted on across the kill
        hist_msgs = [
            m for m in host.of_type("DDATA")
            if any(x["is_historical"] for x in m["metrics"])
        ]  # fmt: skip
        # one historical message per buffered record (readings and the event), none lost
        assert len(hist_msgs) >= len(at_kill)
        cell5 = [v for d, n, _, v in view.historical if n == "Cells/005/Voltage"]
        cell5 = [v for v in cell5 if v in map(f32, set_values)]
        # in order; the last one twice at most (the restarted process's first,
        # full, report of the string was buffered too before it connected)
        assert [v for i, v in enumerate(cell5) if i == 0 or cell5[i - 1] != v] == [
            f32(v) for v in set_values
        ]
        events = [
            {x["name"]: x["value"] for x in m["metrics"]}
            for m in hist_msgs if m["device"] == "Alarms"
        ]  # fmt: skip
        assert [e["Event/Alarm Id"] for e in events] == ["cell_voltage_high:S1:6"]
        times = [t for d, n, t, _ in view.historical if d == "S1" and n != "Quality"]
        assert times == sorted(times)
    finally:
        gw.kill9()
        if host is not None:
            host.close()
        runner.close()
        broker.stop()
