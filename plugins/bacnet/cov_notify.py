"""COV notifications of the served objects: the values a notification
carries, sending one to one subscriber, and the object-level criteria.

bacpypes3's own criteria report a stale copy of status-flags and miss a
change of reliability alone (status-flags is computed, so its monitor never
fires); these watch reliability, event-state and out-of-service too and read
what they report from the object. The property-level subscriptions
(cov_property.py) send through the same two functions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bacpypes3.apdu import ConfirmedCOVNotificationRequest, UnconfirmedCOVNotificationRequest
from bacpypes3.basetypes import PropertyIdentifier, PropertyValue
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.local.cov import COVIncrementCriteria, GenericCriteria

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
