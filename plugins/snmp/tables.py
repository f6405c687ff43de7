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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from btms_gateway.core.api import QUANTITIES, Level, Quality, Quantity, placed

from .conventions import (
    DEVICE_STATUS,
    date_and_time,
    mib_name,
    position,
    text,
    truth,
)
from .smi import Notification, Obj, Table, bits_value, scaled

MODULE = "BTMS-GATEWAY-MIB"
DEFAULT_BASE = "1.3.6.1.4.1.8072.9999.9999"
COUNTER_WRAP = 1 << 32


def _counter(field: str) -> Any:
    def get(s: Any, ctx: Any) -> int | None:
        c = ctx.counters(s.name)
        return None if c is None else getattr(c, field) % COUNTER_WRAP

    return get


def _s(name: str, sub: int, syntax: str, base: str, desc: str, **kw: Any) -> Obj:
    return Obj(name, sub, syntax, base, desc, **kw)


@dataclass(frozen=True, slots=True)
class Column:
    """Where one plant quantity (core's table, keyed by level and key) sits in its
    MIB table: column name, sub-identifier, syntax, the MIB's own description and
    units text. ``get`` replaces the getter derived from the table's read (a data
    age, computed when asked); ``numbers`` an enumeration's numbering from 1 in the
    table's order (the device status keeps the BM-GW's)."""

    name: str
    subid: int
    syntax: str
    description: str
    units: str | None = None
    get: Callable[[Any, Any], Any] | None = None
    numbers: Mapping[int, int] | None = None


#: the SMI base type of each kind of quantity
BASES = {"number": "Integer32", "count": "Gauge32", "enum": "INTEGER", "bits": "BITS",
         "bool": "INTEGER"}  # fmt: skip
#: a number's syntax by its scale (counts per unit): the DISPLAY-HINT conventions
SCALED_SYNTAX = {100: "BtmsCentiValue", 1000: "BtmsMilliValue", 10: "BtmsDeciValue"}
#: units the MIB spells out
UNITS_TEXT = {"C": "degrees Celsius", "s": "seconds"}


def _string_age(s: Any, c: Any) -> int | None:
    return None if s.reading is None else int(s.age_s(c.now) or 0)


def _ups_age(u: Any, c: Any) -> int | None:
    """As the Modbus data-age register: absent while a string of it was never read."""
    strings = c.plant.strings
    if u.read_at is None or any(strings[n].reading is None for n in u.strings if n in strings):
        return None
    return int(max(0.0, c.now - u.read_at))


U, S, C = Level.UPS, Level.STRING, Level.CELL
PCT = "Integer32 (0..100)"
# fmt: off
#: today's columns, keyed by (level, key) of the quantity table: they never move
COLUMNS: dict[tuple[Level, str], Column] = {
    (U, "status"): Column("btmsUpsStatus", 3, "BtmsDeviceStatus", "Error if any string errs.",
                          numbers=DEVICE_STATUS),
    (U, "quality"): Column("btmsUpsQuality", 4, "BtmsQuality", "Worst quality of its strings."),
    (U, "voltage"): Column("btmsUpsVoltage", 5, "BtmsCentiValue", "Mean of string voltages.",
                           "V"),
    (U, "current"): Column("btmsUpsCurrent", 6, "BtmsCentiValue",
                           "Sum of string currents, positive = charging.", "A"),
    (U, "soc"): Column("btmsUpsSoc", 7, PCT, "Mean of string SOC.", "%"),
    (U, "string_count"): Column("btmsUpsStringCount", 8, "Gauge32", "Strings in this UPS."),
    # a gap filled by the quantity table (issue 25): fixed from now on
    (U, "data_age"): Column("btmsUpsDataAge", 9, "Gauge32",
                            "Seconds since its oldest string values were read; absent while "
                            "a string of it was never read.", "seconds", _ups_age),
    (S, "quality"): Column("btmsStringQuality", 5, "BtmsQuality",
                           "Whether the values are current."),
    (S, "data_age"): Column("btmsStringDataAge", 6, "Gauge32",
                            "Seconds since the values were read; absent if never read.",
                            "seconds", _string_age),
    (S, "status"): Column("btmsStringStatus", 7, "BtmsDeviceStatus", "BM-GW string status.",
                          numbers=DEVICE_STATUS),
    (S, "voltage"): Column("btmsStringVoltage", 8, "BtmsCentiValue", "String voltage.", "V"),
    (S, "current"): Column("btmsStringCurrent", 9, "BtmsCentiValue",
                           "String current, positive = charging.", "A"),
    (S, "soc"): Column("btmsStringSoc", 10, PCT, "String state of charge.", "%"),
    (S, "soh"): Column("btmsStringSoh", 11, PCT,
                       "String state of health, derived by the gateway as the lowest cell SOH.",
                       "%"),
    (S, "balance"): Column("btmsStringBalance", 12, "BtmsCentiValue", "String balance.", "%"),
    (S, "state"): Column("btmsStringState", 13, "BtmsChargeState", "String state."),
    (S, "alarm_word"): Column("btmsStringAlarms", 14, "BITS",
                              "The string master's own alarm word; currentHighCharge and "
                              "currentHighDischarge are its over-current alarms while charging "
                              "and while discharging."),
    (S, "cell_count"): Column("btmsStringCellCount", 15, "Gauge32",
                              "Cells found by auto-addressing."),
    (S, "ambient_temperature"): Column("btmsStringAmbientTemp", 16, "BtmsDeciValue",
                                       "Ambient temperature; absent when no sensor is fitted.",
                                       "degrees Celsius"),
    (S, "ambient_humidity"): Column("btmsStringAmbientHumidity", 17, "BtmsDeciValue",
                                    "Ambient humidity; absent when no sensor is fitted.", "%RH"),
    (S, "relay_closed"): Column("btmsStringRelayClosed", 18, "TruthValue", "Relay closed."),
    (S, "aux_input_on"): Column("btmsStringAuxInputOn", 19, "TruthValue",
                                "Auxiliary input on."),
    (S, "runtime_remaining"): Column(
        "btmsStringRuntimeRemaining", 22, "Integer32 (0..2147483647)",
        "Estimated runtime left to the end voltage while a discharge runs, derived by the "
        "gateway (Peukert-corrected charge counting against the rated capacity); absent "
        "while no discharge runs, no rated capacity is configured, or the string is not good.",
        "seconds"),
    (S, "depth_of_discharge"): Column(
        "btmsStringDepthOfDischarge", 23, "BtmsDeciValue",
        "Depth of discharge of the running discharge, corrected for Peukert's law, derived "
        "by the gateway; absent as btmsStringRuntimeRemaining is.", "%"),
    (C, "status"): Column("btmsCellStatus", 2, "BtmsDeviceStatus", "Error if the sensor is lost.",
                          numbers=DEVICE_STATUS),
    (C, "voltage"): Column("btmsCellVoltage", 3, "BtmsMilliValue", "Cell voltage.", "V"),
    (C, "resistance"): Column("btmsCellResistance", 4, "BtmsMilliValue", "Internal resistance.",
                              "mOhm"),
    (C, "temperature"): Column("btmsCellTemperature", 5, "BtmsDeciValue", "Cell temperature.",
                               "degrees Celsius"),
    (C, "soc"): Column("btmsCellSoc", 6, PCT, "Cell state of charge.", "%"),
    (C, "soh"): Column("btmsCellSoh", 7, PCT, "Cell state of health.", "%"),
    (C, "flags"): Column("btmsCellFlags", 8, "BITS", "Cell status bits."),
}
# fmt: on

#: quantities the MIB does not carry as columns, and why: btmsAlarmTable lists every
#: active alarm with the object it concerns (and btmsGwActiveAlarms counts them)
NOT_SERVED: dict[tuple[Level, str], str] = {
    (U, "active_alarms"): "btmsAlarmTable",
    (U, "alarm_severity"): "btmsAlarmTable",
    (S, "active_alarms"): "btmsAlarmTable",
    (S, "alarm_severity"): "btmsAlarmTable",
}
TABLE_NAMES = {U: "btmsUps", S: "btmsString", C: "btmsCell"}


def _getter(q: Quantity, numbers: Mapping[int, int] | None = None) -> Callable[[Any, Any], Any]:
    """A column's getter from the table's read of the row (a UPS, a string, a cell),
    encoded by kind: a number scaled to its resolution, an enumeration numbered
    from 1 in the table's order, bits as BITS, a bool as TruthValue."""
    read = q.read
    assert read is not None
    if q.kind == "number":
        factor = q.scale
        return lambda row, c: scaled(read(row), factor)
    if q.kind == "enum":
        by_value = numbers or position(q.values)
        return lambda row, c: None if (v := read(row)) is None else by_value[int(v)]
    if q.kind == "bits":
        width = len(q.values)
        return lambda row, c: None if (v := read(row)) is None else bits_value(int(v), width)
    if q.kind == "bool":
        return lambda row, c: truth(read(row))  # type: ignore[arg-type]  # a bool quantity reads bool | None
    return lambda row, c: read(row)


def _column(q: Quantity, col: Column) -> Obj:
    bits = (
        tuple((mib_name(name), bit) for bit, name in q.values.items()) if q.kind == "bits" else ()
    )
    return Obj(col.name, col.subid, col.syntax, BASES[q.kind], col.description,
               units=col.units, get=col.get or _getter(q, col.numbers), bits=bits)  # fmt: skip


def quantity_columns(level: Level, table: Iterable[Quantity], after: int) -> list[Obj]:
    """The columns of one level's quantities: each at its placement; one without a
    placement at the next sub-identifier after ``after`` (the table's last),
    its syntax by kind and scale."""
    out: list[Obj] = []
    for q, col in placed(level, table, COLUMNS, NOT_SERVED):
        if col is None:
            after += 1
            syntax = (
                SCALED_SYNTAX.get(q.scale, "Integer32") if q.kind == "number"
                else "TruthValue" if q.kind == "bool" else BASES[q.kind]
            )  # fmt: skip
            words = q.description[:1].upper() + q.description[1:]
            col = Column(f"{TABLE_NAMES[level]}{mib_name(q.key, upper=True)}", after, syntax,
                         f"{words}.", UNITS_TEXT.get(q.unit, q.unit or None))  # fmt: skip
        out.append(_column(q, col))
    return out


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


UPS_IDENTITY = (
    _s("btmsUpsIndex", 1, "Integer32 (1..32)", "Integer32", "UPS index, as on the BM-GW.",
       access="not-accessible"),
    _s("btmsUpsName", 2, "DisplayString", "OCTET STRING", "Configured UPS name.",
       get=lambda u, c: u.name),
)  # fmt: skip


def _string_rows(ctx: Any) -> list[tuple[tuple[int, ...], Any]]:
    return [((s.index,), name) for name, s in ctx.plant.strings.items()]


STRING_IDENTITY = (
    _s("btmsStringIndex", 1, "Integer32 (1..128)", "Integer32",
       "String index, as on the BM-GW.", access="not-accessible"),
    _s("btmsStringName", 2, "DisplayString", "OCTET STRING", "Configured string name.",
       get=lambda s, c: s.name),
    _s("btmsStringUpsIndex", 3, "Integer32 (0..32)", "Integer32",
       "btmsUpsIndex of its UPS, 0 = none.", get=lambda s, c: s.ups_index),
    _s("btmsStringSlaveId", 4, "Integer32 (1..247)", "Integer32",
       "Modbus slave id of its string master.", get=lambda s, c: s.slave_id),
    _s("btmsStringPolls", 20, "Counter32", "Counter32", "Polls of this string.",
       get=_counter("polls")),
    _s("btmsStringPollsFailed", 21, "Counter32", "Counter32", "Failed polls of this string.",
       get=_counter("polls_failed")),
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


CELL_IDENTITY = (
    _s("btmsCellIndex", 1, "Integer32 (1..120)", "Integer32", "Cell index in its string.",
       access="not-accessible"),
)  # fmt: skip


def _columns(level: Level, identity: tuple[Obj, ...], table: Iterable[Quantity]) -> tuple[Obj, ...]:
    placed = (col.subid for (lv, _), col in COLUMNS.items() if lv is level)
    after = max(*(c.subid for c in identity), *placed)
    columns = (*identity, *quantity_columns(level, table, after))
    return tuple(sorted(columns, key=lambda c: c.subid))


# fmt: off
#: each level's table: (level, sub-id, its identity columns, description, entry
#: description, index, rows, resolve, blocks); the columns come from the quantities
LEVEL_TABLES: tuple[tuple[Any, ...], ...] = (
    (U, 2, UPS_IDENTITY, "Battery systems (UPS): the aggregate of their strings.",
     "One battery system.", ("btmsUpsIndex",), _ups_rows,
     lambda ctx, key: ctx.plant.ups.get(key), None),
    (S, 3, STRING_IDENTITY, "Battery strings (one BM-SM string master each).",
     "One string. Value columns of a string never read are absent; those of a stale or "
     "offline string hold the last good values (see btmsStringQuality and btmsStringDataAge).",
     ("btmsStringIndex",), _string_rows, lambda ctx, key: ctx.plant.strings.get(key), None),
    (C, 4, CELL_IDENTITY, "Cells (BM-CS sensors) of every string that has been read.",
     "One cell, indexed by its string's index and its own index.",
     ("btmsStringIndex", "btmsCellIndex"), _cell_rows, _resolve_cell, _cell_blocks),
)
# fmt: on


def quantity_tables(table: Iterable[Quantity] = QUANTITIES) -> tuple[Table, ...]:
    """The UPS, string and cell tables of one quantity table (a gateway's:
    core's and the plugins' quantities)."""
    table = tuple(table)
    return tuple(
        Table(TABLE_NAMES[level], subid, description, entry, index,
              _columns(level, identity, table), rows, resolve, blocks=blocks)
        for level, subid, identity, description, entry, index, rows, resolve, blocks
        in LEVEL_TABLES
    )  # fmt: skip


UPS_TABLE, STRING_TABLE, CELL_TABLE = quantity_tables()


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

#: the tables of core's own quantity table (the MIB text, the docs); an agent serves
#: ``mib_tables(table_of(gateway))``
TABLES = (UPS_TABLE, STRING_TABLE, CELL_TABLE, ALARM_TABLE)


def mib_tables(table: Iterable[Quantity] = QUANTITIES) -> tuple[Table, ...]:
    return (*quantity_tables(table), ALARM_TABLE)


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


def object_oids(
    base: tuple[int, ...], tables: tuple[Table, ...] = TABLES
) -> dict[str, tuple[int, ...]]:
    """Every named object's OID (scalars without .0, columns without index)."""
    objects = (*base, OBJECTS_ARC)
    out = {s.name: (*objects, GATEWAY_ARC, s.subid) for s in SCALARS}
    for t in tables:
        entry = (*objects, t.subid, 1)
        out.update({c.name: (*entry, c.subid) for c in t.columns})
    out.update({o.name: (*objects, NOTIF_OBJECTS_ARC, o.subid) for o in NOTIF_OBJECTS})
    out.update({n.name: (*base, NOTIFICATIONS_ARC, n.subid) for n in NOTIFICATIONS})
    return out
