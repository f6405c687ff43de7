"""Crash safety: kill -9 of the gateway process during alarm bursts and
config reloads, again and again; the event log must come through each time.

The gateway (``btms-gateway run``, web + jsonl plugins, alarm engine on)
polls simulators in another process while a burst driver pushes random
groups of cells over and back under the cell-voltage limit (on/off delays 0,
so every change is an event). At a random moment it is killed with SIGKILL.
Every 5th round is a "config reload": there is no live reload command, so a
reload is a restart with a changed config (poll interval and the SNMP plugin
toggled), and the kill lands at a random moment of that start-up.

After each kill, with sqlite3 directly (not the project's code):
* ``PRAGMA integrity_check`` is ok;
* event seq numbers are unique and contiguous (no committed event lost or
  doubled; AUTOINCREMENT keeps them growing);
* every event the jsonl plugin received (it is handed events after commit,
  written line-buffered so a kill keeps them) is in the log, exactly once;
* the ``active`` table agrees with the events (last event RAISED <=> active).
After the restart (the burst driver paused, so the device is unchanged):
* every alarm active at the kill is served as active by REST /api/alarms,
* none of them is raised again.

    python bench/crash.py --rounds 50
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_record
from scale.plant import Ports, bus_spec, gateway_config, strings_of
from scale.procs import GatewayProcess, SimRunner, get_json

HIGH, NORMAL = 2.50, 2.25  # cell volts: over and under the 2.40 V limit (2V blocks)


class Bursts(threading.Thread):
    """Pushes random groups of cells over the limit and back, while not paused."""

    def __init__(
        self, runner: SimRunner, plant: list[tuple[str, str, int]], cells: int, seed: int
    ) -> None:
        super().__init__(daemon=True)
        self.runner, self.plant, self.cells = runner, plant, cells
        self.rng = random.Random(seed)
        self.running = threading.Event()
        self.stop = threading.Event()
        self.idle = threading.Event()
        self.changes = 0

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.running.wait(0.1):
                self.idle.set()
                continue
            self.idle.clear()
            _name, bus, slave = self.rng.choice(self.plant)
            group = self.rng.sample(
                range(1, self.cells + 1), self.rng.randrange(1, self.cells // 2)
            )
            volts = HIGH if self.rng.random() < 0.5 else NORMAL
            self.runner.call(
                op="set_cells", bus=bus, slave=slave, cells=group, values={"voltage_v": volts}
            )
            self.changes += len(group)
            time.sleep(self.rng.uniform(0.05, 0.4))

    def pause(self) -> None:
        self.running.clear()
        self.idle.wait(2)


def read_log(path: Path) -> dict[str, Any]:
    """The log as sqlite3 sees it (read-only, no project code)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        events = db.execute("SELECT seq, kind, alarm_id FROM events ORDER BY seq").fetchall()
        active = {r[0] for r in db.execute("SELECT alarm_id FROM active")}
    finally:
        db.close()
    return {"integrity": integrity, "events": events, "active": active}


def jsonl_events(path: Path) -> list[tuple[int, str, str]]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill (only ever the last one)
        if rec.get("type") == "alarm":
            e = rec["event"]
            out.append((e["seq"], e["kind"], e["alarm_id"]))
    return out


def check_after_kill(log: dict[str, Any], seen: list[tuple[int, str, str]]) -> list[str]:
    bad = []
    if log["integrity"] != "ok":
        bad.append(f"integrity_check: {log['integrity']}")
    seqs = [s for s, _, _ in log["events"]]
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False:
        bad.append("event seq numbers not contiguous")
    if len(set(seqs)) != len(seqs):
        bad.append("duplicate seq")
    in_log = {(s, k, a) for s, k, a in log["events"]}
    missing = [e for e in seen if e not in in_log]
    if missing:
        bad.append(f"{len(missing)} events the plugin saw are not in the log: {missing[:3]}")
    last: dict[str, str] = {}
    for _s, kind, alarm in log["events"]:
        if kind != "acknowledged":
            last[alarm] = kind
    should = {a for a, k in last.items() if k == "raised"}
    if should != log["active"]:
        bad.append(f"active table disagrees with events: {len(should ^ log['active'])} alarms")
    return bad


def check_after_restart(
    before: dict[str, Any], now: dict[str, Any], rest_active: set[str]
) -> list[str]:
    bad = []
    top = before["events"][-1][0] if before["events"] else 0
    new = [(s, k, a) for s, k, a in now["events"] if s > top]
    cleared: set[str] = set()
    for _s, kind, alarm in new:
        if kind == "cleared":
            cleared.add(alarm)
        elif kind == "raised" and alarm in before["active"] and alarm not in cleared:
            bad.append(f"{alarm} raised again after restart")
    lost = before["active"] - cleared - rest_active
    if lost:
        bad.append(f"{len(lost)} active alarms not restored (REST), e.g. {sorted(lost)[:3]}")
    return bad


def wait_ready(gw: GatewayProcess, web: int, timeout: float = 60.0) -> None:
    gw.wait_http(web, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plant = get_json(f"http://127.0.0.1:{web}/api/plant")
        if all(s["quality"] == "good" for s in plant["strings"]):
            return
        time.sleep(0.1)
    raise TimeoutError("strings not GOOD after restart")


def run(
    rounds: int = 50, strings: int = 4, cells: int = 60, seed: int = 11, log: Any = print
) -> dict[str, Any]:
    rng = random.Random(seed)
    spec = bus_spec(strings, cells, 115200, 0.5, 0, frozen=True)
    plant = strings_of(spec)
    workdir = tempfile.mkdtemp(prefix="btms-crash-")
    runner = SimRunner(spec)
    bursts = Bursts(runner, plant, cells, seed)
    bursts.start()
    ports = Ports.free()
    jsonl = Path(workdir) / "events.jsonl"
    db = Path(workdir) / "events.sqlite"
    problems: list[str] = []
    stats = {
        "kills": 0,
        "reloads": 0,
        "killed_in_startup": 0,
        "events": 0,
        "max_active": 0,
        "seen_by_plugin": 0,
        "restarts_checked": 0,
    }
    before: dict[str, Any] | None = None
    gw: GatewayProcess | None = None
    try:
        for i in range(rounds):
            reload = i % 5 == 4
            plugins = ("web", "snmp") if reload and (i // 5) % 2 else ("web",)
            interval = 0.5 if (i // 5) % 2 == 0 else 0.7
            config = gateway_config(
                spec,
                runner.where,
                ports,
                workdir,
                interval,
                ups=2,
                plugins=plugins,
                extra={"jsonl": {"path": str(jsonl)}},
            )
            config["alarms"] = {
                "startup_grace_s": 3600.0,
                "rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}},
            }
            jsonl.unlink(missing_ok=True)  # what this run's plugin sees
            gw = GatewayProcess(config, workdir)
            if reload and rng.random() < 0.5:  # killed somewhere in the start-up
                time.sleep(rng.uniform(0.0, 2.0))
                stats["killed_in_startup"] += 1
            else:
                wait_ready(gw, ports.web)
                if before is not None:
                    time.sleep(1.5)  # a few polls with the device unchanged
                    rest = {
                        a["alarm_id"] for a in get_json(f"http://127.0.0.1:{ports.web}/api/alarms")
                    }
                    problems += [
                        f"round {i}: {p}" for p in check_after_restart(before, read_log(db), rest)
                    ]
                    stats["restarts_checked"] += 1
                bursts.running.set()
                time.sleep(rng.uniform(0.3, 3.0))
            gw.kill9()
            bursts.pause()
            gw.stop()
            stats["kills"] += 1
            stats["reloads"] += reload
            if not db.exists():
                continue
            now = read_log(db)
            seen = jsonl_events(jsonl)
            stats["seen_by_plugin"] += len(seen)
            problems += [f"round {i}: {p}" for p in check_after_kill(now, seen)]
            stats["events"] = len(now["events"])
            stats["max_active"] = max(stats["max_active"], len(now["active"]))
            before = now
            log(
                f"round {i + 1}/{rounds}: {len(now['events'])} events, {len(now['active'])} active"
                f"{' (reload)' if reload else ''}; problems so far {len(problems)}"
            )
    finally:
        if gw is not None:  # a failed round must not leave a gateway running
            gw.kill9()
            gw.stop()
        bursts.stop.set()
        runner.close()
    return {"problems": problems, "stats": stats, "workdir": workdir, "changes": bursts.changes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    r = run(a.rounds, seed=a.seed)
    s = r["stats"]
    print(
        f"\nkill -9 rounds: {s['kills']} ({s['reloads']} config reloads, {s['killed_in_startup']}"
        f" killed during start-up); events in the log: {s['events']}; most alarms active at a"
        f" kill: {s['max_active']}; cell changes driven: {r['changes']}; events the jsonl plugin"
        f" saw (all checked in the log): {s['seen_by_plugin']}; restarts checked for"
        f" restored/not re-raised alarms: {s['restarts_checked']}"
    )
    print(f"problems: {len(r['problems'])}")
    run_record.add(stats=s, cell_changes=r["changes"], problems=r["problems"])
    for p in r["problems"][:20]:
        print("FAILED:", p)
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(run_record.recorded("crash", main))
