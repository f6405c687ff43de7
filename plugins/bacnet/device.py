"""Build the BACnet/IP device: the device object, the application and its object tables.

Everything here runs on the gateway's event loop (bacpypes3 is asyncio).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator, MutableMapping
from typing import Any

from bacpypes3.apdu import (
    ConfirmedServiceChoice,
    SimpleAckPDU,
    UnconfirmedServiceChoice,
    confirmed_request_types,
    unconfirmed_request_types,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import (
    COVSubscription,
    DeviceAddress,
    ListOfCOVSubscription,
    ObjectPropertyReference,
    ObjectTypesSupported,
    Recipient,
    RecipientProcess,
    Segmentation,
    ServicesSupported,
)
from bacpypes3.constructeddata import ArrayOf
from bacpypes3.errors import ExecutionError
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from btms_gateway.core.api import __version__

from .cov_property import PropertyCOVServices
from .guard import CovLimits, GuardedASAP, install_allowlist
from .image import Image
from .object_views import OBJECT_TYPES, property_list, text
from .objects import Point
from .rpm import SlicedReadPropertyMultiple
from .settings import BacnetSettings

log = logging.getLogger("btms_gateway.plugins.bacnet")

ArrayOfObjectIdentifier = ArrayOf(ObjectIdentifier)

BIND_TIMEOUT_S = 5.0
SERVED_TYPES = ("device", "analogInput", "binaryInput", "multiStateInput", "structuredView",
                "networkPort")  # fmt: skip


class ObjectList(ArrayOfObjectIdentifier):  # type: ignore[misc,valid-type]  # ArrayOf() makes the class at run time
    """The device's object-list, each identifier made when it is read (an
    index read makes one; the stock device rebuilt the whole array of
    23,600 for every read, even of one element)."""

    @classmethod
    def over(cls, head: list[Any], image: Image) -> ObjectList:
        lst = list.__new__(cls)
        lst.__dict__.update(_head=head, _image=image)
        return lst

    def __len__(self) -> int:
        return len(self._head) + len(self._image.points)

    def __iter__(self) -> Iterator[Any]:
        yield from self._head
        make = self._image.object_identifier
        for k in range(len(self._image.points)):
            yield make(k)

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        n, head = len(self), self._head
        index = item + n if item < 0 else item
        if not 0 <= index < n:
            raise IndexError("object-list index out of range")
        if index < len(head):
            return head[index]
        return self._image.object_identifier(index - len(head))


class ObjectTable(MutableMapping[Any, Any]):
    """What bacpypes3's application keeps as ``objectIdentifier`` /
    ``objectName`` (dicts of every object): the device and network-port
    objects in a real dict, the table's objects as views made on lookup."""

    def __init__(self, fixed: dict[Any, Any], image: Image, by_name: bool) -> None:
        self._fixed = fixed
        self._image = image
        self._find = image.index_of_name if by_name else image.index_of_id
        self._key = (lambda k: text(image.points[k].name)) if by_name else image.object_identifier

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            hit = self._fixed.get(key)
        except TypeError:  # unhashable: no such object
            return default
        if hit is not None:
            return hit
        k = self._find(key)
        return default if k is None else self._image.view(k)

    def __getitem__(self, key: Any) -> Any:
        hit = self.get(key)
        if hit is None:
            raise KeyError(key)
        return hit

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key: Any, value: Any) -> None:
        self._fixed[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._fixed[key]

    def __iter__(self) -> Iterator[Any]:
        yield from self._fixed
        for k in range(len(self._image.points)):
            yield self._key(k)

    def __len__(self) -> int:
        return len(self._fixed) + len(self._image.points)

    def object_list(self) -> ObjectList:
        return ObjectList.over(list(self._fixed), self._image)


class StandardPropertyList:
    """Mixin for bacpypes3's own object classes: a Property_List without the
    four properties the standard leaves out (see object_views.property_list)."""

    @property
    def propertyList(self) -> Any:
        return property_list(self)

    @propertyList.setter
    def propertyList(self, value: Any) -> None:
        """Ignored: computed from the served properties."""


class GatewayNetworkPort(StandardPropertyList, NetworkPortObject):
    """The B/IP network port object, with a standard Property_List."""


class GatewayDevice(StandardPropertyList, DeviceObject):
    """The device object, with an object list made element by element from
    the table (the stock one rebuilds the whole array on every read, even of
    one element), services/object types that say what this device really
    does, and a standard Property_List."""

    @property
    def objectList(self) -> Any:
        table = self._app.objectIdentifier if self._app else {self.objectIdentifier: self}
        if isinstance(table, ObjectTable):
            return table.object_list()
        return ArrayOfObjectIdentifier(list(table))

    @objectList.setter
    def objectList(self, value: Any) -> None:
        """Ignored: the list follows the application's objects."""

    @property
    def protocolServicesSupported(self) -> ServicesSupported:
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
    def protocolObjectTypesSupported(self) -> ObjectTypesSupported:
        bits = ObjectTypesSupported([])
        for name in SERVED_TYPES:
            bits[getattr(bits, name)] = 1
        return bits

    @protocolObjectTypesSupported.setter
    def protocolObjectTypesSupported(self, value: Any) -> None:
        """Ignored: fixed by this plugin."""

    async def write_property(self, attr: Any, value: Any, index: Any = None, priority: Any = None):
        raise ExecutionError(errorClass="property", errorCode="writeAccessDenied")


class GatewayApplication(CovLimits, SlicedReadPropertyMultiple, PropertyCOVServices, Application):
    """A read-only device: every write is refused with write-access-denied,
    before bacpypes3 tries to decode the value against a property type.
    Adds SubscribeCOVProperty (cov_property.py), a real active-cov-subscriptions,
    ReadPropertyMultiple in slices within a size bound (rpm.py) and limits on
    COV subscriptions (guard.py)."""

    async def do_SubscribeCOVRequest(self, apdu: Any) -> None:
        """A subscription without a lifetime asks for an indefinite one (the
        stock service compares None with 0 and answers an error); it gets the
        lifetime CovLimits grants. A new subscription must fit the caps.

        A cancellation of a subscription that does not exist is acknowledged
        here: bacpypes3 0.0.110 builds the object's COV detection *before*
        looking for the subscription to cancel and keeps it with no
        subscriber, which pins the view in the image for good (a BMS sending
        "unsubscribe all" after its subscriptions lapsed could pin every
        object: +60 MB and 100x the cost of a reading, found in review)."""
        if apdu.issueConfirmedNotifications is None and apdu.lifetime is None:
            if not self._has_subscription(apdu):
                await self.response(SimpleAckPDU(context=apdu))
                return
        else:
            apdu.lifetime = self.granted_lifetime(apdu.lifetime)
            if not self._has_subscription(apdu):
                self.check_room(apdu.pduSource)
        await super().do_SubscribeCOVRequest(apdu)

    def _has_subscription(self, apdu: Any) -> bool:
        detection = self._cov_detections.get(apdu.monitoredObjectIdentifier)
        who = (apdu.pduSource, apdu.subscriberProcessIdentifier)
        return detection is not None and any(
            (c.client_addr, c.proc_id) == who for c in detection.cov_subscriptions
        )

    async def do_WritePropertyRequest(self, apdu: Any) -> None:
        self._refuse(apdu.objectIdentifier)

    async def do_WritePropertyMultipleRequest(self, apdu: Any) -> None:
        for spec in apdu.listOfWriteAccessSpecs:
            self._refuse(spec.objectIdentifier)

    def get_object_id(self, objid: Any) -> Any:
        return self.objectIdentifier.get(objid)

    def get_object_name(self, objname: Any) -> Any:
        return self.objectName.get(objname)

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


async def start_device(
    settings: BacnetSettings, points: list[Point], on_refused: Any = None
) -> tuple[Any, Image]:
    """Bind the B/IP port and serve ``points``; returns (application, image).
    ``on_refused()`` counts each datagram dropped by the allowlist."""
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
    port = GatewayNetworkPort(
        address, objectIdentifier=("network-port", 1), objectName=f"{settings.device_name}.ip"
    )
    app = GatewayApplication.from_object_list([device, port])
    install_allowlist(app, settings.allow, on_refused or (lambda: None))
    app.asap.__class__ = GuardedASAP  # adds checks only; see guard.py
    app.asap.max_request_segments = settings.max_segments
    app.asap.proposedWindowSize = settings.window_size
    app.asap.maxSegmentsAccepted = settings.max_segments
    app.max_response_segments = settings.max_response_segments
    app.cov_max_subscriptions = settings.cov_max_subscriptions
    app.cov_max_subscriptions_per_client = settings.cov_max_subscriptions_per_client
    app.cov_max_lifetime_s = settings.cov_max_lifetime_s
    image = Image(points)
    image.app = app
    # names are unique in the table (objects.build_points); identifiers and
    # the device's own two objects are checked here
    fixed_names = {str(n) for n in app.objectName}
    fixed_ids = {(int(o[0]), o[1]) for o in app.objectIdentifier}
    ids = [(int(OBJECT_TYPES[p.kind]), p.instance) for p in points]
    for p, key in zip(points, ids, strict=True):
        if p.name in fixed_names or key in fixed_ids:
            raise RuntimeError(f"duplicate BACnet object {p.name!r} {p.oid}")
    if len(set(ids)) != len(ids):
        raise RuntimeError("duplicate BACnet object identifiers in the table")
    app.objectIdentifier = ObjectTable(app.objectIdentifier, image, by_name=False)
    app.objectName = ObjectTable(app.objectName, image, by_name=True)
    await _wait_bound(app)
    return app, image


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
