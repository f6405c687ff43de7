"""Read-only BACnet objects served as views over the plant image.

bacpypes3's local objects are built for a handful of points: each instance
carries every property of its type (about 35, mostly None, each set through
``inspect.getattr_static``), schedules a ``_post_init`` task, and every
property value is a bacpypes3 primitive with an instance dict of its own
(about 200 bytes even for a float). At 23,600 objects that was about 88 MB
and every reading had to be copied into thousands of them.

Here an object is a *view*: a small bacpypes3 object that holds only its
position in the table (``_k``) and the image (image.py) that resolves its
properties when they are read. The application's object tables
(device.py) make a view when a request names an object and drop it after
the answer; only views bound to COV subscriptions stay alive (the image
keeps them and pushes changes through their property monitors, which feed
the COV criteria). So the device holds no per-object state beyond the
table rows, and applying a reading updates the image, not the objects.

The classes keep bacpypes3's encoding and services but:

* serve only the properties the gateway fills in (so property-list, ALL and
  REQUIRED answers list exactly what exists),
* resolve present-value, reliability and event-state from the image, and
  share one typed instance of every constant (units, increments, texts)
  per quantity,
* refuse every write with write-access-denied (the stock analog input
  accepts writes to present-value and out-of-service),
* report COV through the criteria of cov_notify.py, which also watch reliability,
  event-state and out-of-service (status-flags is computed in bacpypes3, so
  its own monitor never fires: a reliability change alone would be
  silent), read the reported values from the object (the stock criteria
  report their own stale copy of status-flags), and take the device object
  from the application instead of scanning every object per notification,
* give multi-state inputs a criteria class without cov-increment (the
  stock one uses the analog criteria and fails on the missing property).
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from typing import Any, ClassVar

from bacpypes3.basetypes import (
    BinaryPV,
    DeviceObjectReference,
    EngineeringUnits,
    EventState,
    NodeType,
    Polarity,
    PropertyIdentifier,
    Reliability,
    StatusFlags,
)
from bacpypes3.constructeddata import ArrayOf
from bacpypes3.errors import ExecutionError
from bacpypes3.local.analog import AnalogInputObject as _AI
from bacpypes3.local.binary import BinaryInputObject as _BI
from bacpypes3.local.multistate import MultiStateInputObject as _MSI
from bacpypes3.local.object import Object as _LocalObject
from bacpypes3.object import StructuredViewObject as _SV
from bacpypes3.primitivedata import (
    Boolean,
    CharacterString,
    ObjectIdentifier,
    ObjectType,
    Real,
    Unsigned,
)

from .cov_notify import AnalogCriteria, StateCriteria

COMMON = ("objectIdentifier", "objectName", "objectType", "description", "propertyList")
STATUS = ("statusFlags", "eventState", "reliability", "outOfService")
#: what the image compares on a watched object after every change
WATCHED = ("presentValue", "reliability", "eventState")


# --- typed values without bacpypes3's casting machinery ------------------------
# bacpypes3 primitives are Python builtins underneath (float, str, tuple, int);
# its metaclass call casts and validates (3..8 us each). These values are known
# valid, so they are made directly; the encoders read only the builtin value.

OBJECT_TYPES = {
    name: ObjectType(name)
    for name in ("analogInput", "binaryInput", "multiStateInput", "structuredView")
}
_NEW_TUPLE, _NEW_FLOAT, _NEW_STR = tuple.__new__, float.__new__, str.__new__


def object_identifier(kind: str, instance: int) -> ObjectIdentifier:
    return _NEW_TUPLE(ObjectIdentifier, (OBJECT_TYPES[kind], instance))


def real(value: float) -> Real:
    return _NEW_FLOAT(Real, value)


def text(value: str) -> CharacterString:
    return _NEW_STR(CharacterString, value)


_UNSIGNED = {n: Unsigned(n) for n in range(0, 16)}
ACTIVE, INACTIVE = BinaryPV("active"), BinaryPV("inactive")
NOT_OUT_OF_SERVICE = Boolean(False)
_FLAGS_CACHE: dict[tuple[int, int, int], tuple[int, ...]] = {}


def unsigned(value: int) -> Unsigned:
    cached = _UNSIGNED.get(value)
    return cached if cached is not None else Unsigned(value)


#: what Property_List leaves out: ANSI/ASHRAE 135 defines it, for every object type,
#: as one identifier per property of the object except these four
NOT_IN_PROPERTY_LIST = frozenset(("objectIdentifier", "objectName", "objectType", "propertyList"))


def property_list(obj: Any) -> Any:
    """The Property_List of ``obj``: every property it serves (an element with
    a value), except the four the standard leaves out. bacpypes3's own list
    includes them, which a BTL test of Property_List fails on."""
    pid = obj._property_identifier_class
    names = [
        n
        for n in obj._elements
        if n not in NOT_IN_PROPERTY_LIST and inspect.getattr_static(obj, n, None) is not None
    ]
    return ArrayOf(PropertyIdentifier)([pid(n) for n in names])


# --- per-quantity constants ------------------------------------------------------
class Constants:
    """The typed values every object of one quantity shares."""

    __slots__ = (
        "activeText",
        "covIncrement",
        "default",
        "inactiveText",
        "maxPresValue",
        "minPresValue",
        "numberOfStates",
        "resolution",
        "stateText",
        "units",
    )  # fmt: skip

    def __init__(self, kind: str, q: Any) -> None:
        self.units = EngineeringUnits(q.units) if kind == "analogInput" else None
        for attr, v in (("covIncrement", q.cov_increment), ("resolution", q.resolution),
                        ("minPresValue", q.min_value), ("maxPresValue", q.max_value)):  # fmt: skip
            setattr(self, attr, None if v is None else Real(float(v)))
        texts = q.states
        self.inactiveText = CharacterString(texts[0]) if kind == "binaryInput" else None
        self.activeText = CharacterString(texts[1]) if kind == "binaryInput" else None
        self.numberOfStates = Unsigned(len(texts)) if kind == "multiStateInput" else None
        self.stateText = (
            ArrayOf(CharacterString)(list(texts)) if kind == "multiStateInput" else None
        )
        #: the never-read present value (0.0, inactive, the "unknown" state)
        self.default = {"analogInput": 0.0, "binaryInput": False}.get(kind, len(texts))


def _const(attr: str) -> property:
    def get(self: Any) -> Any:
        return getattr(self._c, attr)

    return property(get)


# --- the view classes -------------------------------------------------------------
class View:
    """Mixin: a read-only object resolved from the image (``_img``) at
    position ``_k`` of its table; constants from ``_c`` (per quantity)."""

    _served: ClassVar[tuple[str, ...]] = ()
    _property_list: ClassVar[Any] = None

    @classmethod
    def make(cls, img: Any, k: int, constants: Any) -> Any:
        obj = object.__new__(cls)
        obj.__dict__.update(_img=img, _k=k, _c=constants)
        return obj

    def __getattribute__(self, attr: str) -> Any:
        """Plain attribute access. bacpypes3's local objects run
        ``inspect.getattr_static`` on every property read to spot coroutine
        getters (about 20 us each, 25 per COV notification); these classes
        have none, and every element's ``get_attribute`` is a plain getter."""
        return object.__getattribute__(self, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr[0] != "_":
            raise AttributeError(f"read-only BACnet object: {attr}")
        self.__dict__[attr] = value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._img.points[self._k].name}>"

    async def write_property(self, attr: Any, value: Any, index: Any = None, priority: Any = None):
        raise ExecutionError(errorClass="property", errorCode="writeAccessDenied")

    # --- identity: the table row ---
    @property
    def _app(self) -> Any:
        return self._img.app

    @property
    def objectIdentifier(self) -> ObjectIdentifier:
        return self._img.object_identifier(self._k)

    @property
    def objectName(self) -> CharacterString:
        return text(self._img.points[self._k].name)

    @property
    def description(self) -> CharacterString:
        return text(self._img.points[self._k].description)

    @property
    def propertyList(self) -> Any:
        """Computed once per class: every view of a class serves the same
        properties (see ``property_list``)."""
        cls = type(self)
        if cls._property_list is None:
            cls._property_list = property_list(self)
        return cls._property_list

    # --- COV: only views with monitors are kept (the image refreshes them) ---
    @property
    def _property_monitors(self) -> Any:
        """bacpypes3's detection algorithms bind here; the first binding
        makes the view live: the image keeps it and tells its monitors
        about every change (``refresh``)."""
        d = self.__dict__
        monitors = d.get("_pm")
        if monitors is None:
            monitors = d["_pm"] = defaultdict(list)
            d["_seen"] = {a: getattr(self, a) for a in WATCHED if a in self._elements}
        self._img.keep(self)
        return monitors

    def refresh(self) -> bool:
        """Tell the monitors what changed since the last refresh; False when
        nothing is bound any more (the image then lets the view go)."""
        d = self.__dict__
        monitors, seen = d["_pm"], d["_seen"]
        for attr, old in seen.items():
            new = getattr(self, attr)
            if new != old:
                seen[attr] = new
                for fn in list(monitors.get(attr, ())):
                    fn(old, new)
        return any(monitors.values())


class ValueView(View):
    """Objects with a present value and quality."""

    outOfService = NOT_OUT_OF_SERVICE

    @property
    def reliability(self) -> Reliability:
        return self._img.reliability(self._k)

    @property
    def eventState(self) -> EventState:
        return self._img.event_state(self._k)

    @property
    def statusFlags(self) -> StatusFlags:
        """in-alarm, fault, overridden, out-of-service (as bacpypes3 computes it)."""
        img, k = self._img, self._k
        return StatusFlags(
            [
                int(img.event_state(k) != EventState.normal),
                int(img.reliability(k) != Reliability.noFaultDetected),
                0,
                0,
            ]
        )


def _slim(cls: type) -> type:
    """Keep only ``cls._served`` properties (run after the bacpypes3 metaclass
    has collected the inherited ones, so it cannot be __init_subclass__)."""
    # cls is a View (``_served``) and a bacpypes3 object (``_elements``): no one type says both
    served = cls._served  # type: ignore[attr-defined]  # a View's (see above)
    cls._elements = {k: v for k, v in cls._elements.items() if k in served}  # type: ignore[attr-defined]  # bacpypes3's
    return cls


@_slim
class AnalogInput(ValueView, _AI):
    _cov_criteria = AnalogCriteria
    _served = (*COMMON, *STATUS, "presentValue", "units", "covIncrement", "resolution",
               "minPresValue", "maxPresValue")  # fmt: skip
    units = _const("units")
    covIncrement = _const("covIncrement")
    resolution = _const("resolution")
    minPresValue = _const("minPresValue")
    maxPresValue = _const("maxPresValue")

    @property
    def presentValue(self) -> Real:
        v = self._img.value(self._k)
        return real(self._c.default if v is None else v)


@_slim
class BinaryInput(ValueView, _BI):
    _cov_criteria = StateCriteria
    _served = (*COMMON, *STATUS, "presentValue", "polarity", "inactiveText", "activeText")
    polarity = Polarity("normal")
    inactiveText = _const("inactiveText")
    activeText = _const("activeText")

    @property
    def presentValue(self) -> BinaryPV:
        return ACTIVE if self._img.value(self._k) else INACTIVE


@_slim
class MultiStateInput(ValueView, _MSI):
    _cov_criteria = StateCriteria
    _served = (*COMMON, *STATUS, "presentValue", "numberOfStates", "stateText")
    numberOfStates = _const("numberOfStates")
    stateText = _const("stateText")

    @property
    def presentValue(self) -> Unsigned:
        v = self._img.value(self._k)
        return unsigned(self._c.default if v is None else v)


_REF_OID = DeviceObjectReference._elements["objectIdentifier"]  # context-tagged [1]
_NODE_TYPES: dict[str, Any] = {}


def _reference(oid: Any) -> Any:
    """A DeviceObjectReference without bacpypes3's generic Sequence set-up
    (37 us each): it holds two fields."""
    ref = DeviceObjectReference.__new__(DeviceObjectReference)
    ref.__dict__.update(deviceIdentifier=None, objectIdentifier=_REF_OID(oid))
    return ref


@_slim
class StructuredView(View, _LocalObject, _SV):
    _served = (*COMMON, "nodeType", "nodeSubtype", "subordinateList", "subordinateAnnotations")

    @property
    def nodeType(self) -> NodeType:
        name = self._img.points[self._k].node_type or "unknown"
        hit = _NODE_TYPES.get(name)
        if hit is None:
            hit = _NODE_TYPES[name] = NodeType(name)
        return hit

    @property
    def nodeSubtype(self) -> CharacterString:
        return text(self._img.points[self._k].scope)

    @property
    def subordinateList(self) -> Any:
        children = self._img.points[self._k].children
        return ArrayOf(DeviceObjectReference)(
            [_reference(object_identifier(kind, n)) for kind, n in children]
        )


VIEW_CLASSES: dict[str, type[View]] = {
    "analogInput": AnalogInput,
    "binaryInput": BinaryInput,
    "multiStateInput": MultiStateInput,
    "structuredView": StructuredView,
}
