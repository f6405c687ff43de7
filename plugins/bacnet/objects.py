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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from btms_gateway.core.model import StringAlarm, StringState

ObjectKind = Literal["analogInput", "binaryInput", "multiStateInput", "structuredView"]
Scope = Literal["gateway", "ups", "string", "cell", "summary", "view"]


@dataclass(frozen=True, slots=True)
class Quantity:
    """One measured or derived value, as every object of its row shows it."""

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
    #: value source: a reading field name, or a function of the reading
    source: str | Callable[[Any], Any] = ""
    #: or a key of what analytics derived for the string (StringSnapshot.derived,
    #: docs/analytics.md); None there is served like a value the device lacks
    derived: str = ""


def _alarm_bit(bit: StringAlarm) -> Callable[[Any], bool]:
    mask = int(bit)  # int arithmetic: IntFlag's own & builds a flag member per call
    return lambda r: bool(int(r.alarms) & mask)


#: StringState -> multi-state present value (1-based, as BACnet requires)
STATE_VALUES: dict[StringState, int] = {
    StringState.FLOAT_CHARGE: 1,
    StringState.EQUALIZE_CHARGE: 2,
    StringState.DISCHARGE: 3,
    StringState.IDLE: 4,
    StringState.ABNORMAL: 5,
    StringState.UNKNOWN: 6,
}
STATE_TEXTS = ("float charge", "equalize charge", "discharge", "idle", "abnormal", "unknown")
ALARM_STATES = ("normal", "alarm")

#: objects about the gateway itself; their present value is whether the
#: gateway alarm of the same name is active (image.py), so they have no source
GATEWAY_QUANTITIES: tuple[Quantity, ...] = (
    Quantity("event_log_failing", 1, "binaryInput",
             "event log failing: alarm events are delivered but not written",
             states=("normal", "failing")),
)  # fmt: skip

UPS_QUANTITIES: tuple[Quantity, ...] = (
    Quantity("voltage", 1, "analogInput", "voltage (mean of its strings)", "volts", "V",
             0.5, 0.01, 20, 1000, source="voltage_v"),
    Quantity("current", 2, "analogInput", "current (sum of its strings, + charge)", "amperes",
             "A", 1.0, 0.01, -32000, 32000, source="current_a"),
    Quantity("soc", 3, "analogInput", "state of charge (mean of its strings)", "percent", "%",
             1.0, 1, 0, 100, source="soc_pct"),
)  # fmt: skip

STRING_QUANTITIES: tuple[Quantity, ...] = (
    Quantity("voltage", 1, "analogInput", "voltage", "volts", "V", 0.5, 0.01, 20, 1000,
             source="voltage_v"),
    Quantity("current", 2, "analogInput", "current (+ charge, - discharge)", "amperes", "A",
             1.0, 0.01, -1000, 1000, source="current_a"),
    Quantity("soc", 3, "analogInput", "state of charge", "percent", "%", 1.0, 1, 0, 100,
             source="soc_pct"),
    Quantity("balance", 4, "analogInput", "balance", "percent", "%", 0.5, 0.01, 0, 100,
             source="balance_pct"),
    Quantity("ambient_temperature", 5, "analogInput", "ambient temperature (BM-TH)",
             "degreesCelsius", "C", 0.5, 0.1, -40, 80, source="ambient_temperature_c"),
    Quantity("ambient_humidity", 6, "analogInput", "ambient humidity (BM-TH)",
             "percentRelativeHumidity", "%RH", 1.0, 0.1, 0, 100, source="ambient_humidity_pct"),
    Quantity("state", 7, "multiStateInput", "string state", states=STATE_TEXTS,
             source=lambda r: STATE_VALUES[r.state]),
    Quantity("relay", 8, "binaryInput", "relay", states=("open", "closed"),
             source="relay_closed"),
    Quantity("aux", 9, "binaryInput", "auxiliary input", states=("off", "on"),
             source="aux_input_on"),
    *(
        Quantity(f"alarm_{(bit.name or '').lower()}", 10 + n, "binaryInput",
                 "BM-SM alarm: " + (bit.name or "").lower().replace("_", " "),
                 states=ALARM_STATES, source=_alarm_bit(bit))
        for n, bit in enumerate(b for b in StringAlarm if b is not StringAlarm.NONE)
    ),
    Quantity("runtime_remaining", 20, "analogInput",
             "estimated runtime left to the end voltage (while discharging)", "seconds", "s",
             60.0, 1, 0, 360_000, derived="runtime_remaining_s"),
    Quantity("depth_of_discharge", 21, "analogInput",
             "depth of discharge of the running discharge", "percent", "%", 1.0, 0.1, 0, 100,
             derived="dod_pct"),
)  # fmt: skip

CELL_QUANTITIES: tuple[Quantity, ...] = (
    Quantity("voltage", 0, "analogInput", "voltage", "volts", "V", 0.005, 0.001, 1.6, 15.6,
             source="voltage_v"),
    Quantity("resistance", 1, "analogInput", "internal resistance", "milliohms", "mOhm",
             0.05, 0.001, 0.1, 50, source="resistance_mohm"),
    Quantity("temperature", 2, "analogInput", "temperature", "degreesCelsius", "C", 0.5, 0.1,
             -20, 85, source="temperature_c"),
    Quantity("soc", 3, "analogInput", "state of charge", "percent", "%", 1.0, 1, 0, 100,
             source="soc_pct"),
    Quantity("soh", 4, "analogInput", "state of health", "percent", "%", 1.0, 1, 0, 100,
             source="soh_pct"),
)  # fmt: skip

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


class TableError(ValueError):
    """The layout and settings cannot give a consistent object table."""


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
) -> list[Point]:
    """Expand the table over a plant, in browse order (UPS, its strings, their cells)."""
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
            for q in UPS_QUANTITIES
        ]  # fmt: skip
        points.extend(own)
        members = [s for s in layout.strings if s[2] == ups]
        views = [_string_points(points, s, with_cells, cells, cells_per_string) for s in members]
        if structured_views:
            view = Point("structuredView", ups_instance(u), ups, f"UPS {ups} (battery system)",
                         "view", ups=ups, children=(*(p.oid for p in own), *views),
                         node_type="system")  # fmt: skip
            points.append(view)
            root_children.append(view.oid)
    for s in layout.strings:
        if s[2] is None:
            root_children.append(_string_points(points, s, with_cells, cells, cells_per_string))
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
    seen: set[str] = set()
    twice = sorted({p.name for p in points if p.name in seen or seen.add(p.name)})
    if twice:
        raise TableError(
            f"BACnet object names must be unique; rename strings/UPS, found {twice[:5]}"
        )
    return points


def _string_points(
    points: list[Point],
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
        for q in STRING_QUANTITIES
    ]  # fmt: skip
    points.extend(own)
    children: list[tuple[ObjectKind, int]] = [p.oid for p in own]
    if cells == "summary":
        for q in CELL_QUANTITIES:
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
                for q in CELL_QUANTITIES
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
#: Rules left out: communication lost shows as reliability/fault instead, and
#: string SOH low has no object (BACnet serves no string SOH): NOT_SHOWN.
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
    # the runaway signature is the float current rising while the cells warm
    "string_thermal_runaway": ("string", ("current",)),
    "ups_string_error": ("ups", ("voltage", "current", "soc")),
    "event_log_failing": ("gateway", ("event_log_failing",)),
    **{
        f"bmsm_{(b.name or '').lower()}": ("string", (f"alarm_{(b.name or '').lower()}",))
        for b in StringAlarm
        if b is not StringAlarm.NONE
    },
}
NOT_SHOWN = frozenset({"string_comm_lost", "string_soh_low"})
