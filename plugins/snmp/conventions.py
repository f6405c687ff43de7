"""Textual conventions and value encodings of BTMS-GATEWAY-MIB (scaled integers
with DISPLAY-HINT, enumerations, BITS, DateAndTime), shared by tables.py and
the generator so a value's encoding is defined once."""

from __future__ import annotations

import datetime

from btms_gateway.core.api import CellStatus, Quality, StringAlarm, StringState

from .smi import TC

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
        enums=(("good", 1), ("stale", 2), ("offline", 3)),
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
        enums=(
            ("floatCharge", 1),
            ("equalizeCharge", 2),
            ("discharge", 3),
            ("idle", 4),
            ("abnormal", 5),
            ("unknown", 6),
        ),
    ),
    TC(
        "BtmsSeverity",
        "INTEGER",
        "Alarm severity, higher is more urgent.",
        enums=(("warning", 1), ("alarm", 2), ("critical", 3)),
    ),
)

QUALITY = {Quality.GOOD: 1, Quality.STALE: 2, Quality.OFFLINE: 3}
DEVICE_STATUS = {0: 3, 1: 1, 2: 2}  # model DeviceStatus -> BtmsDeviceStatus
STATE = {
    StringState.FLOAT_CHARGE: 1,
    StringState.EQUALIZE_CHARGE: 2,
    StringState.DISCHARGE: 3,
    StringState.IDLE: 4,
    StringState.ABNORMAL: 5,
    StringState.UNKNOWN: 6,
}
STRING_ALARM_BITS = (
    ("currentHighCharge", 0),
    ("currentHighDischarge", 1),
    ("voltageHigh", 2),
    ("voltageLow", 3),
    ("socLow", 4),
    ("sohLow", 5),
    ("hallSensorDisconnected", 6),
)
CELL_FLAG_BITS = (("sensorLost", 0), ("balancing", 1))
assert len(STRING_ALARM_BITS) == len(StringAlarm)
assert len(CELL_FLAG_BITS) == len(CellStatus)


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
