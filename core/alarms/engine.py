"""The alarm engine: readings in, committed alarm events out.

Called synchronously by the gateway after every published string
(``on_string``) and about once a second (``tick``); plugins may call
``acknowledge`` from their own threads, so all state sits behind one lock.
An event is handed to ``emit`` only after its transaction committed (it has
its ``seq``), with the alarms active after that commit: one tuple, built once
per commit and shared by every event of it and every plugin, so no consumer
rebuilds the active set from events or asks for it again. ``emit`` itself
must not block (the gateway queues per plugin), so the only wait on this path
is the SQLite commit, one per evaluated string.

When the log cannot be written (disk full, I/O error, damaged page) alarms
must still reach the NOC: events are emitted marked not persisted and kept
in order (outage.py), the gateway alarm ``event_log_failing`` is raised, and
``tick`` retries; the first write that goes through appends the kept events
with their own times and rewrites the active table from the engine's state
(which the failure never touched), then clears ``event_log_failing``.

The history store reports to the same engine: ``history_state`` (the
gateway's tick, once a second) keeps the gateway alarm ``history_paused``
active while history is not recording (a full disk, a file served read-only
after damage, a writer that failed), so the NOC hears of it like any alarm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from ..alarm_types import (
    GATEWAY,
    ActiveAlarm,
    ActiveAlarms,
    AlarmEvent,
    EventKind,
    EventLogHealth,
    ObjectPath,
    Severity,
)
from ..model import PlantSnapshot, Quality, StringSnapshot
from . import baseline, inbox
from .baseline import BaselineRow, CellBaselines
from .config import AlarmsSection, rules_for
from .evaluate import COMM_LOST, StringEval, Tracker, Transition
from .eventlog import EventLog
from .outage import Outage, describe
from .rules import RULES, Rule, alarm_id
from .state import ACTIVE, PENDING_ON, Condition

log = logging.getLogger("btms_gateway.alarms")

UPS_RULE = "ups_string_error"
LOG_RULE = "event_log_failing"
LOG_ALARM = alarm_id(LOG_RULE, GATEWAY)
HISTORY_RULE = "history_paused"
#: history states that raise ``history_paused``; "starting" holds what is there (a
#: restored alarm stays until the writer says), "recording" and "disabled" clear
HISTORY_NOT_RECORDING = ("paused", "read_only", "stopped")
RETENTION_EVERY_S = 600.0


class AlarmEngine:
    def __init__(
        self,
        settings: AlarmsSection,
        log: EventLog,
        emit: Callable[[AlarmEvent, ActiveAlarms], None],
    ) -> None:
        self.settings = settings
        self.log = log
        self._emit = emit
        self._lock = threading.RLock()
        rules = rules_for(settings, None)
        self._ups_rule = rules[UPS_RULE]
        self._log_rule = rules[LOG_RULE]
        self._history_rule = rules[HISTORY_RULE]
        self._gateway = Tracker()  # the gateway's own conditions fed from outside (history)
        self.outage = Outage()
        self._evals: dict[str, StringEval] = {}
        self._ups: dict[str, Tracker] = {}  # one per UPS: each UPS's alarm lives on its own
        self._active: dict[str, Condition] = {}
        self._plant: PlantSnapshot | None = None
        self._next_retention = 0.0

    # --- the gateway's calls -------------------------------------------------------
    def restore(self, plant: PlantSnapshot) -> None:
        """Take back the alarms active when the gateway stopped, without raising
        them again; clear (with an event) those whose rule or object no longer
        exists in the configuration, since nothing else would ever clear them."""
        now = time.time()
        with self._lock:
            self._plant = plant
            out: list[Transition] = []
            for a in self.log.active():
                c = self._adopt(a, plant)
                if c is None:
                    gone = Condition(a.alarm_id, _placeholder(a), a.path, 0, now, a.value, a.limit)
                    gone.clear_message = (
                        f"{a.message} (cleared: rule or object no longer configured)"
                    )
                    out.append((EventKind.CLEARED, gone, now))
            grace = now + self.settings.startup_grace_s
            for s in plant.strings.values() if self.settings.enabled else ():
                ev = self._eval_for(s)
                rule = ev.rules[COMM_LOST]
                key = (COMM_LOST, 0)
                if rule.enabled and s.quality is Quality.OFFLINE and key not in ev.tracker.conds:
                    ev.tracker.conds[key] = Condition(
                        f"{COMM_LOST}:{s.name}", rule, ev.path, PENDING_ON, grace, 1.0, None
                    )
            self._commit(out, [])
            if not self.outage.failing:
                self._retention(now)

    def on_string(self, string: StringSnapshot, plant: PlantSnapshot) -> None:
        if not self.settings.enabled:
            return
        with self._lock:
            self._plant = plant
            ev = self._eval_for(string)
            out: list[Transition] = []
            learned: list[BaselineRow] = []
            ev.evaluate(string, out, learned)
            if string.ups is not None and self._ups_rule.enabled:
                r = string.reading
                t = r.read_at if string.quality is Quality.GOOD and r else string.changed_at
                self._eval_ups(string.ups, plant, t, out)
            if out or learned:
                self._commit(out, learned)

    def tick(self, now: float) -> None:
        with self._lock:
            out: list[Transition] = []
            for ev in self._evals.values():
                if ev.tracker.conds:
                    ev.tracker.tick(now, out)
            for tracker in self._ups.values():
                if tracker.conds:
                    tracker.tick(now, out)
            lost = {c.path.ups for k, c, _ in out if c.rule.name == COMM_LOST and c.path.ups}
            if self._plant is not None and self._ups_rule.enabled:
                for ups in sorted(lost):
                    self._eval_ups(ups, self._plant, now, out)
            if out:
                self._commit(out, [])
            if self.outage.failing:
                if self.outage.due():
                    self._catch_up(now)
                return  # requests and retention write to the log: once it works
            try:
                self._requests(now)
            except Exception as exc:
                self._failing(exc, now)
                return
            if now >= self._next_retention:
                self._retention(now)

    def history_state(self, state: str, reason: str, now: float) -> None:
        """Feed the history writer's state (``HistoryStatus.state``, or "disabled"):
        ``history_paused`` is raised, with the writer's reason in its message,
        while the state is one of ``HISTORY_NOT_RECORDING``, and cleared when
        history records again (or is switched off)."""
        rule = self._history_rule
        if not self.settings.enabled or not rule.enabled:
            return
        with self._lock:
            key = (HISTORY_RULE, 0)
            if state == "starting":
                self._gateway.hold(key)
                return
            out: list[Transition] = []
            paused = 1.0 if state in HISTORY_NOT_RECORDING else 0.0
            self._gateway.feed(key, rule, GATEWAY, paused, 0, 0, now, out)
            if out:
                self._commit(out, [], detail=f"{state.replace('_', '-')}: {reason}")

    def active(self) -> list[ActiveAlarm]:
        with self._lock:
            return list(self._active_now())

    def log_health(self) -> EventLogHealth:
        with self._lock:
            return self.outage.health()

    def acknowledge(self, alarm_id: str, by: str) -> str | None:
        """Record who acknowledged an active alarm (once; again is a no-op): who
        is recorded, or None if no such alarm is active."""
        with self._lock:
            c = self._active.get(alarm_id)
            if c is None:
                return None
            if c.acknowledged_by is not None:
                return c.acknowledged_by
            now = time.time()
            c.acknowledged_by, c.acknowledged_at = by, now
            event = self._event(
                EventKind.ACKNOWLEDGED, c, now, f"{c.message} (acknowledged by {by})"
            )
            self._write([event], upsert=[c.to_active()])
            return by

    def note(
        self,
        rule: str,
        path: ObjectPath,
        message: str,
        *,
        value: float | None = None,
        at: float | None = None,
        by: str | None = None,
    ) -> None:
        """Write a NOTE event (a discharge, a baseline re-taken): in the event
        log only, never delivered to plugins (they expect alarm transitions).
        While the log cannot be written it waits with the alarm events."""
        t = time.time() if at is None else at
        event = AlarmEvent(
            seq=0, kind=EventKind.NOTE, alarm_id=alarm_id(rule, path), rule=rule,
            severity=Severity.WARNING, path=path, value=value, limit=None, unit="",
            message=message, at=t, by=by,
        )  # fmt: skip
        with self._lock:
            if self.outage.failing:
                self.outage.keep([event], [])
                return
            try:
                self.log.commit([event])
            except Exception as exc:
                self.outage.keep([event], [])
                self._failing(exc, time.time())

    def retake_baseline(self, string: str, cell: int | None, by: str) -> tuple[bool, str]:
        """Set the baselines of ``string`` (or one cell) from its current GOOD
        reading, as an operator does after replacing a cell; recorded in the
        event log as a note with who did it. Blocking (a commit)."""
        with self._lock:
            snap = self._plant.strings.get(string) if self._plant else None
            if snap is None or snap.quality is not Quality.GOOD or snap.reading is None:
                return False, f"string {string!r} has no current (GOOD) reading"
            now = time.time()
            old = {r.cell: r for r in baseline.load(self.log.db, string)}
            rows = [
                BaselineRow(string, c.index, c.resistance_mohm, "set", now)
                for c in snap.reading.cells
                if c.resistance_mohm is not None and (cell is None or c.index == cell)
            ]
            if not rows:
                what = f"cell {cell}" if cell is not None else "any cell"
                return False, f"string {string!r} has no resistance reading of {what}"
            with self.log.transaction() as db:
                baseline.save(db, rows)
            self._reload(string)
            if cell is not None:
                before = old.get(cell)
                was = f"was {before.mohm:.3f} mOhm, {before.source}" if before else "none before"
                text = (
                    f"string {string} cell {cell}: resistance baseline re-taken by {by}: "
                    f"{rows[0].mohm:.3f} mOhm ({was})"
                )
                value: float | None = rows[0].mohm
            else:
                text = (
                    f"string {string}: resistance baselines of {len(rows)} cells re-taken by {by}"
                )
                value = None
            ups = snap.ups
            self.note("baseline", ObjectPath(ups, string, cell), text, value=value, at=now, by=by)
            return True, text

    def baseline_rows(self, string: str) -> list[BaselineRow]:
        """The baselines of ``string`` with their source (learned or set) and time."""
        with self._lock:
            return baseline.load(self.log.db, string)

    def baselines(self, string: str) -> dict[int, float]:
        """Cell index -> resistance baseline (mOhm) of ``string``, as the rules use it."""
        with self._lock:
            ev = self._evals.get(string)
            if ev is not None:
                return dict(ev.baselines.values)
            return {r.cell: r.mohm for r in baseline.load(self.log.db, string)}

    def close(self) -> None:
        with self._lock:
            if self.outage.failing:  # a last try: what is not written now is lost
                self._catch_up(time.time())
            if self.outage.failing:
                log.error(
                    "event log %s still cannot be written at shutdown: %d alarm event(s) "
                    "were delivered to the plugins but are not in the log",
                    self.log.path,
                    len(self.outage.events),
                )
            self.log.close()

    # --- internals -----------------------------------------------------------------
    def _eval_for(self, s: StringSnapshot) -> StringEval:
        ev = self._evals.get(s.name)
        if ev is None:
            b = CellBaselines(s.name, self.settings.baseline_readings)
            b.replace_all(baseline.load(self.log.db, s.name))
            ev = StringEval(s.name, s.ups, rules_for(self.settings, s.name), b)
            self._evals[s.name] = ev
        return ev

    def _adopt(self, a: ActiveAlarm, plant: PlantSnapshot) -> Condition | None:
        """Put a restored active alarm back where evaluation will find it."""
        if not self.settings.enabled or a.rule not in RULES:
            return None
        scope = RULES[a.rule].scope
        if scope == "gateway":
            if a.rule != HISTORY_RULE or not self._history_rule.enabled:
                return None
            tracker, rule, key = self._gateway, self._history_rule, (a.rule, 0)
        elif scope == "ups":
            ups = a.path.ups
            if ups is None or ups not in plant.ups or not self._ups_rule.enabled:
                return None
            tracker, rule, key = self._ups_tracker(ups), self._ups_rule, (a.rule, 0)
        else:
            s = plant.strings.get(a.path.string or "")
            if s is None:
                return None
            ev = self._eval_for(s)
            rule = ev.rules[a.rule]
            if not rule.enabled or (scope == "cell") != (a.path.cell is not None):
                return None
            tracker, key = ev.tracker, (a.rule, a.path.cell or 0)
            if a.path.cell:
                ev.busy.add(a.path.cell)
        c = Condition(
            a.alarm_id, rule, a.path, ACTIVE, a.raised_at, a.value, a.limit, a.message,
            a.raised_at, a.acknowledged_by, a.acknowledged_at,
        )  # fmt: skip
        tracker.conds[key] = c
        self._active[a.alarm_id] = c
        return c

    def _eval_ups(self, ups: str, plant: PlantSnapshot, t: float, out: list[Transition]) -> None:
        u = plant.ups.get(ups)
        if u is None:
            return
        errors = 0
        for name in u.strings:
            ev = self._evals.get(name)
            if ev is not None and ev.in_error:
                errors += 1
        self._ups_tracker(ups).feed(
            (UPS_RULE, 0), self._ups_rule, ObjectPath(ups), float(errors), 0, 0, t, out
        )

    def _ups_tracker(self, ups: str) -> Tracker:
        tracker = self._ups.get(ups)
        if tracker is None:
            tracker = self._ups[ups] = Tracker()
        return tracker

    def _commit(self, out: list[Transition], learned: list[BaselineRow], detail: str = "") -> None:
        """Write and emit the transitions; ``detail`` goes into the text of the
        alarms raised (what a flag alarm's value cannot say: why)."""
        events: list[AlarmEvent] = []
        upsert: list[ActiveAlarm] = []
        delete: list[str] = []
        for kind, c, t in out:
            if kind is EventKind.RAISED:
                c.raised_at, c.message = t, _message(c, raised=True)
                if detail:
                    c.message = f"{c.message} ({detail})"
                self._active[c.alarm_id] = c
                upsert.append(c.to_active())
                events.append(self._event(kind, c, t, c.message))
            else:
                self._active.pop(c.alarm_id, None)
                delete.append(c.alarm_id)
                text = c.clear_message or _message(c, raised=False)
                events.append(self._event(kind, c, t, text))
        self._write(events, upsert=upsert, delete=delete, learned=learned)

    # --- writing, and carrying on when the log cannot be written -------------------
    def _write(
        self,
        events: list[AlarmEvent],
        *,
        upsert: list[ActiveAlarm] | None = None,
        delete: list[str] | None = None,
        learned: list[BaselineRow] | None = None,
    ) -> None:
        """Commit, then emit; when the log cannot be written, emit anyway
        (marked not persisted) and keep the events for the catch-up."""
        if not self.outage.failing:
            extra = (lambda db: baseline.save(db, learned)) if learned else None
            try:
                committed = self.log.commit(
                    events, upsert=upsert or (), delete=delete or (), extra=extra
                )
            except Exception as exc:
                self._keep(events, learned or [])
                self._failing(exc, time.time())
                return
            self._publish(committed)
            return
        self._keep(events, learned or [])

    def _keep(self, events: list[AlarmEvent], learned: list[BaselineRow]) -> None:
        self.outage.keep(events, learned)
        self._publish([replace(e, persisted=False) for e in events])

    def _failing(self, exc: BaseException, now: float) -> None:
        """The first failed write of an outage: say so once, raise the gateway alarm."""
        error = describe(exc)
        if self.outage.failing:  # a request answered after its ack was kept, say
            self.outage.failed(error)
            return
        self.outage.begin(error)
        log.error(
            "event log %s cannot be written (%s): alarm events still reach every plugin, "
            "marked not persisted, and are kept in memory (up to %d) to be written when it "
            "works again; retrying every %g s",
            self.log.path,
            error,
            self.outage.limit,
            self.outage.retry_every_s,
        )
        if not self._log_rule.enabled:
            return
        c = Condition(LOG_ALARM, self._log_rule, GATEWAY, ACTIVE, now, 1.0, None)
        c.raised_at, c.message = now, f"{_message(c, raised=True)} ({error})"
        self._active[LOG_ALARM] = c
        self._keep([self._event(EventKind.RAISED, c, now, c.message)], [])

    def _catch_up(self, now: float) -> None:
        """Try to write what the outage kept, make the active table what the
        engine holds, and clear ``event_log_failing``, in one transaction."""
        o = self.outage
        events = list(o.events)
        late = len(events)
        c = self._active.get(LOG_ALARM)
        if c is not None:
            c.clear_message = f"{_message(c, raised=False)}: {late} event(s) written late"
            events.append(self._event(EventKind.CLEARED, c, now, c.clear_message))
        active = [a.to_active() for key, a in self._active.items() if key != LOG_ALARM]
        learned = list(o.baselines)
        extra = (lambda db: baseline.save(db, learned)) if learned else None
        try:
            committed = self.log.rewrite(events, active, extra)
        except Exception as exc:
            o.failed(describe(exc))
            return
        since = o.since or time.time()
        failures, dropped = o.end()
        self._active.pop(LOG_ALARM, None)
        log.warning(
            "event log %s written again after %.0f s: %d failed write(s); %d event(s) "
            "written late with their own times%s; active alarms rewritten (%d)",
            self.log.path,
            time.time() - since,
            failures,
            late,
            f", {dropped} older one(s) dropped past the memory bound" if dropped else "",
            len(active),
        )
        if c is not None:
            self._publish(committed[-1:])

    def _event(self, kind: EventKind, c: Condition, t: float, message: str) -> AlarmEvent:
        return AlarmEvent(
            seq=0, kind=kind, alarm_id=c.alarm_id, rule=c.rule.name, severity=c.rule.severity,
            path=c.path, value=c.value, limit=c.limit, unit=c.rule.unit, message=message, at=t,
            by=c.acknowledged_by if kind is EventKind.ACKNOWLEDGED else None,
        )  # fmt: skip

    def _active_now(self) -> ActiveAlarms:
        return tuple(sorted((c.to_active() for c in self._active.values()), key=_order))

    def _publish(self, events: list[AlarmEvent]) -> None:
        """Emit one commit's events, each with the alarms active after it."""
        if not events:
            return
        active = self._active_now()
        for e in events:
            try:
                self._emit(e, active)
            except Exception:  # a consumer's failure must not stop the next alarm
                log.exception("alarm event consumer failed for %s %s", e.alarm_id, e.kind)

    def _retention(self, now: float) -> None:
        self._next_retention = now + RETENTION_EVERY_S
        try:
            s = self.settings
            n = self.log.retain(s.retention_days * 86_400, s.max_log_mb * 1e6, now)
            if n:
                log.info("event log retention removed %d old event(s)", n)
        except Exception:
            log.exception("event log retention failed")

    # --- requests from the command line (see inbox.py) ------------------------------------
    def _requests(self, now: float) -> None:
        for req in inbox.pending(self.log):
            if now - req.created_at > self.settings.request_ttl_s:
                inbox.finish(self.log, req.id, False, "expired before the gateway picked it up")
                continue
            try:
                ok, result = self._apply(req)
            except Exception as exc:
                ok, result = False, f"failed: {exc}"
            inbox.finish(self.log, req.id, ok, result)

    def _apply(self, req: inbox.Request) -> tuple[bool, str]:
        a = req.args
        if req.kind == inbox.ACK:
            if self.acknowledge(str(a["alarm_id"]), str(a["by"])) is not None:
                return True, f"{a['alarm_id']} acknowledged by {a['by']}"
            return False, f"no active alarm {a['alarm_id']!r}"
        string = str(a["string"])
        if req.kind == inbox.BASELINE_CAPTURE:
            cell = a.get("cell")
            return self.retake_baseline(
                string, None if cell is None else int(cell), str(a.get("by") or "cli")
            )
        if req.kind == inbox.BASELINE_RELOAD:
            self._reload(string)
            return True, f"baselines of {string} reloaded"
        return False, f"unknown request kind {req.kind!r}"

    def _reload(self, string: str) -> None:
        ev = self._evals.get(string)
        if ev is not None:
            ev.baselines.replace_all(baseline.load(self.log.db, string))
            ev.refresh_baselines()


def _placeholder(a: ActiveAlarm) -> Rule:
    """A stand-in rule for clearing a restored alarm whose rule no longer applies."""
    d = RULES.get(a.rule)
    return Rule(
        name=a.rule, scope=d.scope if d else "string", kind=d.kind if d else "flag",
        unit=a.unit, limit=a.limit or 0.0, hysteresis=0.0, on_delay_s=0.0, off_delay_s=0.0,
        severity=a.severity, text=d.text if d else a.rule, enabled=False,
    )  # fmt: skip


def _order(a: ActiveAlarm) -> tuple[float, str]:
    return (a.raised_at, a.alarm_id)


def _where(p: ObjectPath) -> str:
    if p.is_gateway:
        return "gateway"
    if p.cell is not None:
        return f"string {p.string} cell {p.cell}"
    return f"string {p.string}" if p.string is not None else f"UPS {p.ups}"


def _message(c: Condition, raised: bool) -> str:
    rule = c.rule
    head = f"{_where(c.path)}: {rule.text}"
    if rule.kind == "flag":
        return head if raised else f"{head}: cleared"
    unit = f" {rule.unit}" if rule.unit else ""
    if raised:
        return f"{head}: {c.value:.4g}{unit} (limit {c.limit:.4g}{unit})"
    return f"{head}: cleared at {c.value:.4g}{unit}"
