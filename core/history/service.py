"""The history service: the gateway hands it every published string, its own
thread writes them to disk in batches.

``offer`` runs on the gateway's loop and never blocks: a GOOD reading that is
not the one offered last is put on a bounded queue (a full queue drops and
counts). The writer thread turns readings into integer rows, commits every
``commit_interval_s`` and closes periods into blocks and roll-ups. Its clock
is the data: the newest reading it accepted, so a test or a bench can write a
year of readings with their own timestamps in seconds.

Failure behaviour (docs/history.md): a reading older than the newest one
recorded for its string (a clock stepped back) is dropped and counted, so
nothing is reordered or overwritten; a full disk pauses history (log line,
status, metric) until space returns, while acquisition carries on; a file that
fails its integrity check is served read-only and never written.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..model import Quality, StringReading, StringSnapshot
from . import codec
from .config import HistorySection
from .query import HistoryQueries
from .store import FILE_NAME, HOUR, MINUTE, RAW, HistoryStore, StoreDamaged, is_disk_full

log = logging.getLogger("btms_gateway.history")

RETRY_S = 5.0  #: seconds between two attempts to resume after a full disk
MAINTAIN_MS = 60_000  #: retention and budget checks, in data time
LATE_LOG_S = 60.0
BATCH_PERIODS = 64  #: raw periods closed in one transaction at most


@dataclass
class _Series:
    """The writer's view of one string."""

    sid: int
    last_t: int = -1  #: newest raw time accepted (ms)
    closed: int = 0  #: raw periods before this are closed: older readings are late
    #: rows not committed yet: (times ms, int32 values, cells) chunks in time order
    pending: list[tuple[np.ndarray, np.ndarray, int]] = field(default_factory=list)
    late_logged: float = 0.0


@dataclass(frozen=True)
class HistoryStatus:
    """What the service is doing; ``state`` is recording, paused, read_only,
    starting or stopped."""

    state: str
    reason: str
    since: float
    counters: dict[str, int]
    queued: int
    bytes_used: int


@dataclass(frozen=True)
class _Rows:
    name: str
    t_ms: np.ndarray
    values: np.ndarray
    cells: int


class _Sync:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class HistoryService:
    """Owns the history file of one gateway: ``offer`` from the loop, queries
    through ``queries`` from any thread."""

    def __init__(self, settings: HistorySection, data_dir: Path) -> None:
        self.settings = settings
        self.path = Path(data_dir) / FILE_NAME
        self.store = HistoryStore(self.path, settings)
        self.queries = HistoryQueries(self.path, settings)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=settings.queue_readings)
        #: wakes the writer before its next commit: a queue filling up, sync, stop
        self._wake = threading.Event()
        self._wake_at = settings.queue_readings // 4
        self._offered: dict[str, StringReading] = {}
        self._series: dict[str, _Series] = {}
        self._thread: threading.Thread | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "recorded",
                "commits",
                "dropped_queue_full",
                "dropped_clock",
                "dropped_paused",
                "dropped_error",
                "pauses",
                "periods_closed",
                "blocks_expired",
            ),
            0,
        )
        self.state, self.reason, self.since = "starting", "", time.time()
        self.bytes_used = 0
        self.data_now = 0  #: the newest reading accepted (ms): the writer's clock
        self._next_maintain = 0
        self._retry_at = 0.0

    # --- the gateway's side (event loop) -----------------------------------------------------
    def offer(self, string: StringSnapshot) -> None:
        """Queue a GOOD reading not offered before; never blocks."""
        r = string.reading
        if string.quality is not Quality.GOOD or r is None:
            return
        if self._offered.get(string.name) is r:
            return
        self._offered[string.name] = r
        try:
            self._queue.put_nowait((string.name, r))
        except queue.Full:
            self.counters["dropped_queue_full"] += 1
        if self._queue.qsize() > self._wake_at:
            self._wake.set()

    def write(self, name: str, reading: StringReading) -> None:
        """Queue a reading with its own timestamp, waiting for room (tests,
        benches, imports: simulated time)."""
        self._put((name, reading))

    def _put(self, item: Any) -> None:
        self._queue.put(item)
        if self._queue.qsize() > self._wake_at:
            self._wake.set()

    def write_rows(self, name: str, t: np.ndarray, values: np.ndarray, cells: int) -> None:
        """Queue many readings of one string at once, already as rows (times in
        epoch seconds, ascending; values scaled as ``codec.reading_row`` makes
        them, NaN = not measured): how a bench fills days of data fast."""
        t_ms = np.rint(np.asarray(t, dtype=np.float64) * 1000).astype(np.int64)
        self._put(_Rows(name, t_ms, codec.to_int32(np.asarray(values, np.float64)), cells))
        self._wake.set()

    def sync(self, timeout: float = 60.0) -> bool:
        """Wait until everything queued so far is committed and every period
        that could close is closed. False on a timeout."""
        if self._thread is None or not self._thread.is_alive():
            return False
        request = _Sync()
        self._queue.put(request)
        self._wake.set()
        return request.done.wait(timeout)

    def status(self) -> HistoryStatus:
        return HistoryStatus(
            self.state,
            self.reason,
            self.since,
            dict(self.counters),
            self._queue.qsize(),
            self.bytes_used,
        )

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> HistoryService:
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued and stop the thread."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("history writer still busy after %.0f s; not waiting", timeout)
        self._thread = None

    # --- the writer thread ----------------------------------------------------------------------
    def _set_state(self, state: str, reason: str = "") -> None:
        self.state, self.reason, self.since = state, reason, time.time()

    def _run(self) -> None:
        try:
            self.store.open()
        except StoreDamaged as exc:
            log.error(
                "history is READ-ONLY: %s. Acquisition and every protocol carry on; to start "
                "a new history, stop the gateway and move the file aside.",
                exc,
            )
            self._set_state("read_only", str(exc))
            self._drain_read_only()
            return
        self._resume()
        self._set_state("recording")
        log.info("history recording to %s", self.path)
        interval = self.settings.commit_interval_s
        next_commit = time.monotonic() + interval
        try:
            while True:
                if any(s.pending for s in self._series.values()):
                    # readings pile up on the queue without waking this thread (a
                    # wake-up per reading costs more than the reading): it takes
                    # them all at the next commit, or earlier when woken
                    self._wake.wait(max(0.0, next_commit - time.monotonic()))
                    items = []
                else:  # idle: sleep until a reading comes (the clock is the data)
                    items = [self._queue.get()]
                self._wake.clear()
                items += self._drain()
                if not self._handle(items):
                    break
                if time.monotonic() >= next_commit:
                    next_commit = time.monotonic() + interval
                    self._commit()
                    self._maintain()
            self._commit()
        except Exception:
            log.exception("history writer failed; history stopped (acquisition carries on)")
            self._set_state("stopped", "writer failed: see the log")
            self._drain_read_only()
        finally:
            self.store.close()
            if self.state != "read_only":
                self._set_state("stopped", "gateway stopped")

    def _drain(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def _handle(self, items: list[Any]) -> bool:
        """Take queued items in order; False at the stop request."""
        for item in items:
            if item is _STOP:
                return False
            if isinstance(item, _Sync):
                self._commit()
                self._maintain(force=True)
                item.done.set()
            elif isinstance(item, _Rows):
                self._accept_rows(item)
            else:
                self._accept(*item)
        return True

    def _drain_read_only(self) -> None:
        """Swallow readings until stopped (answering syncs), writing nothing."""
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Sync):
                item.done.set()
            else:
                self.counters["dropped_error"] += 1

    def _resume(self) -> None:
        points = self.store.resume_points()
        for name, sid in self.store.ids.items():
            last, closed = points.get(sid, (-1, 0))
            self._series[name] = _Series(sid, last, closed)
            self.data_now = max(self.data_now, last)

    def _series_of(self, name: str) -> _Series:
        s = self._series.get(name)
        if s is None:
            s = self._series[name] = _Series(self.store.string_id(name))
        return s

    def _accept(self, name: str, r: StringReading) -> None:
        s = self._series_of(name)
        t = round(r.read_at * 1000)
        if t <= s.last_t or t < s.closed:
            self._late(name, s, t, 1)
            return
        if self.state == "paused":
            self.counters["dropped_paused"] += 1
            return
        row = codec.to_int32(codec.reading_row(r)[None, :])
        s.pending.append((np.array([t], dtype=np.int64), row, len(r.cells)))
        s.last_t = t
        self.data_now = max(self.data_now, t)

    def _accept_rows(self, rows: _Rows) -> None:
        s = self._series_of(rows.name)
        t = rows.t_ms
        newer = np.maximum.accumulate(np.concatenate(([s.last_t], t)))[:-1]
        keep = (t > newer) & (t >= s.closed)
        if not keep.all():
            self._late(rows.name, s, int(t[~keep][0]), int((~keep).sum()))
        if not keep.any():
            return
        if self.state == "paused":
            self.counters["dropped_paused"] += int(keep.sum())
            return
        s.pending.append((t[keep], rows.values[keep], rows.cells))
        s.last_t = int(t[keep][-1])
        self.data_now = max(self.data_now, s.last_t)

    def _late(self, name: str, s: _Series, t: int, count: int) -> None:
        self.counters["dropped_clock"] += count
        now = time.monotonic()
        if s.last_t - t > 1000 and now - s.late_logged > LATE_LOG_S:
            s.late_logged = now
            log.warning(
                "history: string %s read at %.3f, %.1f s before the newest recorded: "
                "the clock stepped back? Readings are dropped until the clock passes it",
                name,
                t / 1000,
                (s.last_t - t) / 1000,
            )

    def _commit(self) -> None:
        if self.state == "paused" and not self._try_resume():
            for s in self._series.values():
                self.counters["dropped_paused"] += sum(len(p[0]) for p in s.pending)
                s.pending.clear()
            return
        items, count = [], 0
        for s in self._series.values():
            if not s.pending:
                continue
            width = max(p[2] for p in s.pending)
            t = np.concatenate([p[0] for p in s.pending])
            values = np.concatenate([codec.widen(v, c, width, codec.NULL) for _, v, c in s.pending])
            s.pending.clear()
            count += len(t)
            period = t // RAW.block_ms
            cuts = np.flatnonzero(np.diff(period)) + 1
            for part_t, part_v in zip(np.split(t, cuts), np.split(values, cuts), strict=True):
                items.append((s.sid, part_t, part_v, width))
        if not items:
            return
        free = self.store.free_disk_mb()
        if free < self.settings.min_free_mb:
            limit = self.settings.min_free_mb
            self._pause(f"{free:.0f} MB free on the disk, less than min_free_mb = {limit:g}")
            self.counters["dropped_paused"] += count
            return
        try:
            self.store.add_segments(items)
        except Exception as exc:
            self._failed(exc, count)
            return
        self.counters["recorded"] += count
        self.counters["commits"] += 1

    def _failed(self, exc: Exception, count: int) -> None:
        if is_disk_full(exc):
            self._pause(f"disk full ({exc})")
            self.counters["dropped_paused"] += count
        else:
            log.exception("history: a write failed (%d readings lost)", count)
            self.counters["dropped_error"] += count

    def _pause(self, reason: str) -> None:
        if self.state != "paused":
            log.error(
                "history PAUSED: %s. Acquisition and every protocol carry on; history "
                "resumes by itself when space returns",
                reason,
            )
            self.counters["pauses"] += 1
            self._set_state("paused", reason)
        self._retry_at = time.monotonic() + RETRY_S

    def _try_resume(self) -> bool:
        if time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + RETRY_S
        if self.store.free_disk_mb() < self.settings.min_free_mb:
            return False
        try:
            self.store.probe()
        except Exception as exc:
            if not is_disk_full(exc):
                log.warning("history: still cannot write: %s", exc)
            return False
        paused_s = time.time() - self.since
        log.warning(
            "history RESUMED after %.0f s paused (%d readings dropped meanwhile in all)",
            paused_s,
            self.counters["dropped_paused"],
        )
        self._set_state("recording")
        return True

    def _maintain(self, force: bool = False) -> None:
        """Close every period that can close; retention and the budget once a
        minute of data time."""
        if self.state != "recording":
            return
        grace = max(30_000, int(3000 * self.settings.commit_interval_s))
        horizon = self.data_now - grace
        try:
            for s in self._series.values():
                closed = max(s.last_t, horizon) // RAW.block_ms * RAW.block_ms
                if closed <= s.closed and not force:
                    continue
                due = [(RAW, p) for p in self.store.due_periods(RAW, s.sid, closed)]
                for start_at in range(0, len(due), BATCH_PERIODS):
                    # many periods at once (a backlog, simulated time): one commit per batch
                    with self.store.tx():
                        for _tier, start in due[start_at : start_at + BATCH_PERIODS]:
                            self.store.close_raw(s.sid, start)
                    self.counters["periods_closed"] += len(due[start_at : start_at + BATCH_PERIODS])
                for tier in (MINUTE, HOUR):
                    for start in self.store.due_periods(tier, s.sid, closed):
                        self.store.close_rollup(tier, s.sid, start)
                        self.counters["periods_closed"] += 1
                s.closed = max(s.closed, closed)
            if force or self.data_now >= self._next_maintain:
                self._next_maintain = self.data_now + MAINTAIN_MS
                self.counters["blocks_expired"] += self.store.apply_retention(self.data_now)
                deleted = self.store.enforce_budget()
                if deleted:
                    log.warning(
                        "history over its budget (%.0f MB): deleted the oldest %s",
                        self.settings.budget_mb,
                        ", ".join(deleted[:3]) + (" ..." if len(deleted) > 3 else ""),
                    )
                self.bytes_used = self.store.used_bytes()
        except Exception as exc:
            if is_disk_full(exc):
                self._pause(f"disk full ({exc})")
            else:
                log.exception("history: closing periods failed (retried at the next commit)")


def history_for(settings: HistorySection, data_dir: Path) -> HistoryService | None:
    """The service a gateway runs (None when ``[history] enabled = false``)."""
    return HistoryService(settings, data_dir) if settings.enabled else None
