"""The ONE declarative table of the BACnet objects the gateway serves.

The device (device.py), the image that keeps values current (image.py), the
EDE export (ede.py) and the generated docs (docs/bacnet-objects.md) all read
these rows, so the documented object list cannot drift from the served one.

Instance numbers are computed from the plant position, never from creation
order, so they stay stable when strings are added or the cell scope changes:

* the gateway itself, offset q:        q
* UPS u, quantity offset q:            100000 + 100*u + q
* string s, offset q:                  200000 + 100*s + q
* cell summary of string s:            300000 + 100*s + 10*q + stat (min 0, max 1, mean 2)
* cell c of string s, offset q:      1000000 + 10000*s + 10*c + q
* structured views: plant 1, UPS 100000 + 100*u, string 200000 + 100*s,
  cell 1000000 + 10000*s + 10*c

so ``analog-input 1031172`` reads as "string 3, cell 117, quantity 2".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from btms_gateway.core import api

ObjectKind = Literal["analogInput", "binaryInput", "multiStateInput", "structuredView"]
Scope = Literal["gateway", "ups", "string", "cell", "summary", "view"]


@dataclass(frozen=True, slots=True)
class Quantity:
    """One object row: a plant quantity (core's table) as every object of its row shows it."""

    key: str  # stable name part: "voltage"
    offset: int  # instance offset inside its scope block
    kind: ObjectKind
    label: str  # description text: "voltage"
    units: str = "noUnits"  # bacpypes3 EngineeringUnits attribute name
    unit_text: str = ""  # what the docs print: "V"
    cov_increment: float | None = None
    resolution: float | None = None
    min_value: float | None = None  # docs/device.md measurement range (EDE min/max)
    max_value: float | None = None
    states: tuple[str, ...] = ()  # multi-state texts / binary (inactive, active)
    #: value source: a reading field name (cells), or a function of the level's snapshot
    source: str | Callable[[Any], Any] = ""
    #: the present value is the snapshot's data age when the object is read
    age: bool = False
    #: a status value (quality, data age): served with no fault while its string is not GOOD
    status: bool = False
    #: a row the first release of the table did not have (see ``Placement.later``)
    later: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    """What is fixed on the wire for one plant quantity: its offset (and so its
    instance numbers), its name part and label, and the presentation core's table
    does not hold (COV increment, the device's measurement range, binary texts).
    ``bits`` spreads a bit word over one binary input a bit, from ``offset`` on."""

    offset: int
    key: str = ""  # name part, when not the quantity's key
    label: str = ""  # description, when not the quantity's
    cov_increment: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    states: tuple[str, ...] = ()
    bits: bool = False
    #: added after the first release (a filled gap, a plugin's quantity): the EDE file
    #: numbers its state texts after the first release's, so those references stay
    later: bool = False


#: the unit of core's table -> bacpypes3 EngineeringUnits attribute name
UNITS: dict[str, str] = {
    "V": "volts",
    "A": "amperes",
    "%": "percent",
    "%RH": "percentRelativeHumidity",
    "C": "degreesCelsius",
    "mOhm": "milliohms",
    "s": "seconds",
    "": "noUnits",
}
KIND_OBJECTS: dict[str, ObjectKind] = {
    "number": "analogInput",
    "count": "analogInput",
    "enum": "multiStateInput",
    "bool": "binaryInput",
}
ALARM_STATES = ("normal", "alarm")
U, S, C = api.Level.UPS, api.Level.STRING, api.Level.CELL

# fmt: off
#: today's objects, keyed by (level, key) of core's table: instance numbers never move
PLACEMENTS: dict[tuple[api.Level, str], Placement] = {
    (U, "voltage"): Placement(1, label="voltage (mean of its strings)", cov_increment=0.5,
                              min_value=20, max_value=1000),
    (U, "current"): Placement(2, label="current (sum of its strings, + charge)",
                              cov_increment=1.0, min_value=-32000, max_value=32000),
    (U, "soc"): Placement(3, label="state of charge (mean of its strings)", cov_increment=1.0,
                          min_value=0, max_value=100),
    # gaps filled by the quantity table (issue 25): these offsets are fixed from now on
    (U, "status"): Placement(4, label="status (error if any of its strings errs)", later=True),
    (U, "quality"): Placement(5, label="data quality (the worst of its strings)", later=True),
    (U, "string_count"): Placement(6, label="strings in this UPS", cov_increment=1.0, later=True),
    (U, "data_age"): Placement(7, label="data age: of its oldest string values",
                               cov_increment=5.0, later=True),
    (S, "voltage"): Placement(1, label="voltage", cov_increment=0.5, min_value=20,
                              max_value=1000),
    (S, "current"): Placement(2, label="current (+ charge, - discharge)", cov_increment=1.0,
                              min_value=-1000, max_value=1000),
    (S, "soc"): Placement(3, label="state of charge", cov_increment=1.0, min_value=0,
                          max_value=100),
    (S, "balance"): Placement(4, label="balance", cov_increment=0.5, min_value=0, max_value=100),
    (S, "ambient_temperature"): Placement(5, label="ambient temperature (BM-TH)",
                                          cov_increment=0.5, min_value=-40, max_value=80),
    (S, "ambient_humidity"): Placement(6, label="ambient humidity (BM-TH)", cov_increment=1.0,
                                       min_value=0, max_value=100),
    (S, "state"): Placement(7, label="string state"),
    (S, "relay_closed"): Placement(8, key="relay", label="relay", states=("open", "closed")),
    (S, "aux_input_on"): Placement(9, key="aux", label="auxiliary input", states=("off", "on")),
    (S, "alarm_word"): Placement(10, key="alarm", label="BM-SM alarm", bits=True),
    # gaps filled by the quantity table (issue 25): these offsets are fixed from now on
    (S, "status"): Placement(17, label="status (error: data not GOOD, state abnormal or any "
                             "alarm bit)", later=True),
    (S, "quality"): Placement(18, label="data quality (good: its values are current)", later=True),
    (S, "data_age"): Placement(19, label="data age: seconds since its values were read",
                               cov_increment=5.0, later=True),
    (S, "soh"): Placement(20, label="state of health (the lowest cell SOH)", cov_increment=1.0,
                          min_value=0, max_value=100, later=True),
    (S, "cell_count"): Placement(21, label="cells found by auto-addressing", cov_increment=1.0,
                                 min_value=0, max_value=120, later=True),
    (S, "runtime_remaining"): Placement(
        22, label="estimated runtime left to the end voltage (while discharging)",
        cov_increment=60.0, min_value=0, max_value=360_000, later=True),
    (S, "depth_of_discharge"): Placement(
        23, label="depth of discharge of the running discharge", cov_increment=1.0,
        min_value=0, max_value=100, later=True),
    (C, "voltage"): Placement(0, label="voltage", cov_increment=0.005, min_value=1.6,
                              max_value=15.6),
    (C, "resistance"): Placement(1, label="internal resistance", cov_increment=0.05,
                                 min_value=0.1, max_value=50),
    (C, "temperature"): Placement(2, label="temperature", cov_increment=0.5, min_value=-20,
                                  max_value=85),
    (C, "soc"): Placement(3, label="state of charge", cov_increment=1.0, min_value=0,
                          max_value=100),
    (C, "soh"): Placement(4, label="state of health", cov_increment=1.0, min_value=0,
                          max_value=100),
}
# fmt: on

#: quantities the objects do not serve, and why (docs/bacnet.md): a BACnet client sees
#: an alarm as the event state of the objects it concerns, and a cell's status as its
#: objects' reliability (no-sensor, communication-failure)
NOT_SERVED: dict[tuple[api.Level, str], str] = {
    (U, "active_alarms"): "event state of each object",
    (U, "alarm_severity"): "event state of each object",
    (S, "active_alarms"): "event state of each object",
    (S, "alarm_severity"): "event state of each object",
    (C, "status"): "reliability of the cell's objects",
    (C, "flags"): "reliability of the cell's objects (sensor lost: no-sensor)",
}
#: a level's block holds offsets 1..99 (UPS, string) or 0..9 (cell: 10 a cell)
OFFSET_LIMIT = {U: 100, S: 100, C: 10}


def state_texts(q: api.Quantity) -> tuple[str, ...]:
    """A multi-state object's texts: the quantity's value names, as words."""
    return tuple(name.replace("_", " ") for name in q.values.values())


def _state_of(q: api.Quantity) -> Callable[[Any], Any]:
    """Present value of a multi-state object: 1-based position of the value among
    the quantity's values (BACnet numbers states from 1)."""
    read = q.read
    assert read is not None
    position = {value: n for n, value in enumerate(q.values, start=1)}
    unknown = len(position)

    def state(obj: Any) -> int | None:
        v = read(obj)
        return None if v is None else position.get(int(v), unknown)

    return state


def _bit_of(q: api.Quantity, bit: int) -> Callable[[Any], Any]:
    read = q.read
    assert read is not None
    mask = 1 << bit

    def flag(obj: Any) -> bool | None:
        v = read(obj)
        return None if v is None else bool(int(v) & mask)

    return flag


def _rows(q: api.Quantity, place: Placement) -> list[Quantity]:
    """The object rows of one quantity at its placement."""
    key, label = place.key or q.key, place.label or q.description
    if place.bits:
        return [
            Quantity(f"{key}_{name}", place.offset + n, "binaryInput",
                     f"{label}: {name.replace('_', ' ')}", states=ALARM_STATES,
                     source=_bit_of(q, bit), later=place.later)
            for n, (bit, name) in enumerate(q.values.items())
        ]  # fmt: skip
    kind = KIND_OBJECTS[q.kind]
    source: str | Callable[[Any], Any]
    if q.level is C and q.json_key:
        source = q.json_key  # core's cell values: the image reads them by field (image.Cells)
    elif kind == "multiStateInput":
        source = _state_of(q)
    else:
        source = q.read or ""
    states = place.states or (
        state_texts(q) if kind == "multiStateInput" else ("false", "true") if kind == "binaryInput"
        else ()
    )  # fmt: skip
    analog = kind == "analogInput"
    return [
        Quantity(key, place.offset, kind, label,
                 UNITS.get(q.unit, "noUnits") if analog else "noUnits", q.unit,
                 place.cov_increment if place.cov_increment is not None or not analog
                 else q.resolution or 1.0,
                 q.resolution if analog else None, place.min_value, place.max_value, states,
                 source, age=q.key == "data_age" and q.read is None,
                 status=q.role is api.Role.STATUS, later=place.later)
    ]  # fmt: skip


def object_rows(
    level: api.Level, table: Iterable[api.Quantity] = api.QUANTITIES
) -> tuple[Quantity, ...]:
    """The object rows of one level derived from the quantity table: each quantity
    at its placement, one without a placement at the next free offset of its
    block (its object type by kind: analog, multi-state or binary input; for a
    cell, an object of each cell, its value the quantity's read of the cell)."""
    chosen = list(api.placed(level, table, PLACEMENTS, NOT_SERVED))
    rows = [row for q, place in chosen if place is not None for row in _rows(q, place)]
    free = max((r.offset for r in rows), default=0) + 1
    for q, place in chosen:
        if place is None:
            made = _rows(q, Placement(free, bits=q.kind == "bits", later=True))
            rows += made
            free += len(made)
    if free > OFFSET_LIMIT[level]:
        raise TableError(f"BACnet {level.value} objects: more than {OFFSET_LIMIT[level]} a block")
    return tuple(sorted(rows, key=lambda r: r.offset))


#: objects about the gateway itself; their present value is whether the
#: gateway alarm of the same name is active (image.py), so they have no source
GATEWAY_QUANTITIES: tuple[Quantity, ...] = (
    Quantity("event_log_failing", 1, "binaryInput",
             "event log failing: alarm events are delivered but not written",
             states=("normal", "failing")),
    Quantity("history_paused", 2, "binaryInput",
             "history paused: readings are not being recorded (disk full, file read-only)",
             states=("normal", "paused")),
)  # fmt: skip


class TableError(ValueError):
    """The layout and settings cannot give a consistent object table."""


#: the rows of core's own table (the docs' listing; a gateway's table is built per plant)
UPS_QUANTITIES = object_rows(U)
STRING_QUANTITIES = object_rows(S)
CELL_QUANTITIES = object_rows(C)

SUMMARY_STATS = ("min", "max", "mean")

GATEWAY_BASE, UPS_BASE, STRING_BASE, SUMMARY_BASE, CELL_BASE = (
    0, 100_000, 200_000, 300_000, 1_000_000,
)  # fmt: skip


def gateway_instance(offset: int) -> int:
    return GATEWAY_BASE + offset


def ups_instance(u: int, offset: int = 0) -> int:
    return UPS_BASE + 100 * u + offset


def string_instance(s: int, offset: int = 0) -> int:
    return STRING_BASE + 100 * s + offset


def summary_instance(s: int, q: Quantity, stat: int) -> int:
    return SUMMARY_BASE + 100 * s + 10 * q.offset + stat


def cell_instance(s: int, c: int, offset: int = 0) -> int:
    return CELL_BASE + 10_000 * s + 10 * c + offset


@dataclass(frozen=True, slots=True)
class Point:
    """One served object. ``quantity`` is None for structured views, whose
    ``children`` list (object type, instance) pairs in browse order."""

    kind: ObjectKind
    instance: int
    name: str
    description: str
    scope: Scope
    quantity: Quantity | None = None
    ups: str | None = None
    string: str | None = None
    cell: int | None = None
    stat: str | None = None
    children: tuple[tuple[ObjectKind, int], ...] = ()
    node_type: str = ""

    @property
    def oid(self) -> tuple[ObjectKind, int]:
        return (self.kind, self.instance)


class Rows(NamedTuple):
    """The object rows of each level, as one plant's table derives them."""

    ups: tuple[Quantity, ...]
    string: tuple[Quantity, ...]
    cell: tuple[Quantity, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """What the table is expanded over: UPS (name, index) and strings
    (name, index, UPS name or None), both ordered by index."""

    ups: tuple[tuple[str, int], ...]
    strings: tuple[tuple[str, int, str | None], ...]

    @classmethod
    def from_plant(cls, plant: Any) -> Layout:
        return cls(
            tuple((u.name, u.index) for u in plant.ups.values()),
            tuple((s.name, s.index, s.ups) for s in plant.strings.values()),
        )

    @classmethod
    def from_config(cls, config: Any) -> Layout:
        cfg = config.with_indexes()
        return cls(
            tuple(sorted(((u.name, u.index) for u in cfg.ups), key=lambda x: x[1])),
            tuple(sorted(((s.name, s.index, s.ups) for s in cfg.strings), key=lambda x: x[1])),
        )


def cell_strings(layout: Layout, cells: str | list[str]) -> set[str]:
    """Names of the strings that get per-cell objects."""
    names = {s[0] for s in layout.strings}
    if cells == "all":
        return names
    if isinstance(cells, list):
        unknown = sorted(set(cells) - names)
        if unknown:
            raise TableError(
                f"plugins.bacnet.cells: configured string names, found {unknown} "
                f"(strings are {sorted(names)})"
            )
        return set(cells)
    return set()


def build_points(
    layout: Layout,
    *,
    cells: str | list[str] = "all",
    cells_per_string: int = 120,
    structured_views: bool = True,
    plant_name: str = "plant",
    table: Iterable[api.Quantity] = api.QUANTITIES,
) -> list[Point]:
    """Expand the table over a plant, in browse order (UPS, its strings, their cells).
    ``table`` is the gateway's quantity table (``gateway.quantities``: core's and the
    plugins'), from which the object rows derive."""
    table = tuple(table)
    rows = Rows(object_rows(U, table), object_rows(S, table), object_rows(C, table))
    with_cells = cell_strings(layout, cells)
    points: list[Point] = []
    ups_names = {u for u, _ in layout.ups}
    clash = ups_names & {s[0] for s in layout.strings}
    if clash:
        raise TableError(f"BACnet object names need UPS and string names apart, found {clash}")
    root_children: list[tuple[ObjectKind, int]] = []
    for ups, u in layout.ups:
        own = [
            Point(q.kind, ups_instance(u, q.offset), f"{ups}.{q.key}", f"UPS {ups} {q.label}",
                  "ups", q, ups=ups)
            for q in rows.ups
        ]  # fmt: skip
        points.extend(own)
        members = [s for s in layout.strings if s[2] == ups]
        views = [
            _string_points(points, rows, s, with_cells, cells, cells_per_string) for s in members
        ]
        if structured_views:
            view = Point("structuredView", ups_instance(u), ups, f"UPS {ups} (battery system)",
                         "view", ups=ups, children=(*(p.oid for p in own), *views),
                         node_type="system")  # fmt: skip
            points.append(view)
            root_children.append(view.oid)
    for s in layout.strings:
        if s[2] is None:
            root_children.append(
                _string_points(points, rows, s, with_cells, cells, cells_per_string)
            )
    for q in GATEWAY_QUANTITIES:
        p = Point(q.kind, gateway_instance(q.offset), f"gateway.{q.key}", f"Gateway {q.label}",
                  "gateway", q)  # fmt: skip
        points.append(p)
        root_children.append(p.oid)
    if structured_views:
        points.append(
            Point("structuredView", 1, plant_name, "Battery plant: UPS, strings, cells", "view",
                  children=tuple(root_children), node_type="network")
        )  # fmt: skip
    if not structured_views:
        points = [p for p in points if p.kind != "structuredView"]
    twice = sorted(name for name, n in Counter(p.name for p in points).items() if n > 1)
    if twice:
        raise TableError(
            f"BACnet object names must be unique; rename strings/UPS, found {twice[:5]}"
        )
    return points


def _string_points(
    points: list[Point],
    rows: Rows,
    string: tuple[str, int, str | None],
    with_cells: set[str],
    cells: str | list[str],
    cells_per_string: int,
) -> tuple[ObjectKind, int]:
    """Append one string's objects (and its view); return the view's id."""
    name, s, ups = string
    own = [
        Point(q.kind, string_instance(s, q.offset), f"{name}.{q.key}",
              f"String {name} {q.label}", "string", q, ups=ups, string=name)
        for q in rows.string
    ]  # fmt: skip
    points.extend(own)
    children: list[tuple[ObjectKind, int]] = [p.oid for p in own]
    if cells == "summary":
        for q in (q for q in rows.cell if q.kind == "analogInput"):  # min, max, mean of numbers
            for k, stat in enumerate(SUMMARY_STATS):
                p = Point(q.kind, summary_instance(s, q, k), f"{name}.cells.{q.key}.{stat}",
                          f"String {name} {stat} cell {q.label}", "summary", q, ups=ups,
                          string=name, stat=stat)  # fmt: skip
                points.append(p)
                children.append(p.oid)
    elif name in with_cells:
        for c in range(1, cells_per_string + 1):
            cell_points = [
                Point(q.kind, cell_instance(s, c, q.offset), f"{name}.cell{c:03d}.{q.key}",
                      f"String {name} cell {c} {q.label}", "cell", q, ups=ups, string=name,
                      cell=c)
                for q in rows.cell
            ]  # fmt: skip
            points.extend(cell_points)
            view = Point(
                "structuredView",
                cell_instance(s, c),
                f"{name}.cell{c:03d}",
                f"String {name} cell {c}",
                "view",
                ups=ups,
                string=name,
                cell=c,
                children=tuple(p.oid for p in cell_points),
                node_type="device",
            )
            points.append(view)
            children.append(view.oid)
    view = Point(
        "structuredView",
        string_instance(s),
        name,
        f"String {name}",
        "view",
        ups=ups,
        string=name,
        children=tuple(children),
        node_type="collection",
    )
    points.append(view)
    return view.oid


#: alarm rule -> (scope, quantity keys) of the objects that show it as in-alarm.
#: Rules left out (communication lost) show as reliability/fault instead.
ALARM_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cell_voltage_high": ("cell", ("voltage",)),
    "cell_voltage_low": ("cell", ("voltage",)),
    "cell_resistance_warning": ("cell", ("resistance",)),
    "cell_resistance_alarm": ("cell", ("resistance",)),
    "cell_resistance_median_warning": ("cell", ("resistance",)),
    "cell_resistance_median_alarm": ("cell", ("resistance",)),
    "cell_temperature_vs_median": ("cell", ("temperature",)),
    "cell_temperature_vs_ambient": ("cell", ("temperature",)),
    "cell_temperature_high": ("cell", ("temperature",)),
    "cell_soc_low": ("cell", ("soc",)),
    "cell_soh_low": ("cell", ("soh",)),
    "string_voltage_high": ("string", ("voltage",)),
    "string_voltage_low": ("string", ("voltage",)),
    "string_current_charge_high": ("string", ("current",)),
    "string_current_discharge_high": ("string", ("current",)),
    "string_soc_low": ("string", ("soc",)),
    "string_soh_low": ("string", ("soh",)),
    # the runaway signature is the float current rising while the cells warm
    "string_thermal_runaway": ("string", ("current",)),
    "ups_string_error": ("ups", ("voltage", "current", "soc")),
    "event_log_failing": ("gateway", ("event_log_failing",)),
    "history_paused": ("gateway", ("history_paused",)),
    **{f"bmsm_{name}": ("string", (f"alarm_{name}",)) for name in api.ALARM_BIT_NAMES.values()},
}
#: rules no object shows as in-alarm: communication lost is reliability/fault instead
NOT_SHOWN = frozenset({"string_comm_lost"})
