"""Prometheus metrics of the core history store, as a collector of its own
beside GatewayCollector (read at scrape time from ``gateway.history``).

``btms_history_state`` says whether history is recording; a full disk shows
as ``paused`` with the readings dropped meanwhile counted by reason, while
every other metric (and every protocol) carries on.
"""

from __future__ import annotations

from collections.abc import Iterator

from btms_gateway.core.api import Gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STATES = ("starting", "recording", "paused", "read_only", "stopped")
DROPPED = {
    "queue_full": "dropped_queue_full",
    "clock": "dropped_clock",
    "paused": "dropped_paused",
    "error": "dropped_error",
}


class HistoryCollector(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        history = getattr(self.gateway, "history", None)
        if history is None:
            return
        st = history.status()
        state = GaugeMetricFamily(
            "btms_history_state", "History store state set.", labels=["state"]
        )
        for name in STATES:
            state.add_metric([name], 1 if st.state == name else 0)
        yield state
        yield CounterMetricFamily(
            "btms_history_readings_recorded",
            "String readings committed to the history file.",
            st.counters["recorded"],
        )
        dropped = CounterMetricFamily(
            "btms_history_readings_dropped",
            "GOOD readings not recorded, by reason (clock: older than the newest recorded).",
            labels=["reason"],
        )
        for reason, key in DROPPED.items():
            dropped.add_metric([reason], st.counters[key])
        yield dropped
        yield CounterMetricFamily(
            "btms_history_pauses", "Times history paused for a full disk.", st.counters["pauses"]
        )
        yield GaugeMetricFamily(
            "btms_history_bytes", "Bytes the history file uses on disk.", st.bytes_used
        )
        yield GaugeMetricFamily(
            "btms_history_queue_readings", "Readings waiting for the writer thread.", st.queued
        )
