"""ReadPropertyMultiple answered in slices, within a size bound.

bacpypes3 0.0.110 reads every property a request names, then encodes the
whole answer, in one go on the event loop that the acquisition and every
other protocol share: ALL of all 1,479 objects of a plant held the loop for
1.8 s (Modbus latency followed), and the work grows with the plant. Here
the answer is made an object at a time:

* each object's result is encoded as soon as it is read, so the size of the
  answer is known as it grows, and the pieces are the answer (an RPM-ACK is
  its results one after the other; a test compares with bacpypes3's own);
* the work yields to the loop every ``SLICE_S``, so a large answer holds
  the loop for a few milliseconds at a time;
* once the answer outgrows what may be sent, the work stops and the client
  gets an Abort (from the server): ``apdu-too-long`` (reason 11, "exceeds
  the maximum number of segments accepted", what bacpypes3 itself sends,
  but only after doing all the work), or ``segmentation-not-supported``
  when the client takes no segmented answer. What may be sent: the client's max APDU times the
  segments it accepts, and never more than ``max_response_segments``
  (a client's "more than 64" is taken at that);
* one answer is built at a time; others wait their turn.

The answer is otherwise bacpypes3's (the same property sets for ALL,
REQUIRED and OPTIONAL, the same errors), read through its own
``read_property_to_result_element``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bacpypes3.apdu import (
    AbortPDU,
    AbortReason,
    ComplexAckPDU,
    ConfirmedServiceChoice,
    decode_max_apdu_length_accepted,
    decode_max_segments_accepted,
)
from bacpypes3.basetypes import PropertyIdentifier, ReadAccessResult
from bacpypes3.errors import ObjectError
from bacpypes3.service.object import read_property_to_result_element

SLICE_S = 0.004
GROUPS = (PropertyIdentifier.all, PropertyIdentifier.required, PropertyIdentifier.optional)
WILDCARD_DEVICE = ("device", 4194303)


class Slicer:
    """Yields to the loop after every ``SLICE_S`` of work: whatever became
    ready meanwhile (a Modbus request, a poll's timer, a datagram) runs
    before the next slice."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    async def tick(self) -> None:
        if time.perf_counter() - self.started >= SLICE_S:
            await asyncio.sleep(0)
            self.started = time.perf_counter()


def answer_limit(apdu: Any, max_segments: int) -> tuple[int, AbortReason]:
    """Bytes of service data the answer to ``apdu`` may have, and the abort
    reason for an answer that is longer."""
    segment = decode_max_apdu_length_accepted(apdu.apduMaxResp)
    if not apdu.apduSA:
        return segment, AbortReason.segmentationNotSupported
    accepted = decode_max_segments_accepted(apdu.apduMaxSegs)  # None: unsaid or over 64
    segments = max_segments if accepted is None else min(accepted, max_segments)
    return segment * segments, AbortReason.apduTooLong


class SlicedReadPropertyMultiple:
    """Mixin for the application: the ReadPropertyMultiple service."""

    #: set by the device from the settings
    max_response_segments: int = 128
    _rpm_lock: asyncio.Lock | None = None

    if TYPE_CHECKING:  # the application's (bacpypes3's Application, which this mixes into)
        device_object: Any
        get_object_id: Callable[[Any], Any]
        response: Callable[[Any], Awaitable[None]]

    async def do_ReadPropertyMultipleRequest(self, apdu: Any) -> None:
        specs = apdu.listOfReadAccessSpecs
        device = self.device_object
        slicer = Slicer()
        targets = []
        for spec in specs:
            oid = spec.objectIdentifier
            if oid == WILDCARD_DEVICE and device is not None:
                oid = device.objectIdentifier
            targets.append((oid, self.get_object_id(oid)))
            await slicer.tick()
        if not any(obj for _, obj in targets):
            raise ObjectError("unknown-object")
        limit, too_long = answer_limit(apdu, self.max_response_segments)
        if self._rpm_lock is None:
            self._rpm_lock = asyncio.Lock()
        async with self._rpm_lock:
            slicer = Slicer()
            pieces: list[bytes] = []
            size = 0
            for (oid, obj), spec in zip(targets, specs, strict=True):
                results = []
                for ref in spec.listOfPropertyReferences:
                    results += await _read(obj, ref, slicer)
                piece = ReadAccessResult(objectIdentifier=oid, listOfResults=results)
                data = piece.encode().encode().pduData
                size += len(data)
                if size > limit:
                    # sent here, not raised: bacpypes3 sends a raised abort with
                    # the server flag clear, which clients take for another's
                    await self.response(AbortPDU(True, reason=too_long, context=apdu))
                    return
                pieces.append(bytes(data))
                await slicer.tick()
        ack = ComplexAckPDU(context=apdu)
        ack.apduService = ConfirmedServiceChoice.readPropertyMultiple
        ack.put_data(b"".join(pieces))
        await self.response(ack)


async def _read(obj: Any, ref: Any, slicer: Slicer) -> list[Any]:
    """The result elements of one property reference (bacpypes3's rules)."""
    pid, index = ref.propertyIdentifier, ref.propertyArrayIndex
    if pid not in GROUPS or not obj:  # one property, or an unknown object: one element
        return [await read_property_to_result_element(obj, pid, index)]
    required: set[str] = set()
    for cls in reversed(type(obj).__mro__):
        required |= set(getattr(cls, "_required", ()))
    names = list(obj._elements)  # in the object's order (bacpypes3 takes a set's)
    if pid == PropertyIdentifier.required:
        names = [n for n in names if n in required]
    elif pid == PropertyIdentifier.optional:
        names = [n for n in names if n not in required]
    if pid != PropertyIdentifier.optional:
        names = [n for n in names if n != "propertyList"]
    if len(names) == 1:  # bacpypes3 reads the reference itself then
        return [await read_property_to_result_element(obj, pid, None)]
    out = []
    for name in names:
        if inspect.getattr_static(obj, name, None) is None:
            continue
        element = await read_property_to_result_element(obj, name, None)
        if not element.readResult.propertyAccessError:
            out.append(element)
        await slicer.tick()
    return out
