"""BTMS-GATEWAY-MIB as data: the ONE definition both the agent and the MIB text use.

Numbering under the enterprise base B (configurable; the default is net-snmp's
netSnmpPlaypen, a placeholder a site replaces with its own enterprise number):
B.0 notifications, B.1.1 gateway scalars, B.1.2 UPS table, B.1.3 string
table, B.1.4 cell table (indexed by string index and cell index), B.1.5
active-alarm table, B.1.6 notification-only objects, B.2 conformance.

Getters take ``(row, ctx)``; ``ctx`` is image.ServeContext. Scaled integers
keep the device's resolution (docs/device.md) and carry a DISPLAY-HINT, so a
manager shows 2.251 V where the wire carries 2251.
"""

from __future__ import annotations

from typing import Any

from btms_gateway.core.model import Quality

from .conventions import (
    CELL_FLAG_BITS,
    DEVICE_STATUS,
    QUALITY,
    STATE,
    STRING_ALARM_BITS,
    date_and_time,
    text,
    truth,
)
from .smi import Notification, Obj, Table, bits_value, scaled

MODULE = "BTMS-GATEWAY-MIB"
DEFAULT_BASE = "1.3.6.1.4.1.8072.9999.9999"
COUNTER_WRAP = 1 << 32


def _r(f: Any) -> Any:
    """Getter over a string's reading: absent when the string was never read."""
    return lambda s, ctx: None if s.reading is None else f(s.reading)


def _derived(key: str, factor: int) -> Any:
    """Getter over what analytics derived (docs/analytics.md): absent when unknown."""
    return lambda s, ctx: scaled(s.derived.get(key), factor)


def _counter(field: str) -> Any:
    def get(s: Any, ctx: Any) -> int | None:
        c = ctx.counters(s.name)
        return None if c is None else getattr(c, field) % COUNTER_WRAP

    return get


def _s(name: str, sub: int, syntax: str, base: str, desc: str, **kw: Any) -> Obj:
    return Obj(name, sub, syntax, base, desc, **kw)


SCALARS = (
    _s("btmsGwName", 1, "DisplayString", "OCTET STRING", "The gateway's configured name.",
       get=lambda _, c: c.gateway_name),
    _s("btmsGwVersion", 2, "DisplayString", "OCTET STRING", "The gateway software version.",
       get=lambda _, c: c.version),
    _s("btmsGwUptime", 3, "TimeTicks", "TimeTicks", "Time since the gateway started.",
       get=lambda _, c: int(c.uptime_s() * 100) % COUNTER_WRAP),
    _s("btmsGwStrings", 4, "Gauge32", "Gauge32", "Number of configured strings.",
       get=lambda _, c: len(c.plant.strings)),
    _s("btmsGwStringsGood", 5, "Gauge32", "Gauge32",
       "Number of strings whose last poll succeeded (quality good).",
       get=lambda _, c: sum(1 for s in c.plant.strings.values() if s.quality is Quality.GOOD)),
    _s("btmsGwPolls", 6, "Counter32", "Counter32", "Polls of all strings since start.",
       get=lambda _, c: c.total_polls()[0] % COUNTER_WRAP),
    _s("btmsGwPollsFailed", 7, "Counter32", "Counter32",
       "Failed polls of all strings since start.",
       get=lambda _, c: c.total_polls()[1] % COUNTER_WRAP),
    _s("btmsGwActiveAlarms", 8, "Gauge32", "Gauge32", "Number of rows in btmsAlarmTable.",
       get=lambda _, c: len(c.alarms)),
    _s("btmsGwSnmpAuthFailures", 9, "Counter32", "Counter32",
       "Requests refused for a wrong community, unknown user, wrong digest or "
       "undecryptable payload; none of them was answered with data.",
       get=lambda _, c: c.stats.auth_failures() % COUNTER_WRAP),
    _s("btmsGwSnmpDroppedSources", 10, "Counter32", "Counter32",
       "Datagrams dropped unanswered because their source is not an allowed manager.",
       get=lambda _, c: c.stats.dropped_sources % COUNTER_WRAP),
    _s("btmsGwNotificationsSent", 11, "Counter32", "Counter32",
       "Notifications handed to the network (traps) or acknowledged (informs).",
       get=lambda _, c: c.stats.notifications_sent % COUNTER_WRAP),
    _s("btmsGwInformsFailed", 12, "Counter32", "Counter32",
       "Informs not acknowledged after all retries.",
       get=lambda _, c: c.stats.informs_failed % COUNTER_WRAP),
    _s("btmsGwNotificationsDropped", 13, "Counter32", "Counter32",
       "Notifications dropped because a receiver's queue was full (a dead or slow "
       "receiver never delays the others).",
       get=lambda _, c: c.stats.notifications_dropped % COUNTER_WRAP),
    _s("btmsGwSnmpBadDatagrams", 14, "Counter32", "Counter32",
       "Datagrams the SNMP engine failed on while decoding or processing them, dropped "
       "unanswered (BER errors the engine classifies itself count in snmpInASNParseErrs).",
       get=lambda _, c: c.stats.bad_datagrams % COUNTER_WRAP),
)  # fmt: skip


def _ups_rows(ctx: Any) -> list[tuple[tuple[int, ...], Any]]:
    return [((u.index,), name) for name, u in ctx.plant.ups.items()]


UPS_TABLE = Table(
    name="btmsUps",
    subid=2,
    description="Battery systems (UPS): the aggregate of their strings.",
    entry_description="One battery system.",
    index=("btmsUpsIndex",),
    rows=_ups_rows,
    resolve=lambda ctx, key: ctx.plant.ups.get(key),
    columns=(
        _s("btmsUpsIndex", 1, "Integer32 (1..32)", "Integer32", "UPS index, as on the BM-GW.",
           access="not-accessible"),
        _s("btmsUpsName", 2, "DisplayString", "OCTET STRING", "Configured UPS name.",
           get=lambda u, c: u.name),
        _s("btmsUpsStatus", 3, "BtmsDeviceStatus", "INTEGER", "Error if any string errs.",
           get=lambda u, c: DEVICE_STATUS[int(u.status)]),
        _s("btmsUpsQuality", 4, "BtmsQuality", "INTEGER", "Worst quality of its strings.",
           get=lambda u, c: QUALITY[u.quality]),
        _s("btmsUpsVoltage", 5, "BtmsCentiValue", "Integer32", "Mean of string voltages.",
           units="V", get=lambda u, c: scaled(u.voltage_v, 100)),
        _s("btmsUpsCurrent", 6, "BtmsCentiValue", "Integer32",
           "Sum of string currents, positive = charging.",
           units="A", get=lambda u, c: scaled(u.current_a, 100)),
        _s("btmsUpsSoc", 7, "Integer32 (0..100)", "Integer32", "Mean of string SOC.",
           units="%", get=lambda u, c: scaled(u.soc_pct, 1)),
        _s("btmsUpsStringCount", 8, "Gauge32", "Gauge32", "Strings in this UPS.",
           get=lambda u, c: len(u.strings)),
    ),
)  # fmt: skip


def _string_rows(ctx: Any) -> list[tuple[tuple[int, ...], Any]]:
    return [((s.index,), name) for name, s in ctx.plant.strings.items()]


STRING_TABLE = Table(
    name="btmsString",
    subid=3,
    description="Battery strings (one BM-SM string master each).",
    entry_description="One string. Value columns of a string never read are absent; "
    "those of a stale or offline string hold the last good values (see "
    "btmsStringQuality and btmsStringDataAge).",
    index=("btmsStringIndex",),
    rows=_string_rows,
    resolve=lambda ctx, key: ctx.plant.strings.get(key),
    columns=(
        _s("btmsStringIndex", 1, "Integer32 (1..32)", "Integer32",
           "String index, as on the BM-GW.", access="not-accessible"),
        _s("btmsStringName", 2, "DisplayString", "OCTET STRING", "Configured string name.",
           get=lambda s, c: s.name),
        _s("btmsStringUpsIndex", 3, "Integer32 (0..32)", "Integer32",
           "btmsUpsIndex of its UPS, 0 = none.", get=lambda s, c: s.ups_index),
        _s("btmsStringSlaveId", 4, "Integer32 (1..247)", "Integer32",
           "Modbus slave id of its string master.", get=lambda s, c: s.slave_id),
        _s("btmsStringQuality", 5, "BtmsQuality", "INTEGER", "Whether the values are current.",
           get=lambda s, c: QUALITY[s.quality]),
        _s("btmsStringDataAge", 6, "Gauge32", "Gauge32",
           "Seconds since the values were read; absent if never read.", units="seconds",
           get=lambda s, c: None if s.reading is None else int(s.age_s(c.now) or 0)),
        _s("btmsStringStatus", 7, "BtmsDeviceStatus", "INTEGER", "BM-GW string status.",
           get=lambda s, c: DEVICE_STATUS[int(s.device_status)]),
        _s("btmsStringVoltage", 8, "BtmsCentiValue", "Integer32", "String voltage.",
           units="V", get=_r(lambda r: scaled(r.voltage_v, 100))),
        _s("btmsStringCurrent", 9, "BtmsCentiValue", "Integer32",
           "String current, positive = charging.", units="A",
           get=_r(lambda r: scaled(r.current_a, 100))),
        _s("btmsStringSoc", 10, "Integer32 (0..100)", "Integer32", "String state of charge.",
           units="%", get=_r(lambda r: scaled(r.soc_pct, 1))),
        _s("btmsStringSoh", 11, "Integer32 (0..100)", "Integer32",
           "String state of health, derived by the gateway as the lowest cell SOH.",
           units="%", get=_r(lambda r: scaled(r.soh_pct, 1))),
        _s("btmsStringBalance", 12, "BtmsCentiValue", "Integer32", "String balance.",
           units="%", get=_r(lambda r: scaled(r.balance_pct, 100))),
        _s("btmsStringState", 13, "BtmsChargeState", "INTEGER", "String state.",
           get=_r(lambda r: STATE[r.state])),
        _s("btmsStringAlarms", 14, "BITS", "BITS",
           "The string master's own alarm word; currentHighCharge and currentHighDischarge "
           "are its over-current alarms while charging and while discharging.",
           bits=STRING_ALARM_BITS, get=_r(lambda r: bits_value(int(r.alarms), 7))),
        _s("btmsStringCellCount", 15, "Gauge32", "Gauge32", "Cells found by auto-addressing.",
           get=_r(lambda r: r.cell_count)),
        _s("btmsStringAmbientTemp", 16, "BtmsDeciValue", "Integer32",
           "Ambient temperature; absent when no sensor is fitted.", units="degrees Celsius",
           get=_r(lambda r: scaled(r.ambient_temperature_c, 10))),
        _s("btmsStringAmbientHumidity", 17, "BtmsDeciValue", "Integer32",
           "Ambient humidity; absent when no sensor is fitted.", units="%RH",
           get=_r(lambda r: scaled(r.ambient_humidity_pct, 10))),
        _s("btmsStringRelayClosed", 18, "TruthValue", "INTEGER", "Relay closed.",
           get=_r(lambda r: truth(r.relay_closed))),
        _s("btmsStringAuxInputOn", 19, "TruthValue", "INTEGER", "Auxiliary input on.",
           get=_r(lambda r: truth(r.aux_input_on))),
        _s("btmsStringPolls", 20, "Counter32", "Counter32", "Polls of this string.",
           get=_counter("polls")),
        _s("btmsStringPollsFailed", 21, "Counter32", "Counter32", "Failed polls of this string.",
           get=_counter("polls_failed")),
        _s("btmsStringRuntimeRemaining", 22, "Gauge32", "Gauge32",
           "Estimated runtime left to the end voltage while a discharge runs, derived by "
           "the gateway (Peukert-corrected charge counting against the rated capacity); "
           "absent while no discharge runs or no rated capacity is configured.",
           units="seconds", get=_derived("runtime_remaining_s", 1)),
        _s("btmsStringDepthOfDischarge", 23, "BtmsDeciValue", "Integer32",
           "Depth of discharge of the running discharge, corrected for Peukert's law, "
           "derived by the gateway; absent while no discharge runs or no rated capacity "
           "is configured.",
           units="%", get=_derived("dod_pct", 10)),
    ),
)  # fmt: skip


def _cell_blocks(ctx: Any) -> list[tuple[Any, Any]]:
    """One block per string that has been read, keyed by what its rows depend on."""
    blocks = []
    for name, s in ctx.plant.strings.items():
        if s.reading is not None:
            shape = tuple(c.index for c in s.reading.cells)

            def rows(name: str = name, index: int = s.index, shape: Any = shape) -> Any:
                return [((index, cell), (name, pos)) for pos, cell in enumerate(shape)]

            blocks.append(((name, s.index, shape), rows))
    return blocks


def _cell_rows(ctx: Any) -> list[tuple[tuple[int, ...], Any]]:
    return [row for _key, rows in _cell_blocks(ctx) for row in rows()]


def _resolve_cell(ctx: Any, key: tuple[str, int]) -> Any:
    s = ctx.plant.strings.get(key[0])
    if s is None or s.reading is None or key[1] >= len(s.reading.cells):
        return None
    return s.reading.cells[key[1]]


CELL_TABLE = Table(
    name="btmsCell",
    subid=4,
    description="Cells (BM-CS sensors) of every string that has been read.",
    entry_description="One cell, indexed by its string's index and its own index.",
    index=("btmsStringIndex", "btmsCellIndex"),
    rows=_cell_rows,
    blocks=_cell_blocks,
    resolve=_resolve_cell,
    columns=(
        _s("btmsCellIndex", 1, "Integer32 (1..120)", "Integer32", "Cell index in its string.",
           access="not-accessible"),
        _s("btmsCellStatus", 2, "BtmsDeviceStatus", "INTEGER", "Error if the sensor is lost.",
           get=lambda c, x: DEVICE_STATUS[int(c.device_status)]),
        _s("btmsCellVoltage", 3, "BtmsMilliValue", "Integer32", "Cell voltage.", units="V",
           get=lambda c, x: scaled(c.voltage_v, 1000)),
        _s("btmsCellResistance", 4, "BtmsMilliValue", "Integer32", "Internal resistance.",
           units="mOhm", get=lambda c, x: scaled(c.resistance_mohm, 1000)),
        _s("btmsCellTemperature", 5, "BtmsDeciValue", "Integer32", "Cell temperature.",
           units="degrees Celsius", get=lambda c, x: scaled(c.temperature_c, 10)),
        _s("btmsCellSoc", 6, "Integer32 (0..100)", "Integer32", "Cell state of charge.",
           units="%", get=lambda c, x: scaled(c.soc_pct, 1)),
        _s("btmsCellSoh", 7, "Integer32 (0..100)", "Integer32", "Cell state of health.",
           units="%", get=lambda c, x: scaled(c.soh_pct, 1)),
        _s("btmsCellFlags", 8, "BITS", "BITS", "Cell status bits.", bits=CELL_FLAG_BITS,
           get=lambda c, x: bits_value(int(c.status), 2)),
    ),
)  # fmt: skip


def _alarm_rows(ctx: Any) -> list[tuple[tuple[int, ...], Any]]:
    return [((idx,), alarm_id) for alarm_id, (idx, _) in ctx.alarms.items()]


ALARM_TABLE = Table(
    name="btmsAlarm",
    subid=5,
    description="Active alarms (raised and not yet cleared).",
    entry_description="One active alarm. The index is assigned when the agent first "
    "sees the alarm and stays the same while it is active.",
    index=("btmsAlarmIndex",),
    rows=_alarm_rows,
    resolve=lambda ctx, key: ctx.alarms[key][1] if key in ctx.alarms else None,
    source="alarms",
    columns=(
        _s("btmsAlarmIndex", 1, "Unsigned32 (1..4294967295)", "Unsigned32", "Row index.",
           access="not-accessible"),
        _s("btmsAlarmId", 2, "DisplayString", "OCTET STRING",
           "Stable alarm id (rule and object), e.g. cell_voltage_high:S1:17.",
           get=lambda a, c: a.alarm_id),
        _s("btmsAlarmRule", 3, "DisplayString", "OCTET STRING", "The rule that raised it.",
           get=lambda a, c: a.rule),
        _s("btmsAlarmSeverity", 4, "BtmsSeverity", "INTEGER", "Severity.",
           get=lambda a, c: int(a.severity)),
        _s("btmsAlarmObject", 5, "DisplayString", "OCTET STRING",
           "Where it applies: UPS/string[/cell], '-' for none.", get=lambda a, c: str(a.path)),
        _s("btmsAlarmValue", 6, "DisplayString", "OCTET STRING",
           "The value that raised it, in btmsAlarmUnit.", get=lambda a, c: text(a.value)),
        _s("btmsAlarmLimit", 7, "DisplayString", "OCTET STRING", "The limit it crossed.",
           get=lambda a, c: text(a.limit)),
        _s("btmsAlarmUnit", 8, "DisplayString", "OCTET STRING", "Unit of value and limit.",
           get=lambda a, c: a.unit),
        _s("btmsAlarmMessage", 9, "DisplayString", "OCTET STRING", "Human-readable text.",
           get=lambda a, c: a.message),
        _s("btmsAlarmRaisedAt", 10, "DateAndTime", "OCTET STRING", "When it was raised (UTC).",
           get=lambda a, c: date_and_time(a.raised_at)),
        _s("btmsAlarmAcknowledged", 11, "TruthValue", "INTEGER", "Acknowledged by someone.",
           get=lambda a, c: truth(a.acknowledged)),
        _s("btmsAlarmAcknowledgedBy", 12, "DisplayString", "OCTET STRING",
           "Who acknowledged it, empty if nobody.", get=lambda a, c: a.acknowledged_by or ""),
    ),
)  # fmt: skip

TABLES = (UPS_TABLE, STRING_TABLE, CELL_TABLE, ALARM_TABLE)

NOTIF_OBJECTS = (
    _s("btmsNotifAlarmId", 1, "DisplayString", "OCTET STRING", "Alarm id.",
       access="accessible-for-notify"),
    _s("btmsNotifObject", 2, "DisplayString", "OCTET STRING",
       "UPS/string[/cell] the alarm applies to.", access="accessible-for-notify"),
    _s("btmsNotifSeverity", 3, "BtmsSeverity", "INTEGER", "Alarm severity.",
       access="accessible-for-notify"),
    _s("btmsNotifValue", 4, "DisplayString", "OCTET STRING",
       "Value at the event, in btmsNotifUnit; empty if none.", access="accessible-for-notify"),
    _s("btmsNotifLimit", 5, "DisplayString", "OCTET STRING",
       "Limit of the rule; empty if none.", access="accessible-for-notify"),
    _s("btmsNotifUnit", 6, "DisplayString", "OCTET STRING", "Unit of value and limit.",
       access="accessible-for-notify"),
    _s("btmsNotifTime", 7, "DateAndTime", "OCTET STRING", "When the event happened (UTC).",
       access="accessible-for-notify"),
    _s("btmsNotifMessage", 8, "DisplayString", "OCTET STRING", "Human-readable text.",
       access="accessible-for-notify"),
    _s("btmsNotifAckBy", 9, "DisplayString", "OCTET STRING", "Who acknowledged the alarm.",
       access="accessible-for-notify"),
)  # fmt: skip

_ALARM_VARS = (
    "btmsNotifAlarmId",
    "btmsNotifObject",
    "btmsNotifSeverity",
    "btmsNotifValue",
    "btmsNotifLimit",
    "btmsNotifUnit",
    "btmsNotifTime",
    "btmsNotifMessage",
)
_STRING_VARS = ("btmsStringName", "btmsStringQuality", "btmsNotifTime")

NOTIFICATIONS = (
    Notification("btmsTrapAlarmRaised", 1, _ALARM_VARS, "An alarm was raised."),
    Notification("btmsTrapAlarmCleared", 2, _ALARM_VARS, "An alarm was cleared."),
    Notification(
        "btmsTrapAlarmAcknowledged",
        3,
        (*_ALARM_VARS, "btmsNotifAckBy"),
        "An alarm was acknowledged.",
    ),
    Notification(
        "btmsTrapStringOffline",
        4,
        _STRING_VARS,
        "A string went offline (no answer for the configured number of polls).",
    ),
    Notification(
        "btmsTrapStringOnline", 5, _STRING_VARS, "An offline string answers again (back online)."
    ),
)

# Sub-identifiers under the base, shared by the generator and the agent.
NOTIFICATIONS_ARC = 0
OBJECTS_ARC = 1
CONFORMANCE_ARC = 2
GATEWAY_ARC = 1  # under objects
NOTIF_OBJECTS_ARC = 6  # under objects


ENTERPRISES = (1, 3, 6, 1, 4, 1)
EXPERIMENTAL = (1, 3, 6, 1, 3)


def parse_oid(text_oid: str) -> tuple[int, ...]:
    """'1.3.6.1.4.1.8072.9999.9999' -> tuple; a clear error for anything else."""
    try:
        oid = tuple(int(p) for p in text_oid.strip().strip(".").split("."))
    except ValueError:
        raise ValueError(f"expected a dotted numeric OID, found {text_oid!r}") from None
    under = (oid[:6] == ENTERPRISES and len(oid) > 6) or (oid[:5] == EXPERIMENTAL and len(oid) > 5)
    if not under:
        raise ValueError(
            "expected an OID under enterprises (1.3.6.1.4.1.N...) or experimental "
            f"(1.3.6.1.3.N...), found {text_oid!r}"
        )
    if any(p > 4294967295 for p in oid):
        raise ValueError(f"OID arcs must be 0..4294967295, found {text_oid!r}")
    return oid


def object_oids(base: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Every named object's OID (scalars without .0, columns without index)."""
    objects = (*base, OBJECTS_ARC)
    out = {s.name: (*objects, GATEWAY_ARC, s.subid) for s in SCALARS}
    for t in TABLES:
        entry = (*objects, t.subid, 1)
        out.update({c.name: (*entry, c.subid) for c in t.columns})
    out.update({o.name: (*objects, NOTIF_OBJECTS_ARC, o.subid) for o in NOTIF_OBJECTS})
    out.update({n.name: (*base, NOTIFICATIONS_ARC, n.subid) for n in NOTIFICATIONS})
    return out
