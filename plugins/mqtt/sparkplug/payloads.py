"""Sparkplug B payloads, encoded with the classes protoc generated from Eclipse
Tahu's sparkplug_b.proto (``sparkplug_b_pb2``, vendored beside this module).

The gateway is the edge node and each string a device. Metric aliases are
fixed numbers, ``string index << 12 | slot`` (quantities.py), the same in
every session and release, so a data message names no metric: the aliases
declared in the device's birth certificate say which is which. The node's
own metrics use aliases below 64 and the Alarms device 64..127 (no string
has index 0). Datatypes go into births only: a host learns them there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from btms_gateway.core.api import Quality

from ..quantities import CELL_STRIDE, STRING, DataType, metric_name, unslot
from . import sparkplug_b_pb2 as pb

INT32, INT64, UINT16, UINT32 = DataType.INT32, DataType.INT64, DataType.UINT16, DataType.UINT32
UINT64, FLOAT, DOUBLE = DataType.UINT64, DataType.FLOAT, DataType.DOUBLE
BOOLEAN, TEXT = DataType.BOOLEAN, DataType.STRING

#: Metric "Quality" property values as Ignition and other Sparkplug hosts read them
QUALITY_CODE = {Quality.GOOD: 192, Quality.STALE: 500, Quality.OFFLINE: 0}
QUALITY_SLOT = 0

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"

#: the node's metrics: (name, alias, datatype)
NODE_METRICS = (
    (BDSEQ, 0, INT64),
    (REBIRTH, 1, BOOLEAN),
    ("Properties/Gateway", 2, TEXT),
    ("Properties/Software Version", 3, TEXT),
    ("Properties/Strings", 4, UINT16),
    ("Store and Forward/Pending", 5, UINT64),
    ("Store and Forward/Dropped Readings", 6, UINT64),
)

#: the Alarms device's metrics: (name, alias, datatype), the event's fields first
ALARM_METRICS = (
    ("Event/Seq", 64, UINT64),
    ("Event/Kind", 65, TEXT),
    ("Event/Alarm Id", 66, TEXT),
    ("Event/Rule", 67, TEXT),
    ("Event/Severity", 68, TEXT),
    ("Event/Path", 69, TEXT),
    ("Event/Value", 70, DOUBLE),
    ("Event/Limit", 71, DOUBLE),
    ("Event/Unit", 72, TEXT),
    ("Event/Message", 73, TEXT),
    ("Event/By", 74, TEXT),
    ("Active/Total", 80, UINT32),
    ("Active/Critical", 81, UINT32),
    ("Active/Alarm", 82, UINT32),
    ("Active/Warning", 83, UINT32),
    ("Active/Unacknowledged", 84, UINT32),
)
_EVENT_KEYS: tuple[str, ...] = ("seq", "kind", "alarm_id", "rule", "severity", "path", "value")
_EVENT_KEYS = (*_EVENT_KEYS, "limit", "unit", "message", "by")
_ACTIVE_KEYS = ("total", "critical", "alarm", "warning", "unacknowledged")


def alias(string_index: int, s: int) -> int:
    return string_index << 12 | s


def set_value(m: Any, datatype: int, value: Any) -> None:
    """Put ``value`` in the field the datatype uses (None: ``is_null``)."""
    if value is None:
        m.is_null = True
    elif datatype == FLOAT:
        m.float_value = value
    elif datatype == TEXT:
        m.string_value = value
    elif datatype in (UINT16, UINT32):
        m.int_value = value
    elif datatype == INT32:
        m.int_value = value & 0xFFFFFFFF
    elif datatype == BOOLEAN:
        m.boolean_value = value
    elif datatype == DOUBLE:
        m.double_value = value
    else:  # INT64, UINT64, DateTime
        m.long_value = value & 0xFFFFFFFFFFFFFFFF


def _quality(m: Any, quality: Quality) -> None:
    props = m.properties
    props.keys.append("Quality")
    v = props.values.add()
    v.type = INT32
    v.int_value = QUALITY_CODE[quality]


def _payload(ts_ms: int, seq: int | None) -> Any:
    p = pb.Payload()
    p.timestamp = ts_ms
    if seq is not None:
        p.seq = seq
    return p


def node_birth(
    ts_ms: int, bdseq: int, properties: Mapping[str, Any], pending: int, dropped: int
) -> bytes:
    """NBIRTH: seq 0, the bdSeq of this session's will, the rebirth control."""
    p = _payload(ts_ms, 0)
    values = {BDSEQ: bdseq, REBIRTH: False, "Store and Forward/Pending": pending}
    values |= {"Store and Forward/Dropped Readings": dropped}
    values |= {f"Properties/{k}": v for k, v in properties.items()}
    for name, a, datatype in NODE_METRICS:
        m = p.metrics.add()
        m.name, m.alias, m.timestamp, m.datatype = name, a, ts_ms, datatype
        set_value(m, datatype, values.get(name))
    return bytes(p.SerializeToString())


def node_death(ts_ms: int, bdseq: int) -> bytes:
    """NDEATH (the will of a session): the bdSeq of the NBIRTH it ends, no seq."""
    p = _payload(ts_ms, None)
    m = p.metrics.add()
    m.name, m.timestamp, m.datatype = BDSEQ, ts_ms, INT64
    m.long_value = bdseq
    return bytes(p.SerializeToString())


def device_birth(
    ts_ms: int,
    seq: int,
    string_index: int,
    values: Iterable[tuple[int, Any]],
    quality: Quality,
    at_ms: int,
    changed_ms: int,
) -> bytes:
    """DBIRTH: every metric with name, alias, datatype, unit and quality."""
    p = _payload(ts_ms, seq)
    base = string_index << 12
    for s, value in values:
        quantity = unslot(s)[1]
        m = p.metrics.add()
        m.name = metric_name(s)
        m.alias = base | s
        m.timestamp = changed_ms if s == QUALITY_SLOT else at_ms
        m.datatype = quantity.datatype
        set_value(m, quantity.datatype, value)
        if quantity.unit:
            m.properties.keys.append("engUnit")
            u = m.properties.values.add()
            u.type = TEXT
            u.string_value = quantity.unit
        _quality(m, quality)
    return bytes(p.SerializeToString())


def device_data(
    ts_ms: int,
    seq: int,
    string_index: int,
    values: Iterable[tuple[int, Any]],
    at_ms: int,
    changed_ms: int,
    quality: Quality | None = None,
    historical: bool = False,
    known: frozenset[int] | set[int] | None = None,
) -> bytes:
    """DDATA: the changed metrics by alias. ``quality`` (on a change of
    quality) adds the Quality property to every metric; ``historical`` marks
    replayed values so a host files them without moving its live value;
    ``known`` (the slots of the current birth) leaves out any other."""
    p = _payload(ts_ms, seq)
    base = string_index << 12
    for s, value in values:
        if known is not None and s not in known:
            continue
        m = p.metrics.add()
        m.alias = base | s
        m.timestamp = changed_ms if s == QUALITY_SLOT else at_ms
        if historical:
            m.is_historical = True
        datatype = (STRING[s] if s < CELL_STRIDE else unslot(s)[1]).datatype
        set_value(m, datatype, value)
        if quality is not None:
            _quality(m, quality)
    return bytes(p.SerializeToString())


def device_death(ts_ms: int, seq: int) -> bytes:
    return bytes(_payload(ts_ms, seq).SerializeToString())


def alarms_birth(ts_ms: int, seq: int, active: Mapping[str, int]) -> bytes:
    """DBIRTH of the Alarms device: the event metrics (null until an event) and
    the active alarm counts."""
    p = _payload(ts_ms, seq)
    counts = dict(zip([n for n, _, _ in ALARM_METRICS[-5:]], _ACTIVE_KEYS, strict=True))
    for name, a, datatype in ALARM_METRICS:
        m = p.metrics.add()
        m.name, m.alias, m.timestamp, m.datatype = name, a, ts_ms, datatype
        key = counts.get(name)
        set_value(m, datatype, active.get(key, 0) if key else None)
    return bytes(p.SerializeToString())


def alarm_data(
    ts_ms: int, seq: int, event: Mapping[str, Any], active: Mapping[str, int], historical: bool
) -> bytes:
    """DDATA of the Alarms device for one event (``event`` in the JSON shape of
    ``serialize.event_dict``), stamped with the event's time."""
    p = _payload(ts_ms, seq)
    at_ms = int(event["at"] * 1000)
    fields = dict(event)
    fields["path"] = event["path"]["text"]
    values = [fields.get(k) for k in _EVENT_KEYS] + [active.get(k, 0) for k in _ACTIVE_KEYS]
    for (_, a, datatype), value in zip(ALARM_METRICS, values, strict=True):
        m = p.metrics.add()
        m.alias, m.timestamp = a, at_ms
        if historical:
            m.is_historical = True
        set_value(m, datatype, float(value) if datatype == DOUBLE and value is not None else value)
    return bytes(p.SerializeToString())


def parse(payload: bytes) -> Any:
    """A received payload (an NCMD) as the generated class."""
    p = pb.Payload()
    p.ParseFromString(payload)
    return p
