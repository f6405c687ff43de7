"""Slim, read-only bacpypes3 object classes for thousands of objects.

bacpypes3's local objects are built for a handful of points: each instance
carries every property of its type (about 35, mostly None, each set through
``inspect.getattr_static``), schedules a ``_post_init`` task, and the stock
device object rebuilds its whole object list for every read, even one array
element. At 19,500 objects that costs seconds and hundreds of MB. These
classes keep bacpypes3's encoding and services but:

* serve only the properties the gateway fills in (so property-list, ALL and
  REQUIRED answers list exactly what exists),
* are created by writing the instance dict directly,
* refuse every write with write-access-denied (the stock analog input
  accepts writes to present-value and out-of-service),
* report COV through criteria classes that also watch reliability,
  event-state and out-of-service (status-flags is computed in bacpypes3, so
  its own monitor never fires: a reliability change alone would be
  silent), read the reported values from the object (the stock criteria
  report their own stale copy of status-flags), and take the device object
  from the application instead of scanning every object per notification,
* give multi-state inputs a criteria class without cov-increment (the
  stock one uses the analog criteria and fails on the missing property).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, ClassVar

from bacpypes3.apdu import ConfirmedCOVNotificationRequest, UnconfirmedCOVNotificationRequest
from bacpypes3.basetypes import PropertyIdentifier, PropertyValue
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.constructeddata import ArrayOf
from bacpypes3.errors import ExecutionError
from bacpypes3.local.analog import AnalogInputObject as _AI
from bacpypes3.local.binary import BinaryInputObject as _BI
from bacpypes3.local.cov import COVIncrementCriteria, GenericCriteria
from bacpypes3.local.multistate import MultiStateInputObject as _MSI
from bacpypes3.local.object import Object as _LocalObject
from bacpypes3.object import StructuredViewObject as _SV
from bacpypes3.primitivedata import ObjectIdentifier

COMMON = ("objectIdentifier", "objectName", "objectType", "description", "propertyList")
STATUS = ("statusFlags", "eventState", "reliability", "outOfService")


_PROPERTY_IDS: dict[str, Any] = {}
_PV = PropertyValue._elements  # the context-tagged element classes of each field


def property_values(obj: Any, names: tuple[str, ...] | list[str]) -> list[PropertyValue]:
    """The list-of-values of a notification. Built without bacpypes3's generic
    Sequence set-up (a static lookup per missing field, about 0.1 ms per
    value), which dominated the cost of a notification."""
    out = []
    for name in names:
        pid = _PROPERTY_IDS.get(name)
        if pid is None:
            pid = _PROPERTY_IDS[name] = _PV["propertyIdentifier"](PropertyIdentifier(name))
        pv = PropertyValue.__new__(PropertyValue)
        pv.__dict__.update(
            propertyIdentifier=pid,
            propertyArrayIndex=None,
            value=_PV["value"](AnyValue(getattr(obj, name))),
            priority=None,
        )
        out.append(pv)
    return out


def send_notification(app: Any, cov: Any, values: list[PropertyValue]) -> None:
    """One COV notification to one subscriber (object-level or property-level:
    both carry client_addr, proc_id, obj_id, confirmed and cancel_handle)."""
    now = asyncio.get_running_loop().time()
    request = (
        ConfirmedCOVNotificationRequest() if cov.confirmed else UnconfirmedCOVNotificationRequest()
    )
    request.pduDestination = cov.client_addr
    request.subscriberProcessIdentifier = cov.proc_id
    request.initiatingDeviceIdentifier = app.device_object.objectIdentifier
    request.monitoredObjectIdentifier = cov.obj_id
    request.timeRemaining = (
        0 if cov.cancel_handle is None else max(1, int(cov.cancel_handle.when() - now))
    )
    request.listOfValues = values
    app.cov_notification(cov, request)


def notify(detection: Any, subscription: Any = None) -> None:
    """Send a COV notification for ``detection.obj`` to one or all subscribers."""
    if not detection.cov_subscriptions:
        return
    values = property_values(detection.obj, detection.properties_reported)
    targets = [subscription] if subscription is not None else list(detection.cov_subscriptions)
    for cov in targets:
        send_notification(detection.obj._app, cov, values)


class AnalogCriteria(COVIncrementCriteria):
    """COV-increment criteria that also report quality changes."""

    properties_tracked = (
        "presentValue",
        "covIncrement",
        "reliability",
        "eventState",
        "outOfService",
    )
    properties_reported = ("presentValue", "statusFlags")

    def send_cov_notifications(self, subscription: Any = None) -> None:
        self.previously_reported_value = self.obj.presentValue
        notify(self, subscription)


class StateCriteria(GenericCriteria):
    """Any-change criteria (binary and multi-state) that also report quality changes."""

    properties_tracked = ("presentValue", "reliability", "eventState", "outOfService")
    properties_reported = ("presentValue", "statusFlags")

    def send_cov_notifications(self, subscription: Any = None) -> None:
        notify(self, subscription)


class Slim:
    """Mixin: only the listed properties, fast construction, no writes."""

    _served: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: Any, oid: ObjectIdentifier, values: dict[str, Any]) -> None:
        """Fill the instance dict the way bacpypes3's constructors would leave
        it (``values`` already typed; name and identifier in the private slots
        behind the local Object's properties), without its per-property
        casting and lookups and without scheduling ``_post_init``, which only
        links notification-class objects this device does not have."""
        d = self.__dict__
        d["_app"] = None
        d["_property_monitors"] = defaultdict(list)
        d["_Object__objectName"] = name
        d["_Object__objectIdentifier"] = oid
        for attr in self._plain:  # type: ignore[attr-defined]
            d[attr] = values.get(attr)

    def __getattribute__(self, attr: str) -> Any:
        """Plain attribute access. bacpypes3's local objects run
        ``inspect.getattr_static`` on every property read to spot coroutine
        getters (about 20 us each, 25 per COV notification); these classes
        have none, and every element's ``get_attribute`` is a plain getter."""
        return object.__getattribute__(self, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        """What bacpypes3's local Object does for a plain element (cast, skip
        when equal, store, tell the property monitors), without its static
        lookups; properties (object name and identifier) keep their setters."""
        cls = type(self)
        if attr[0] == "_" or attr not in cls._plain_set:  # type: ignore[attr-defined]
            super().__setattr__(attr, value)
            return
        element = cls._elements[attr]  # type: ignore[attr-defined]
        if value is not None and value.__class__ is not element:
            value = element(element.cast(value))
        d = self.__dict__
        current = d.get(attr)
        if value == current:
            return
        d[attr] = value
        for fn in d["_property_monitors"].get(attr, ()):
            fn(current, value)

    async def write_property(self, attr: Any, value: Any, index: Any = None, priority: Any = None):  # type: ignore[no-untyped-def]
        raise ExecutionError(errorClass="property", errorCode="writeAccessDenied")


def _slim(cls: type) -> type:
    """Keep only ``cls._served`` properties (run after the bacpypes3 metaclass
    has collected the inherited ones, so it cannot be __init_subclass__)."""
    served = cls._served  # type: ignore[attr-defined]
    cls._elements = {k: v for k, v in cls._elements.items() if k in served}  # type: ignore[attr-defined]
    cls._plain = tuple(  # type: ignore[attr-defined]
        k
        for k in cls._elements  # type: ignore[attr-defined]
        if not isinstance(getattr(cls, k, None), property)
        and k not in ("objectName", "objectIdentifier", "objectType")
    )
    cls._plain_set = frozenset(cls._plain)  # type: ignore[attr-defined]
    return cls


@_slim
class AnalogInput(Slim, _AI):
    _cov_criteria = AnalogCriteria
    _served = (*COMMON, *STATUS, "presentValue", "units", "covIncrement", "resolution",
               "minPresValue", "maxPresValue")  # fmt: skip


@_slim
class BinaryInput(Slim, _BI):
    _cov_criteria = StateCriteria
    _served = (*COMMON, *STATUS, "presentValue", "polarity", "inactiveText", "activeText")


@_slim
class MultiStateInput(Slim, _MSI):
    _cov_criteria = StateCriteria
    _served = (*COMMON, *STATUS, "presentValue", "numberOfStates", "stateText")


@_slim
class StructuredView(Slim, _LocalObject, _SV):
    _served = (*COMMON, "nodeType", "nodeSubtype", "subordinateList", "subordinateAnnotations")


ArrayOfObjectIdentifier = ArrayOf(ObjectIdentifier)
