"""SubscribeCOVProperty, which bacpypes3 0.0.110 does not implement.

A subscriber watches one property of one object (present-value,
status-flags, reliability, event-state or out-of-service), optionally with
its own COV increment for an analog present value. Notifications carry the
watched property and status-flags (clause 13.15). Each (object, property)
pair gets one detection bound to the object's property monitors, the same
hooks the object-level COV criteria use, so the image's fast path
(image.put) feeds both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bacpypes3.apdu import SimpleAckPDU
from bacpypes3.errors import ExecutionError
from bacpypes3.local.cov import DetectionAlgorithm

from .cov_notify import property_values, send_notification

WATCHABLE = ("presentValue", "statusFlags", "reliability", "eventState", "outOfService")
#: what can change a watched property (status-flags is computed from these)
SOURCES = ("presentValue", "reliability", "eventState", "outOfService")


class PropertySubscription:
    def __init__(
        self, app: Any, detection: PropertyDetection, address: Any, proc_id: int,
        confirmed: bool, lifetime: int, increment: float | None,
    ) -> None:  # fmt: skip
        self.app, self.detection = app, detection
        self.client_addr, self.proc_id = address, proc_id
        self.obj_id = detection.obj.objectIdentifier
        self.confirmed = confirmed
        self.increment = increment
        self.cancel_handle: asyncio.TimerHandle | None = None
        self.last: tuple[Any, Any] | None = None
        self.renew(lifetime)

    def renew(self, lifetime: int) -> None:
        if self.cancel_handle is not None:
            self.cancel_handle.cancel()
        self.lifetime = lifetime
        self.cancel_handle = (
            asyncio.get_running_loop().call_later(lifetime, self.cancel) if lifetime > 0 else None
        )

    def cancel(self) -> None:
        if self.cancel_handle is not None:
            self.cancel_handle.cancel()
            self.cancel_handle = None
        self.app.drop_property_subscription(self)

    def due(self, value: Any, flags: Any) -> bool:
        """Report when status flags changed, an analog value moved by the
        increment (its own, else the object's), or any other value changed."""
        if self.last is None or list(flags) != list(self.last[1]):
            return True
        previous = self.last[0]
        step = self.increment
        if step is None and self.detection.prop == "presentValue":
            step = getattr(self.detection.obj, "covIncrement", None)
        if step is not None and isinstance(value, float):
            return abs(value - previous) >= step
        return bool(value != previous)


class PropertyDetection(DetectionAlgorithm):
    """Watches one property of one object for its subscribers."""

    def __init__(self, obj: Any, prop: str) -> None:
        super().__init__()
        self.obj, self.prop = obj, prop
        self.subscriptions: list[PropertySubscription] = []
        self.bind(**{p: (obj, p) for p in SOURCES if p in obj._elements})

    def execute(self) -> None:
        for sub in list(self.subscriptions):
            self.send(sub)

    def send(self, sub: PropertySubscription, force: bool = False) -> None:
        value, flags = getattr(self.obj, self.prop), self.obj.statusFlags
        if not (force or sub.due(value, flags)):
            return
        sub.last = (value, flags)
        names = [self.prop] if self.prop == "statusFlags" else [self.prop, "statusFlags"]
        send_notification(self.obj._app, sub, property_values(self.obj, names))


class PropertyCOVServices:
    """Mixin for the application: the SubscribeCOVProperty service."""

    _property_detections: dict[tuple[Any, str], PropertyDetection]

    if TYPE_CHECKING:  # bacpypes3's Application's and CovLimits', which this mixes with
        get_object_id: Callable[[Any], Any]
        response: Callable[[Any], Awaitable[None]]
        check_room: Callable[[Any], None]
        granted_lifetime: Callable[[int | None], int]

    async def do_SubscribeCOVPropertyRequest(self, apdu: Any) -> None:
        if not hasattr(self, "_property_detections"):
            self._property_detections = {}
        obj = self.get_object_id(apdu.monitoredObjectIdentifier)
        if obj is None:
            raise ExecutionError(errorClass="object", errorCode="unknownObject")
        ref = apdu.monitoredPropertyIdentifier
        prop = ref.propertyIdentifier.attr
        if prop not in obj._elements:
            raise ExecutionError(errorClass="property", errorCode="unknownProperty")
        if prop not in WATCHABLE or getattr(obj, "_cov_criteria", None) is None:
            raise ExecutionError(errorClass="services", errorCode="notCovProperty")
        if ref.propertyArrayIndex is not None:
            raise ExecutionError(errorClass="property", errorCode="propertyIsNotAnArray")
        key = (apdu.monitoredObjectIdentifier, prop)
        cancel = apdu.issueConfirmedNotifications is None and apdu.lifetime is None
        detection = self._property_detections.get(key)
        who = (apdu.pduSource, apdu.subscriberProcessIdentifier)
        existing = None
        if detection is not None:
            existing = next(
                (s for s in detection.subscriptions if (s.client_addr, s.proc_id) == who), None
            )
        if cancel:
            if existing is not None:
                existing.cancel()
            await self.response(SimpleAckPDU(context=apdu))
            return
        if existing is None:
            self.check_room(apdu.pduSource)
        if detection is None:
            detection = self._property_detections[key] = PropertyDetection(obj, prop)
        increment = None if apdu.covIncrement is None else float(apdu.covIncrement)
        lifetime = self.granted_lifetime(apdu.lifetime)
        if existing is not None:
            existing.renew(lifetime)
            existing.increment = increment
            sub = existing
        else:
            sub = PropertySubscription(
                self, detection, apdu.pduSource, apdu.subscriberProcessIdentifier,
                bool(apdu.issueConfirmedNotifications), lifetime, increment,
            )  # fmt: skip
            detection.subscriptions.append(sub)
        await self.response(SimpleAckPDU(context=apdu))
        asyncio.get_running_loop().call_soon(detection.send, sub, True)

    def drop_property_subscription(self, sub: PropertySubscription) -> None:
        detection = sub.detection
        if sub in detection.subscriptions:
            detection.subscriptions.remove(sub)
        if not detection.subscriptions:
            detection.unbind()
            self._property_detections.pop((sub.obj_id, detection.prop), None)

    def property_subscriptions(self) -> list[PropertySubscription]:
        found: list[PropertySubscription] = []
        for detection in getattr(self, "_property_detections", {}).values():
            found += detection.subscriptions
        return found
