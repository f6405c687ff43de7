"""Textual conventions and value encodings of BTMS-GATEWAY-MIB (scaled integers
with DISPLAY-HINT, enumerations, BITS, DateAndTime), shared by tables.py and
the generator so a value's encoding is defined once."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from btms_gateway.core.api import QUALITY_NAMES, STATE_NAMES

from .smi import TC


def position(values: Mapping[int, str]) -> dict[int, int]:
    """An enumeration's value -> its number in the MIB: its position in the
    quantity table's order, from 1 (SMI enumerations start at 1 here)."""
    return {value: n for n, value in enumerate(values, start=1)}


def mib_name(name: str, upper: bool = False) -> str:
    """``current_high_charge`` -> ``currentHighCharge`` (``CurrentHighCharge``)."""
    first, *rest = name.split("_")
    head = first[:1].upper() + first[1:] if upper else first
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


TCS = (
    TC("BtmsCentiValue", "Integer32", "A value in hundredths of its UNITS.", "d-2"),
    TC("BtmsMilliValue", "Integer32", "A value in thousandths of its UNITS.", "d-3"),
    TC("BtmsDeciValue", "Integer32", "A value in tenths of its UNITS.", "d-1"),
    TC(
        "BtmsQuality",
        "INTEGER",
        "How far the values of a string (or UPS) can be trusted: good = the last "
        "poll succeeded; stale = the last poll failed (from the first failure on), "
        "or no poll result came within the gateway's stale_after_s; offline = the "
        "configured number of polls failed in a row, or never read. Values of a "
        "stale or offline string are the last good ones; see the data age column.",
        enums=tuple((name, n) for n, name in enumerate(QUALITY_NAMES.values(), start=1)),
    ),
    TC(
        "BtmsDeviceStatus",
        "INTEGER",
        "Status as the manufacturer's gateway reports it: ok, error (data not "
        "current, abnormal state or an alarm bit set), disabled.",
        enums=(("ok", 1), ("error", 2), ("disabled", 3)),
    ),
    TC(
        "BtmsChargeState",
        "INTEGER",
        "The string master's state register.",
        enums=tuple((mib_name(name), n) for n, name in enumerate(STATE_NAMES.values(), start=1)),
    ),
    TC(
        "BtmsSeverity",
        "INTEGER",
        "Alarm severity, higher is more urgent.",
        enums=(("warning", 1), ("alarm", 2), ("critical", 3)),
    ),
)

DEVICE_STATUS = {0: 3, 1: 1, 2: 2}  # model DeviceStatus -> BtmsDeviceStatus


QUALITY = position(QUALITY_NAMES)


def date_and_time(ts: float | None) -> bytes | None:
    """SNMPv2-TC DateAndTime, 11 octets, in UTC."""
    if ts is None:
        return None
    d = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    tenths = d.microsecond // 100_000
    return (
        bytes((d.year >> 8, d.year & 0xFF, d.month, d.day, d.hour, d.minute, d.second, tenths))
        + b"+\x00\x00"
    )


def truth(v: bool | None) -> int | None:
    return None if v is None else (1 if v else 2)


def text(v: float | None) -> str:
    return "" if v is None else f"{v:g}"
