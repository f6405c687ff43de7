"""Build the BACnet/IP device: the device object, the application and one object per table row.

Everything here runs on the gateway's event loop (bacpypes3 is asyncio).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from bacpypes3.apdu import (
    ConfirmedServiceChoice,
    UnconfirmedServiceChoice,
    confirmed_request_types,
    unconfirmed_request_types,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import (
    BinaryPV,
    COVSubscription,
    DeviceAddress,
    DeviceObjectReference,
    EngineeringUnits,
    EventState,
    ListOfCOVSubscription,
    NodeType,
    ObjectPropertyReference,
    ObjectTypesSupported,
    Polarity,
    Recipient,
    RecipientProcess,
    Reliability,
    Segmentation,
    ServicesSupported,
)
from bacpypes3.constructeddata import ArrayOf
from bacpypes3.errors import ExecutionError
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import (
    Boolean,
    CharacterString,
    ObjectIdentifier,
    Real,
    Unsigned,
)
from btms_gateway.core.version import __version__

from .bacobjects import (
    AnalogInput,
    ArrayOfObjectIdentifier,
    BinaryInput,
    MultiStateInput,
    StructuredView,
)
from .cov_property import PropertyCOVServices
from .objects import Point, Quantity
from .settings import BacnetSettings

log = logging.getLogger("btms_gateway.plugins.bacnet")

BIND_TIMEOUT_S = 5.0
SERVED_TYPES = ("device", "analogInput", "binaryInput", "multiStateInput", "structuredView",
                "networkPort")  # fmt: skip


class GatewayDevice(DeviceObject):
    """The device object, with an object list built once (the stock one
    rebuilds the whole array on every read, even of one element) and
    services/object types that say what this device really does."""

    _object_list: Any = None

    @property
    def objectList(self) -> Any:  # type: ignore[override]
        if self._object_list is None:
            keys = list(self._app.objectIdentifier) if self._app else [self.objectIdentifier]
            self._object_list = ArrayOfObjectIdentifier(keys)
        return self._object_list

    @objectList.setter
    def objectList(self, value: Any) -> None:
        """Ignored: the list follows the application's objects."""

    @property
    def protocolServicesSupported(self) -> ServicesSupported:  # type: ignore[override]
        """The stock version names unconfirmed services by their confirmed
        numbers (Who-Is shows up as remove-list-element): do it by type."""
        supported = ServicesSupported([])
        if not self._app:
            return supported
        for table, choices in (
            (confirmed_request_types, ConfirmedServiceChoice),
            (unconfirmed_request_types, UnconfirmedServiceChoice),
        ):
            for choice, request_class in table.items():
                if hasattr(self._app, "do_" + request_class.__name__):
                    supported[getattr(supported, choices(choice).attr)] = 1
        return supported

    @protocolServicesSupported.setter
    def protocolServicesSupported(self, value: Any) -> None:
        """Ignored: computed from the application."""

    @property
    def protocolObjectTypesSupported(self) -> ObjectTypesSupported:  # type: ignore[override]
        bits = ObjectTypesSupported([])
        for name in SERVED_TYPES:
            bits[getattr(bits, name)] = 1
        return bits

    @protocolObjectTypesSupported.setter
    def protocolObjectTypesSupported(self, value: Any) -> None:
        """Ignored: fixed by this plugin."""

    async def write_property(self, attr: Any, value: Any, index: Any = None, priority: Any = None):  # type: ignore[no-untyped-def]
        raise ExecutionError(errorClass="property", errorCode="writeAccessDenied")


class GatewayApplication(PropertyCOVServices, Application):
    """A read-only device: every write is refused with write-access-denied,
    before bacpypes3 tries to decode the value against a property type.
    Adds SubscribeCOVProperty (cov_property.py) and a real active-cov-subscriptions."""

    async def do_SubscribeCOVRequest(self, apdu: Any) -> None:
        """A subscription without a lifetime is indefinite (lifetime 0); the
        stock service compares None with 0 and answers an error."""
        if apdu.issueConfirmedNotifications is not None and apdu.lifetime is None:
            apdu.lifetime = 0
        await super().do_SubscribeCOVRequest(apdu)

    async def do_WritePropertyRequest(self, apdu: Any) -> None:
        self._refuse(apdu.objectIdentifier)

    async def do_WritePropertyMultipleRequest(self, apdu: Any) -> None:
        for spec in apdu.listOfWriteAccessSpecs:
            self._refuse(spec.objectIdentifier)

    def get_active_cov_subscriptions(self) -> ListOfCOVSubscription:
        """What the device's active-cov-subscriptions property shows (the
        stock application has no such method, so the list was always empty)."""
        now = asyncio.get_running_loop().time()
        found = [
            _subscription(cov, detection.monitored_property_reference, None, now)
            for detection in self._cov_detections.values()
            for cov in detection.cov_subscriptions
        ]
        found += [
            _subscription(sub, sub.detection.prop, sub.increment, now)
            for sub in self.property_subscriptions()
        ]
        return ListOfCOVSubscription(found)

    def _refuse(self, oid: Any) -> None:
        if self.get_object_id(oid) is None:
            raise ExecutionError(errorClass="object", errorCode="unknownObject")
        raise ExecutionError(errorClass="property", errorCode="writeAccessDenied")


def _subscription(cov: Any, prop: str, increment: float | None, now: float) -> COVSubscription:
    remaining = 0 if cov.cancel_handle is None else cov.cancel_handle.when() - now
    entry = COVSubscription(
        recipient=RecipientProcess(
            recipient=Recipient(
                address=DeviceAddress(networkNumber=0, macAddress=cov.client_addr.addrAddr)
            ),
            processIdentifier=cov.proc_id,
        ),
        monitoredPropertyReference=ObjectPropertyReference(
            objectIdentifier=cov.obj_id, propertyIdentifier=prop
        ),
        issueConfirmedNotifications=bool(cov.confirmed),
        timeRemaining=max(0, int(remaining)),
    )
    if increment is not None:
        entry.covIncrement = increment
    return entry


class ValueCache:
    """Shared immutable property values: 19,500 objects hold references to a
    few hundred instances instead of 19,500 copies each."""

    def __init__(self) -> None:
        self._values: dict[tuple[Any, ...], Any] = {}

    def get(self, cls: Any, value: Any) -> Any:
        key = (cls, value if not isinstance(value, list) else tuple(value))
        hit = self._values.get(key)
        if hit is None:
            hit = self._values[key] = cls(value)
        return hit


def make_object(point: Point, cache: ValueCache, oids: dict[tuple[str, int], Any]) -> Any:
    """One bacpypes3 object for one table row, in its never-read state.
    ``oids`` collects the identifiers made so far, for views to reuse."""
    oid = oids[point.oid] = ObjectIdentifier(point.oid)
    name = CharacterString(point.name)
    common = {
        "description": CharacterString(point.description),
        "eventState": cache.get(EventState, "normal"),
        "reliability": cache.get(Reliability, "communicationFailure"),
        "outOfService": cache.get(Boolean, False),
    }
    q = point.quantity
    if point.kind == "analogInput":
        assert q is not None
        return AnalogInput(name, oid, {**common, **_analog(q, cache)})
    if point.kind == "binaryInput":
        assert q is not None
        return BinaryInput(
            name,
            oid,
            {
                **common,
                "presentValue": cache.get(BinaryPV, "inactive"),
                "polarity": cache.get(Polarity, "normal"),
                "inactiveText": cache.get(CharacterString, q.states[0]),
                "activeText": cache.get(CharacterString, q.states[1]),
            },
        )
    if point.kind == "multiStateInput":
        assert q is not None
        return MultiStateInput(
            name,
            oid,
            {
                **common,
                "presentValue": cache.get(Unsigned, len(q.states)),
                "numberOfStates": cache.get(Unsigned, len(q.states)),
                "stateText": cache.get(ArrayOf(CharacterString), list(q.states)),
            },
        )
    refs = ArrayOf(DeviceObjectReference)([_reference(oids[c]) for c in point.children])
    return StructuredView(
        name,
        oid,
        {
            "description": common["description"],
            "nodeType": cache.get(NodeType, point.node_type or "unknown"),
            "nodeSubtype": cache.get(CharacterString, point.scope),
            "subordinateList": refs,
        },
    )


_REF_OID = DeviceObjectReference._elements["objectIdentifier"]  # context-tagged [1]


def _reference(oid: Any) -> Any:
    """A DeviceObjectReference without bacpypes3's generic Sequence set-up
    (37 us each, 0.9 s for a plant's views): it holds two fields."""
    ref = DeviceObjectReference.__new__(DeviceObjectReference)
    ref.__dict__.update(deviceIdentifier=None, objectIdentifier=_REF_OID(oid))
    return ref


def _analog(q: Quantity, cache: ValueCache) -> dict[str, Any]:
    values: dict[str, Any] = {
        "presentValue": Real(0.0),
        "units": cache.get(EngineeringUnits, q.units),
    }
    for attr, v in (
        ("covIncrement", q.cov_increment),
        ("resolution", q.resolution),
        ("minPresValue", q.min_value),
        ("maxPresValue", q.max_value),
    ):
        if v is not None:
            values[attr] = cache.get(Real, float(v))
    return values


def check_port_free(address: Address) -> None:
    """Fail clearly when the port is taken. bacpypes3 binds with SO_REUSEPORT
    and retries forever, so a second gateway on the same port would start
    silently and share (steal) half of the unicast traffic."""
    host, port = address.addrTuple
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise RuntimeError(f"BACnet/IP cannot bind {host}:{port}: {exc.strerror}") from exc
    finally:
        probe.close()


async def start_device(settings: BacnetSettings, points: list[Point]) -> tuple[Any, dict]:
    """Bind the B/IP port and serve ``points``; returns (application, objects by point oid)."""
    address = Address(settings.address)
    check_port_free(address)
    device = GatewayDevice(
        objectIdentifier=("device", settings.device_instance),
        objectName=settings.device_name,
        description=settings.description,
        location=settings.location,
        vendorIdentifier=settings.vendor_id,
        vendorName=settings.vendor_name,
        modelName="btms-gateway",
        firmwareRevision=__version__,
        applicationSoftwareVersion=__version__,
        maxApduLengthAccepted=settings.max_apdu,
        segmentationSupported=Segmentation.segmentedBoth,
        maxSegmentsAccepted=settings.max_segments,
    )
    port = NetworkPortObject(
        address, objectIdentifier=("network-port", 1), objectName=f"{settings.device_name}.ip"
    )
    app = GatewayApplication.from_object_list([device, port])
    app.asap.proposedWindowSize = settings.window_size
    app.asap.maxSegmentsAccepted = settings.max_segments
    objects: dict[tuple[str, int], Any] = {}
    cache = ValueCache()
    oids: dict[tuple[str, int], Any] = {}
    by_name, by_id = app.objectName, app.objectIdentifier
    for point in points:
        obj = make_object(point, cache, oids)
        name, oid = obj._Object__objectName, obj._Object__objectIdentifier
        if name in by_name or oid in by_id:
            raise RuntimeError(f"duplicate BACnet object {point.name!r} {point.oid}")
        # what Application.add_object does for a plain object, without its
        # per-object property lookups (a third of the start-up time)
        by_name[name] = by_id[oid] = obj
        obj.__dict__["_app"] = app
        objects[point.oid] = obj
    device._object_list = None  # rebuilt once, on first read, with every object
    _ = device.objectList
    await _wait_bound(app)
    return app, objects


async def _wait_bound(app: Any) -> None:
    tasks = [
        t
        for layer in app.link_layers.values()
        for t in getattr(layer.server, "_transport_tasks", [])
    ]
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=BIND_TIMEOUT_S)
    if pending:
        app.close()
        raise RuntimeError(f"BACnet/IP could not bind within {BIND_TIMEOUT_S} s")
