"""Prometheus metrics: one custom collector that reads the current snapshot at
scrape time (no thousands of Gauge objects kept in step with every poll).

Names follow Prometheus conventions: base units (volts, amperes, ohms,
celsius, seconds), ratios 0..1 instead of percentages, ``_total`` on
counters, enums as state sets (one series per state, value 0/1). A string's
values are exported only while its quality is GOOD: a stale value is never
served as fresh, and an absent series is what Prometheus expects when a
target has no data. Per-cell series are behind ``cell_metrics`` (32 x 120 x 6
series at full scale).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from btms_gateway.core.api import DeviceStatus, Gateway, Level, Quality, table_of
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .data import log_health
from .history import EventRing
from .series import Family, families

G, C = GaugeMetricFamily, CounterMetricFamily


#: metric, help, derived key (StringSnapshot.derived), conversion factor
DERIVED_VALUES: list[tuple[str, str, str, float]] = [
    ("btms_string_discharging", "1 while a discharge is captured.", "discharging", 1.0),
    (
        "btms_string_discharge_ampere_hours",
        "Ah delivered since the running discharge started.",
        "discharge_ah",
        1.0,
    ),
    (
        "btms_string_cell_resistance_median_ohms",
        "Median cell internal resistance.",
        "resistance_median_mohm",
        1e-3,
    ),
    (
        "btms_string_cell_temperature_median_celsius",
        "Median cell temperature.",
        "temperature_median_c",
        1.0,
    ),
    (
        "btms_string_thermal_rise_celsius",
        "Hottest cell's rise over the runaway window while the float current rose.",
        "thermal_rise_c",
        1.0,
    ),
]
#: per-cell derived percentages, served as ratios (with cell_metrics)
DERIVED_CELL_VALUES = [
    (
        "btms_cell_resistance_over_baseline_ratio",
        "Cell resistance rise over its baseline (0.25 = +25 %).",
        "resistance_vs_baseline_pct",
    ),
    (
        "btms_cell_resistance_over_median_ratio",
        "Cell resistance over the string median (0.25 = +25 %).",
        "resistance_vs_median_pct",
    ),
]


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway, ring: EventRing, cell_metrics: bool, web: Any) -> None:
        self.gateway = gateway
        self.ring = ring
        self.cell_metrics = cell_metrics
        self.web = web  # live stats of the web server itself (clients, refusals)
        table = table_of(gateway)  # the plant's series derive from the gateway's quantities
        self.ups_families = families(Level.UPS, table)
        self.string_families = families(Level.STRING, table)
        self.cell_families = families(Level.CELL, table)

    def describe(self) -> list[Metric]:
        return []  # do not collect at registration time (before the gateway runs)

    def collect(self) -> Iterator[Metric]:
        yield from self._gateway()
        yield from self._buses()
        yield from self._strings()
        yield from self._alarms()

    def _gateway(self) -> Iterator[Metric]:
        g = self.gateway
        info = G("btms_gateway_info", "Gateway name and version.", labels=["name", "version"])
        info.add_metric([g.name, g.version], 1)
        yield info
        yield G("btms_gateway_uptime_seconds", "Seconds since the gateway started.", g.uptime_s())
        failures = C(
            "btms_gateway_plugin_failures",
            "Calls of a plugin hook that raised (plugin isolated, gateway carries on).",
            labels=["plugin", "hook"],
        )
        for (plugin, hook), n in sorted(g.plugin_failures().items()):
            failures.add_metric([plugin, hook], n)
        yield failures
        yield G("btms_web_live_clients", "Browsers connected to the live stream.", self.web.clients)
        refused = C(
            "btms_web_requests_refused",
            "HTTP requests refused, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(self.web.refused.items()):
            refused.add_metric([reason], n)
        yield refused

    def _buses(self) -> Iterator[Metric]:
        fam: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "req": C("btms_bus_requests", "Modbus requests sent on the bus.", labels=["bus"]),
            "resp": C("btms_bus_responses", "Valid responses received.", labels=["bus"]),
            "err": C("btms_bus_errors", "Failed transactions by kind.", labels=["bus", "kind"]),
            "polls": C("btms_bus_polls", "Polls of the bus's strings.", labels=["bus"]),
            "failed": C(
                "btms_bus_polls_failed",
                "Polls of the bus's strings that failed, by cause.",
                labels=["bus", "cause"],
            ),
            "reopen": C("btms_bus_port_reopens", "Times the port was reopened.", labels=["bus"]),
            "cycles": C("btms_bus_poll_cycles", "Completed poll cycles.", labels=["bus"]),
            "open": G("btms_bus_port_open", "1 while the bus port is open.", labels=["bus"]),
            "cycle_s": G(
                "btms_bus_last_cycle_seconds",
                "Time the bus spent polling in its last cycle (slot waits excluded).",
                labels=["bus"],
            ),
            "interval": G(
                "btms_bus_poll_interval_seconds", "Configured poll interval.", labels=["bus"]
            ),
        }
        for b in self.gateway.bus_status():
            c = b.counters
            fam["req"].add_metric([b.name], c.requests)
            fam["resp"].add_metric([b.name], c.responses)
            for kind, n in c.errors.items():
                fam["err"].add_metric([b.name, kind.value], n)
            fam["polls"].add_metric([b.name], c.polls)
            for kind, n in c.polls_failed_by.items():
                fam["failed"].add_metric([b.name, kind.value], n)
            fam["reopen"].add_metric([b.name], c.port_reopens)
            fam["cycles"].add_metric([b.name], b.cycles)
            fam["open"].add_metric([b.name], 1 if b.port_open else 0)
            if b.last_cycle_s is not None:
                fam["cycle_s"].add_metric([b.name], b.last_cycle_s)
            fam["interval"].add_metric([b.name], b.interval_s)
        yield from fam.values()

    def _strings(self) -> Iterator[Metric]:
        snap = self.gateway.store.snapshot
        lbl = ["string"]
        info = G(
            "btms_string_info",
            "String identity (value 1).",
            labels=[*lbl, "ups", "bus", "slave_id", "index"],
        )
        polls = C("btms_string_polls", "Polls of the string.", labels=lbl)
        failed = C(
            "btms_string_polls_failed", "Polls that failed, by cause.", labels=[*lbl, "cause"]
        )
        errors = C("btms_string_errors", "Failed transactions by kind.", labels=[*lbl, "kind"])
        values: dict[str, GaugeMetricFamily] = {}

        def gauge(name: str, doc: str, labels: list[str] = lbl) -> GaugeMetricFamily:
            if name not in values:
                values[name] = G(name, doc, labels=labels)
            return values[name]

        own = [(f, G(f.series.name, f.series.help, labels=[*lbl, *f.labels]))
               for f in self.string_families]  # fmt: skip
        for s in snap.strings.values():
            info.add_metric([s.name, s.ups or "", s.bus, str(s.slave_id), str(s.index)], 1)
            counters = self.gateway.string_counters(s.name)
            polls.add_metric([s.name], counters.polls)
            for kind, n in counters.polls_failed_by.items():
                failed.add_metric([s.name, kind.value], n)
            for kind, n in counters.errors.items():
                errors.add_metric([s.name, kind.value], n)
            good = s.quality is Quality.GOOD and s.reading is not None
            _add(own, s, [s.name], good)
            if good:
                self._cell_values(s.name, s.reading, gauge)
                self._derived(s, gauge)
        # a measured family without a sample (no string GOOD) is left out, as before
        shown = [m for f, m in own if not f.measured or m.samples]
        yield from (info, *shown, polls, failed, errors, *values.values())
        yield from self._ups(snap)

    def _cell_values(self, name: str, r: Any, gauge: Callable[..., GaugeMetricFamily]) -> None:
        """The string's presentation of its cells: extremes, lost sensors, and
        (``cell_metrics``) every cell's own series."""
        put = []
        volts = [c.voltage_v for c in r.cells if c.voltage_v is not None]
        temps = [c.temperature_c for c in r.cells if c.temperature_c is not None]
        ohms = [c.resistance_mohm / 1000 for c in r.cells if c.resistance_mohm is not None]
        if volts:
            put.append(("btms_string_cell_voltage_min_volts", "Lowest cell voltage.", min(volts)))
            put.append(("btms_string_cell_voltage_max_volts", "Highest cell voltage.", max(volts)))
        if temps:
            put.append(("btms_string_cell_temperature_max_celsius", "Warmest cell.", max(temps)))
        if ohms:
            put.append(
                ("btms_string_cell_resistance_max_ohms", "Highest cell resistance.", max(ohms))
            )
        lost = sum(1 for c in r.cells if c.device_status is DeviceStatus.ERROR)
        put.append(("btms_string_cell_sensors_lost", "Cells without a reading.", lost))
        for metric, doc, value in put:
            gauge(metric, doc).add_metric([name], float(value))
        if self.cell_metrics:
            lbl = ["string", "cell"]
            for c in r.cells:
                labels = [name, str(c.index)]
                for f in self.cell_families:
                    for extra, v in f.samples(c):
                        gauge(f.series.name, f.series.help, [*lbl, *f.labels]).add_metric(
                            [*labels, *extra], v
                        )

    def _derived(self, s: Any, gauge: Callable[..., GaugeMetricFamily]) -> None:
        """What analytics derived (docs/analytics.md); absent while not known."""
        d = s.derived
        for metric, doc, key, scale in DERIVED_VALUES:
            value = d.get(key)
            if value is not None:
                gauge(metric, doc).add_metric([s.name], value * scale)
        if not self.cell_metrics or s.reading is None:
            return
        lbl = ["string", "cell"]
        for metric, doc, key in DERIVED_CELL_VALUES:
            values = s.cell_derived.get(key)
            if values is None:
                continue
            fam = gauge(metric, doc, lbl)
            for c, v in zip(s.reading.cells, values, strict=False):
                if v is not None:
                    fam.add_metric([s.name, str(c.index)], v / 100.0)

    def _ups(self, snap: Any) -> Iterator[Metric]:
        lbl = ["ups"]
        own = [(f, G(f.series.name, f.series.help, labels=[*lbl, *f.labels]))
               for f in self.ups_families]  # fmt: skip
        for u in snap.ups.values():
            if any(snap.strings[n].reading is None for n in u.strings if n in snap.strings):
                u = replace(u, read_at=None)  # no data age while a string was never read
            _add(own, u, [u.name], u.quality is Quality.GOOD)
        yield from (m for _, m in own)

    def _alarms(self) -> Iterator[Metric]:
        active = G(
            "btms_alarms_active",
            "Active alarms by severity and acknowledgement.",
            labels=["severity", "acknowledged"],
        )
        counts: dict[tuple[str, str], int] = {}
        for a in self.gateway.alarms.active():
            key = (a.severity.name.lower(), "true" if a.acknowledged else "false")
            counts[key] = counts.get(key, 0) + 1
        for sev in ("warning", "alarm", "critical"):
            for ack in ("false", "true"):
                active.add_metric([sev, ack], counts.get((sev, ack), 0))
        yield active
        events = C(
            "btms_alarm_events",
            "Alarm events received by the web plugin since start, by kind.",
            labels=["kind"],
        )
        for kind in ("raised", "cleared", "acknowledged"):
            events.add_metric([kind], self.ring.received.get(kind, 0))
        yield events
        yield from self._event_log()

    def _event_log(self) -> Iterator[Metric]:
        """Whether alarm events are being written (an alert on the first
        gauge catches a full disk before the history is lost)."""
        h = log_health(self.gateway)
        yield G(
            "btms_event_log_failing",
            "1 while the event log cannot be written (alarms are still delivered).",
            value=1 if h.failing else 0,
        )
        yield G(
            "btms_event_log_unwritten_events",
            "Alarm events delivered but not yet written to the event log.",
            value=h.unwritten,
        )
        yield C(
            "btms_event_log_write_failures",
            "Failed writes to the event log since start (each retry counts).",
            value=h.write_failures,
        )
        yield C(
            "btms_event_log_dropped_events",
            "Unwritten alarm events dropped past the gateway's memory bound since start.",
            value=h.dropped,
        )


def registry_for(collector: GatewayCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _add(
    own: list[tuple[Family, GaugeMetricFamily]], obj: Any, labels: list[str], good: bool
) -> None:
    """``obj``'s samples of each family; a measured value only while ``good``."""
    for family, metric in own:
        if family.measured and not good:
            continue
        for extra, value in family.samples(obj):
            metric.add_metric([*labels, *extra], value)
