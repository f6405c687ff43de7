"""UPS (battery system) values derived from its strings, as the BM-GW computes them.

Voltage is the mean of string voltages, current the sum, SOC the mean; status
is ERROR if any string is in error. Only strings that were ever read take part
in the values; the UPS quality is the worst quality of its strings, so a UPS
built from stale strings is itself marked stale rather than looking fresh.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import DeviceStatus, Quality, StringSnapshot, UpsSnapshot


def aggregate_ups(name: str, index: int, strings: Iterable[StringSnapshot]) -> UpsSnapshot:
    members = tuple(strings)
    readings = [s.reading for s in members if s.reading is not None]
    if not members:
        return UpsSnapshot(
            name, index, (), None, None, None, Quality.OFFLINE, DeviceStatus.DISABLED, None
        )
    quality = max(s.quality for s in members)
    status = (
        DeviceStatus.ERROR
        if any(s.device_status is DeviceStatus.ERROR for s in members)
        else DeviceStatus.OK
    )
    if not readings:
        return UpsSnapshot(
            name, index, tuple(s.name for s in members), None, None, None, quality, status, None
        )
    n = len(readings)
    return UpsSnapshot(
        name=name,
        index=index,
        strings=tuple(s.name for s in members),
        voltage_v=sum(r.voltage_v for r in readings) / n,
        current_a=sum(r.current_a for r in readings),
        soc_pct=sum(r.soc_pct for r in readings) / n,
        quality=quality,
        status=status,
        read_at=min(r.read_at for r in readings),
    )
