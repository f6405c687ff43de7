"""kill -9 during a burst of alarm events: nothing committed is lost or doubled,
the file is intact, and a restart restores the active alarms without raising
them again. The writer is a real child process killed with SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from btms_gateway.core.alarm_types import EventKind
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import Quality
from btms_gateway.kit import synthetic as sy

ROUNDS = 6
SETTINGS = {"rules": {"cell_voltage_high": {"on_delay_s": 0, "off_delay_s": 0}}}

# The child raises and clears a shifting third of 120 cells on every reading and
# prints "seq kind alarm_id" for each event emit() receives, i.e. after commit.
CHILD = """
import sys
from btms_gateway.kit import synthetic as sy
from btms_gateway.core.alarms.config import AlarmsSection
from btms_gateway.core.alarms.engine import AlarmEngine
from btms_gateway.core.alarms.eventlog import EventLog
from btms_gateway.core.model import Quality

path, start, sync = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def emit(e, active):
    sys.stdout.write(f"{e.seq} {e.kind.value} {e.alarm_id}\\n")
    sys.stdout.flush()
engine = AlarmEngine(
    AlarmsSection.model_validate(SETTINGS), EventLog(path, synchronous=sync), emit
)
plant = sy.plant(sy.string("A", None, quality=Quality.OFFLINE))
engine.restore(plant)
print("ready", flush=True)
k = 0
while True:
    k += 1
    high = {i: 2.5 for i in range(1, 121) if (i + k) % 3 == 0}
    s = sy.string("A", sy.reading(start + k, sy.cells(v=high)))
    plant = sy.with_string(plant, s)
    engine.on_string(s, plant)
""".replace("SETTINGS", repr(SETTINGS))


def run_child_and_kill(path: Path, start: float, sync: str, rng: random.Random) -> list[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(start), sync],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first.strip() == "ready", first + (child.stderr.read() if child.stderr else "")
    time.sleep(rng.uniform(0.05, 0.6))  # the random moment of the crash, not a wait
    os.kill(child.pid, signal.SIGKILL)
    out, _err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return [line for line in out.splitlines() if line]


@pytest.mark.slow  # ~5 s on a shared 2-core box
@pytest.mark.parametrize("sync", ["full", "normal"])
def test_kill9_during_a_burst_loses_and_doubles_nothing(tmp_path: Path, sync: str):
    """NORMAL is only weaker against power loss, not against a killed process."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "events.sqlite"
    reported: dict[int, tuple[str, str]] = {}
    for rnd in range(ROUNDS):
        # event times near now: retention (365 days by default) must not touch them
        lines = run_child_and_kill(path, time.time() + 1000.0 * rnd, sync, rng)
        assert lines, f"seed {seed}: the child committed nothing before the kill"
        for line in lines:
            seq, kind, alarm_id = line.split(" ")
            reported[int(seq)] = (kind, alarm_id)

        log = EventLog(path)
        try:
            assert log.integrity_ok(), f"seed {seed} round {rnd}"
            stored = {e.seq: (e.kind.value, e.alarm_id) for e in log.events()}
            rows = log.read("SELECT seq, COUNT(*) FROM events GROUP BY seq HAVING COUNT(*) > 1")
            assert rows == []
            missing = sorted(s for s, v in reported.items() if stored.get(s) != v)
            assert not missing, (
                f"seed {seed} round {rnd}: {len(missing)} committed events lost, "
                f"first seqs {missing[:5]}"
            )
            # the active table agrees with the history: active <=> last event RAISED
            last: dict[str, str] = {}
            for _seq, (kind, alarm_id) in sorted(stored.items()):
                last[alarm_id] = kind
            expected_active = {a for a, k in last.items() if k == "raised"}
            active_ids = {a.alarm_id for a in log.active()}
            assert active_ids == expected_active, f"seed {seed} round {rnd}"
            # restart: the restored alarms are not raised again
            events = sy.Emitted()
            engine = AlarmEngine(AlarmsSection.model_validate(SETTINGS), log, events)
            plant = sy.plant(sy.string("A", None, quality=Quality.OFFLINE))
            engine.restore(plant)
            assert {a.alarm_id for a in engine.active()} == active_ids
            assert events == []
            every = {i: 2.5 for i in range(1, 121)}
            s = sy.string("A", sy.reading(time.time() + 1e5, sy.cells(v=every)))
            engine.on_string(s, sy.with_string(plant, s))
            raised = {e.alarm_id for e in events if e.kind is EventKind.RAISED}
            assert raised.isdisjoint(active_ids)
            assert raised | active_ids == {f"cell_voltage_high:A:{i}" for i in range(1, 121)}
            assert min(e.seq for e in events) > max(stored)
            for e in events:
                reported[e.seq] = (e.kind.value, e.alarm_id)
        finally:
            log.close()
