"""A small bacpypes3 BACnet/IP client for tests and benchmarks (a free UDP
port for it: ``ports.free_udp_port``).

On one host the client needs its own UDP port: bacpypes3 treats any
127.x.x.x address on its own port as itself and loops the packet back, and
a port is not shared between processes without SO_REUSEPORT. So on loopback
discovery is a Who-Is sent to the device's address (unicast), which any
BACnet device must answer like a broadcast one.
"""

from __future__ import annotations

from typing import Any

from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier


def make_client(
    port: int, host: str = "127.0.0.1", instance: int = 4_194_000, max_segments: int = 255
) -> Application:
    """A bacpypes3 application acting as a BACnet client on ``host:port``.

    It accepts more than 64 segments (bacpypes3's default client takes 16 of
    1024 octets), so the whole object list of a full plant (about 23,600
    identifiers, 120 KB) can be read in one request."""
    device = DeviceObject(
        objectIdentifier=("device", instance),
        objectName=f"btms-client-{port}",
        vendorIdentifier=999,
        maxApduLengthAccepted=1476,
        maxSegmentsAccepted=max_segments,
    )
    net = NetworkPortObject(
        f"{host}/8:{port}", objectIdentifier=("network-port", 1), objectName="client-port"
    )
    return Application.from_object_list([device, net])


def oid(kind: str, instance: int) -> ObjectIdentifier:
    return ObjectIdentifier((kind, instance))


async def read_values(
    client: Application, address: Address | str, oids: list[Any], prop: str = "presentValue"
) -> dict[Any, Any]:
    """One ReadPropertyMultiple of ``prop`` for every object in ``oids``."""
    request: list[Any] = []
    for o in oids:
        request += [o, [prop]]
    result = await client.read_property_multiple(Address(str(address)), request)
    return {(str(o[0]), o[1]): value for o, _p, _i, value in result}
