"""kill -9 during writes: the history file opens, passes its integrity check
and holds every reading handed to the writer up to the last commit (about
``commit_interval_s`` before the kill), across several kills in a row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from btms_gateway.core.history import HistorySection
from btms_gateway.core.history.query import HistoryQueries
from btms_gateway.core.history.store import FILE_NAME, HistoryStore
from history_support import T0

CHILD = Path(__file__).with_name("history_writer_child.py")
RATE = 40.0  # readings a second (simulated seconds apart), 120 cells each
COMMIT_S = 0.5


def _run_and_kill(data_dir: Path, first: int, seconds: float) -> tuple[dict[int, float], float]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(first), str(RATE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    written: dict[int, float] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    started = None
    for line in proc.stdout:
        i, at = line.split()
        written[int(i)] = float(at)
        started = started or time.monotonic()
        if time.monotonic() - started >= seconds or time.monotonic() > deadline:
            break
    killed_at = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # what the child wrote before the kill, still in the pipe
        i, at = line.split()
        written[int(i)] = float(at)
    return written, killed_at


@pytest.mark.slow  # ~11 s: kill -9 rounds
def test_kill9_loses_at_most_the_last_commit_and_never_corrupts(tmp_path: Path) -> None:
    first = 0
    windows = []
    for _round in range(3):
        # the kill at a different phase of the commit cadence each round
        written, killed_at = _run_and_kill(tmp_path, first, seconds=2.5 + 0.17 * _round)
        store = HistoryStore(tmp_path / FILE_NAME, HistorySection())
        store.open()  # raises StoreDamaged if the integrity check fails
        store.close()
        s = HistoryQueries(tmp_path / FILE_NAME).series(
            "S1", ["voltage_v"], T0, T0 + 10**6, resolution="raw"
        )
        got = np.round(s.t - T0).astype(int)
        assert np.all(np.diff(got) == 1)  # in order, no hole, nothing twice
        newest = int(got.max())
        assert newest >= first  # this round committed something
        lost = [i for i in written if i > newest]
        # every reading written more than a commit interval (plus slack for a
        # loaded machine) before the kill is on disk
        window = killed_at - min((written[i] for i in lost), default=killed_at)
        windows.append(window)
        assert window <= COMMIT_S + 1.5, (window, len(lost))
        first = newest + 1
    print(
        f"readings lost to kill -9 covered {max(windows):.2f} s at most (commit every {COMMIT_S} s)"
    )
