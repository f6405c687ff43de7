"""The plant as the BACnet device serves it: values, reliability, alarms.

Runs on the gateway's event loop (the plugin's hooks are ``async def``).

The image holds the table rows (objects.py) and, per string, what the last
readings said; a BACnet object (object_views.py) is a view that resolves its
properties here when a request reads them. Applying a reading therefore
copies nothing per object:

* a string's 120 x 5 cell values are read from the reading itself, which
  is immutable; only a reading that lacks some of them (a lost sensor, a
  value not measured, fewer cells than objects) makes the image keep an
  explicit copy, so that such an object still serves its last measured
  value (values are never invented) with reliability no-sensor,
* a string's own 16 values, the cell summaries and the UPS values (a few
  dozen per string) are copied eagerly,
* objects under COV subscription are views the image keeps alive; after
  every change they compare what they serve now with what they served
  before and tell their property monitors (bacpypes3's COV detection), so
  only subscribed objects cost anything per reading.

Quality mapping (docs/bacnet.md explains the choice):
GOOD -> no-fault-detected (or no-sensor for a value the device does not
have), STALE -> unreliable-other, OFFLINE / never read -> communication-failure.
Every non-normal reliability sets the fault status flag.
"""

from __future__ import annotations

import logging
import time
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain
from operator import attrgetter
from statistics import fmean
from typing import Any

from bacpypes3.basetypes import EventState, Reliability
from bacpypes3.primitivedata import ObjectType
from btms_gateway.core.api import SENSOR_LOST_BIT, ActiveAlarm, Quality

from .object_views import OBJECT_TYPES, VIEW_CLASSES, Constants, object_identifier
from .objects import ALARM_TARGETS, CELL_QUANTITIES, SUMMARY_STATS, Point

log = logging.getLogger("btms_gateway.plugins.bacnet")

# bacpypes3 enumeration attributes are plain ints: the properties need instances
NO_FAULT = Reliability("noFaultDetected")
NO_SENSOR = Reliability("noSensor")
COMM_FAILURE = Reliability("communicationFailure")
QUALITY_RELIABILITY: dict[Quality, Reliability | None] = {
    Quality.GOOD: None,
    Quality.STALE: Reliability("unreliableOther"),
    Quality.OFFLINE: COMM_FAILURE,
}
NORMAL = EventState("normal")
EVENT_STATES = {
    "high": EventState("highLimit"),
    "low": EventState("lowLimit"),
    "flag": EventState("offnormal"),
}

#: cell reading fields in quantity-offset order (offset q is CELL_ATTRS[q])
CELL_ATTRS = tuple(str(q.source) for q in sorted(CELL_QUANTITIES, key=lambda q: q.offset))
assert [q.offset for q in CELL_QUANTITIES] == list(range(len(CELL_ATTRS)))
NQ = len(CELL_ATTRS)
_CELL_VALUES = attrgetter(*CELL_ATTRS)
_COLUMNS = tuple(attrgetter(a) for a in CELL_ATTRS)
_INDEX = attrgetter("index")
_STATUS = attrgetter("status")


def _complete(cells: tuple[Any, ...]) -> bool:
    """Every value of every cell measured and no sensor lost. ``sum`` is the
    quickest full pass over 600 values in CPython (its float loop is C) and
    stops with TypeError at the first None; statuses are a handful of flag
    members, checked once each."""
    try:
        for column in _COLUMNS:
            sum(map(column, cells))
    except TypeError:
        return False
    return not any(int(s) & SENSOR_LOST_BIT for s in set(map(_STATUS, cells)))


def _getter(source: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    return source if callable(source) else attrgetter(source)


class Cells:
    """The cell values of one string's ``n`` cells as the objects serve them.

    Clean (the usual case): the last reading has cells 1..n, every value
    measured, no sensor lost; the values are read from it (``rows``).
    Otherwise ``eff`` holds the value each object serves (the last measured
    one, None if never measured) and ``nos`` flags the objects whose value is
    not measured now (reliability no-sensor)."""

    __slots__ = ("eff", "expected", "n", "nos", "rows", "src")

    def __init__(self, n: int) -> None:
        self.n = n
        self.src: Any = None  # the cells tuple last applied
        self.rows: Any = None
        self.eff: list[Any] | None = None
        self.nos: bytearray | None = None
        self.expected = list(range(1, n + 1))

    def value(self, cell: int, q: int) -> Any:
        eff = self.eff
        if eff is not None:
            return eff[(cell - 1) * NQ + q]
        rows = self.rows
        return None if rows is None else getattr(rows[cell - 1], CELL_ATTRS[q])

    def no_sensor(self, cell: int, q: int) -> bool:
        nos = self.nos
        return nos is not None and bool(nos[(cell - 1) * NQ + q])

    def update(self, cells: tuple[Any, ...]) -> None:
        if cells is self.src:
            return  # the same reading again (a quality change): nothing moved
        self.src = cells
        n = self.n
        head = cells[:n]
        indexes = list(map(_INDEX, cells))
        if (
            indexes[:n] == self.expected
            and (len(cells) == n or min(indexes[n:]) > n)  # cells past n are not served
            and _complete(head)
        ):
            self.rows, self.eff, self.nos = cells, None, None
            return
        self._merge(cells)

    def _merge(self, cells: tuple[Any, ...]) -> None:
        """A reading with gaps: keep every object's last measured value."""
        n = self.n
        if self.eff is not None:
            eff = self.eff
        elif self.rows is not None:
            eff = list(chain.from_iterable(map(_CELL_VALUES, self.rows[:n])))
        else:
            eff = [None] * (n * NQ)
        nos = bytearray(b"\x01") * (n * NQ)  # no sensor until the reading has the cell
        for cell in cells:
            index = cell.index
            if not 1 <= index <= n:
                continue
            base = (index - 1) * NQ
            lost = int(cell.status) & SENSOR_LOST_BIT
            for q, v in enumerate(_CELL_VALUES(cell)):
                if v is not None:
                    eff[base + q] = v
                nos[base + q] = 1 if lost or v is None else 0
        self.rows, self.eff, self.nos = None, eff, nos


class StringState:
    __slots__ = ("cells", "fault", "own", "status", "summary")

    def __init__(self) -> None:
        self.fault: Reliability | None = COMM_FAILURE  # never read
        self.own: list[tuple[int, Callable[[Any], Any]]] = []  # of the snapshot
        #: status objects (quality, status): applied whether the string was read or not
        self.status: list[tuple[int, Callable[[Any], Any]]] = []
        self.summary: list[tuple[int, str, str]] = []  # (k, reading field, stat)
        self.cells: Cells | None = None


class Image:
    """Resolves every served object's properties; ``k`` is a row of ``points``."""

    def __init__(self, points: list[Point]) -> None:
        self.points = points
        self.app: Any = None  # the bacpypes3 application, for views' notifications
        self.strings: dict[str, StringState] = {}
        self.ups: dict[str, list[tuple[int, Callable[[Any], Any]]]] = {}
        self.ups_fault: dict[str, Reliability | None] = {}
        self.vals: dict[int, Any] = {}  # string/summary/UPS objects: last measured value
        self.nosensor: set[int] = set()  # ... whose value is not measured now
        self.alarms: dict[int, dict[str, EventState]] = {}
        self._alarm_objects: dict[str, list[int]] = {}
        self.live: dict[int, list[Any]] = {}  # views bound to COV detection
        self._live_groups: dict[Any, set[int]] = defaultdict(set)
        self._constants: dict[int, Constants] = {}
        #: data-age objects -> their UPS ("ups", name) or string; read_at of each
        self.ages: dict[int, Any] = {}
        self.read_at: dict[Any, float | None] = {}
        cell_counts: dict[str, int] = defaultdict(int)
        for k, p in enumerate(points):
            q = p.quantity
            if q is None:
                continue
            if id(q) not in self._constants:
                self._constants[id(q)] = Constants(p.kind, q)
            if p.scope == "gateway":
                self.vals[k] = False  # until its alarm is raised
                continue
            if p.scope == "ups":
                assert p.ups is not None
                if q.age:
                    self.ages[k] = ("ups", p.ups)
                else:
                    self.ups.setdefault(p.ups, []).append((k, _getter(q.source)))
                continue
            assert p.string is not None
            st = self.strings.get(p.string)
            if st is None:
                st = self.strings[p.string] = StringState()
            if p.scope == "string":
                if q.age:
                    self.ages[k] = p.string
                else:
                    (st.status if q.status else st.own).append((k, _getter(q.source)))
            elif p.scope == "cell":
                assert p.cell is not None
                cell_counts[p.string] = max(cell_counts[p.string], p.cell)
            else:
                st.summary.append((k, str(q.source), str(p.stat)))
        for name, n in cell_counts.items():
            self.strings[name].cells = Cells(n)
        # lookups by identifier and by name: sorted arrays, 12 bytes an object
        packed = [(int(OBJECT_TYPES[p.kind]) << 22) | p.instance for p in points]
        by_id = sorted(range(len(points)), key=packed.__getitem__)
        self._ids = array("q", (packed[k] for k in by_id))
        self._by_id = array("i", by_id)
        self._by_name = array("i", sorted(range(len(points)), key=lambda k: points[k].name))
        self.objects = ObjectsByPoint(self)

    # --- lookups -----------------------------------------------------------------
    def index_of_id(self, objid: Any) -> int | None:
        try:
            kind, instance = objid
            if isinstance(kind, str):
                kind = ObjectType(kind)
            key = (int(kind) << 22) | int(instance)
        except (TypeError, ValueError, KeyError, AttributeError):
            return None
        ids = self._ids
        i = bisect_left(ids, key)
        return self._by_id[i] if i < len(ids) and ids[i] == key else None

    def index_of_name(self, name: Any) -> int | None:
        if not isinstance(name, str):
            return None
        points, order = self.points, self._by_name
        i = bisect_left(order, name, key=lambda k: points[k].name)
        return order[i] if i < len(order) and points[order[i]].name == name else None

    def object_identifier(self, k: int) -> Any:
        p = self.points[k]
        return object_identifier(p.kind, p.instance)

    def view(self, k: int) -> Any:
        """The object at row ``k``: the live one when subscribed, else a new view."""
        views = self.live.get(k)
        if views:
            return views[0]
        p = self.points[k]
        constants = None if p.quantity is None else self._constants[id(p.quantity)]
        return VIEW_CLASSES[p.kind].make(self, k, constants)

    # --- what a view serves ---------------------------------------------------------
    def value(self, k: int) -> Any:
        """The last measured value (None: never measured)."""
        p = self.points[k]
        if p.scope == "cell":
            # a cell point has its string, cell and quantity (objects.py), and its
            # string's cells are set with the string (apply_string)
            cells = self.strings[p.string].cells  # type: ignore[index]  # p.string: set (above)
            return cells.value(p.cell, p.quantity.offset)  # type: ignore[union-attr,arg-type]  # (above)
        group = self.ages.get(k)
        if group is not None:
            read_at = self.read_at.get(group)
            return None if read_at is None else float(int(max(0.0, time.time() - read_at)))
        return self.vals.get(k)

    def reliability(self, k: int) -> Reliability:
        p = self.points[k]
        if p.scope == "gateway":
            return NO_FAULT
        if p.quantity is not None and p.quantity.status and self.value(k) is not None:
            return NO_FAULT  # a status value is current whatever its string's quality
        if p.scope == "ups":
            fault = self.ups_fault.get(p.ups, COMM_FAILURE)  # type: ignore[arg-type]  # a UPS point has p.ups
            if fault is not None:
                return fault
            return NO_SENSOR if k in self.nosensor else NO_FAULT
        st = self.strings[p.string]  # type: ignore[index]  # string and cell points have p.string
        if st.fault is not None:
            return st.fault
        if p.scope == "cell":
            lost = st.cells.no_sensor(p.cell, p.quantity.offset)  # type: ignore[union-attr,arg-type]  # as in value()
            return NO_SENSOR if lost else NO_FAULT
        return NO_SENSOR if k in self.nosensor else NO_FAULT

    def event_state(self, k: int) -> EventState:
        active = self.alarms.get(k)
        return next(iter(active.values())) if active else NORMAL

    # --- readings ------------------------------------------------------------
    def apply_plant(self, plant: Any) -> None:
        for s in plant.strings.values():
            self.apply_string(s)
        for u in plant.ups.values():
            self.apply_ups(u)

    def apply_string(self, string: Any) -> None:
        st = self.strings.get(string.name)
        if st is None:
            return
        r = string.reading
        self.read_at[string.name] = None if r is None else r.read_at
        self._put(st.status, string)
        if r is None:
            st.fault = COMM_FAILURE  # never read: values stay as they are
        else:
            st.fault = QUALITY_RELIABILITY[string.quality]
            self._put(st.own, string)
            if st.cells is not None:
                st.cells.update(r.cells)
            if st.summary:
                self._apply_summary(st, r)
        live = self._live_groups.get(string.name)
        if live:
            self._refresh(live)

    def _put(self, items: list[tuple[int, Callable[[Any], Any]]], obj: Any) -> None:
        """Each object's value read from ``obj`` (a snapshot); None: not measured now."""
        vals, nosensor = self.vals, self.nosensor
        for k, get in items:
            v = get(obj)
            if v is None:
                nosensor.add(k)
            else:
                vals[k] = v
                nosensor.discard(k)

    def _apply_summary(self, st: StringState, r: Any) -> None:
        stats: dict[str, tuple[float, float, float] | None] = {}
        for k, attr, stat in st.summary:
            if attr not in stats:
                values = [v for c in r.cells if (v := getattr(c, attr)) is not None]
                stats[attr] = (min(values), max(values), fmean(values)) if values else None
            found = stats[attr]
            if found is None:
                self.nosensor.add(k)
            else:
                self.vals[k] = found[SUMMARY_STATS.index(stat)]
                self.nosensor.discard(k)

    def apply_ups(self, ups: Any) -> None:
        items = self.ups.get(ups.name, [])
        self.ups_fault[ups.name] = QUALITY_RELIABILITY[ups.quality]
        # as the Modbus data-age register: none while a string of it was never read
        never = any(self.read_at.get(name) is None for name in ups.strings)
        self.read_at[("ups", ups.name)] = None if never else ups.read_at
        self._put(items, ups)
        live = self._live_groups.get(("ups", ups.name))
        if live:
            self._refresh(live)

    # --- subscribed objects --------------------------------------------------------
    def _group(self, k: int) -> Any:
        p = self.points[k]
        if p.scope == "gateway":
            return ("gateway",)
        return ("ups", p.ups) if p.scope == "ups" else p.string

    def keep(self, view: Any) -> None:
        """Keep ``view`` alive and refreshed: COV detection is bound to it."""
        k = view._k
        views = self.live.setdefault(k, [])
        if not any(v is view for v in views):
            views.append(view)
            self._live_groups[self._group(k)].add(k)

    def _refresh(self, ks: set[int] | list[int]) -> None:
        for k in list(ks):
            views = self.live.get(k)
            if views is None:
                continue
            views[:] = [v for v in views if v.refresh()]
            if not views:  # every subscription gone: let the view go
                del self.live[k]
                self._live_groups[self._group(k)].discard(k)

    # --- alarms ----------------------------------------------------------------
    def objects_for(self, rule: str, path: Any) -> list[int]:
        """Rows of the objects an alarm concerns (empty when it has none here)."""
        target = ALARM_TARGETS.get(rule)
        if target is None:
            return []
        scope, keys = target
        names: list[tuple[str, str]] = []
        for key in keys:
            if scope == "cell":
                if path.string is None:
                    continue
                if isinstance(path.cell, int):
                    names.append(("cell", f"{path.string}.cell{path.cell:03d}.{key}"))
                names += [("summary", f"{path.string}.cells.{key}.{s}") for s in SUMMARY_STATS]
            elif scope == "string":
                if path.string is not None:
                    names.append(("string", f"{path.string}.{key}"))
            elif scope == "gateway":
                names.append(("gateway", f"gateway.{key}"))
            elif path.ups is not None:
                names.append(("ups", f"{path.ups}.{key}"))
        found = []
        for want, name in names:
            k = self.index_of_name(name)
            if k is not None and self.points[k].scope == want:
                found.append(k)
        return found

    def set_alarms(self, active: Iterable[ActiveAlarm]) -> None:
        """Make the objects' alarm state that of ``active`` (the alarms active
        after a commit, as delivered): what left it is cleared, what is new raised."""
        wanted = {a.alarm_id: a for a in active}
        for alarm_id in [i for i in self._alarm_objects if i not in wanted]:
            self.clear_alarm(alarm_id)
        for alarm_id, a in wanted.items():
            if alarm_id not in self._alarm_objects:
                self.raise_alarm(alarm_id, a.rule, a.path)

    def raise_alarm(self, alarm_id: str, rule: str, path: Any) -> None:
        ks = self.objects_for(rule, path)
        self._alarm_objects[alarm_id] = ks
        state = _event_state(rule)
        for k in ks:
            self.alarms.setdefault(k, {})[alarm_id] = state
            if self.points[k].scope == "gateway":
                self.vals[k] = True  # a gateway object's value is its alarm
        self._refresh(ks)

    def clear_alarm(self, alarm_id: str) -> None:
        ks = self._alarm_objects.pop(alarm_id, [])
        for k in ks:
            active = self.alarms.get(k)
            if active is not None:
                active.pop(alarm_id, None)
                if not active:
                    del self.alarms[k]
                    if self.points[k].scope == "gateway":
                        self.vals[k] = False
        self._refresh(ks)


class ObjectsByPoint(Mapping[tuple[str, int], Any]):
    """The served objects by table oid ``(kind, instance)``; views made on access."""

    def __init__(self, image: Image) -> None:
        self._image = image

    def __getitem__(self, oid: tuple[str, int]) -> Any:
        k = self._image.index_of_id(oid)
        if k is None:
            raise KeyError(oid)
        return self._image.view(k)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return (p.oid for p in self._image.points)

    def __len__(self) -> int:
        return len(self._image.points)


def _event_state(rule: str) -> EventState:
    """Limit rules show as high-limit/low-limit by the side of the value the
    object serves (a discharge-current alarm is a low limit of the signed
    current), flags as offnormal."""
    try:
        from btms_gateway.core.api import RULES

        kind = RULES[rule].side
    except (ImportError, KeyError):
        kind = "high" if "high" in rule else "low" if "low" in rule else "flag"
    return EVENT_STATES.get(kind, EVENT_STATES["flag"])
