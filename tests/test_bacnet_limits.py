"""What a BACnet client may ask of the device (plugins/bacnet/guard.py and
rpm.py), and the conformance points standard clients trip on: short
versions of the bench attacks.

Clients: rusty-bacnet (independent), raw B/IP frames on a plain UDP socket
where the exact PDU matters, and bacpypes3 for the answers compared with
its own handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import rusty_bacnet as rb
from attack.bacnet import Raw, read_property, subscribe_cov
from bacnet_support import DEVICE, PI, _by_name, device, rid
from bacpypes3.apdu import (
    AbortPDU,
    APCISequence,
    ReadPropertyMultipleACK,
    ReadPropertyMultipleRequest,
)
from bacpypes3.basetypes import PropertyReference, ReadAccessSpecification
from bacpypes3.pdu import Address
from bacpypes3.service.object import ReadWritePropertyMultipleServices
from btms_gateway.kit.bacnet_client import oid
from btms_gateway.kit.ports import free_udp_port
from btms_gateway.plugins.bacnet import rpm
from btms_gateway.plugins.bacnet.plugin import service

APDU_TIMEOUT_MS = 2000
REJECT, ABORT, SEGMENT_ACK = 0x6, 0x7, 0x4
UNRECOGNIZED_SERVICE, BUFFER_OVERFLOW, APDU_TOO_LONG = 9, 1, 11
EXCLUDED = {
    p.to_raw() for p in (PI.OBJECT_IDENTIFIER, PI.OBJECT_NAME, PI.OBJECT_TYPE, PI.PROPERTY_LIST)
}


@asynccontextmanager
async def client(interface: str = "127.0.0.1") -> AsyncIterator[Any]:
    """rusty-bacnet, with a short APDU timeout: a missing answer fails fast."""
    async with rb.BACnetClient(
        interface=interface,
        port=free_udp_port(interface),
        broadcast_address="127.255.255.255",
        apdu_timeout_ms=APDU_TIMEOUT_MS,
    ) as c:
        yield c


async def test_property_list_leaves_out_the_four_the_standard_excludes() -> None:
    async with device() as (h, address), client() as c:
        kinds = {p.kind: p.oid for p in reversed(service(h.gateway).points)}  # one of each
        assert set(kinds) == {"analogInput", "binaryInput", "multiStateInput", "structuredView"}
        for kind, instance in [("device", DEVICE), ("networkPort", 1), *kinds.values()]:
            listed = await c.read_property(address, rid(kind, instance), PI.PROPERTY_LIST)
            got = {int(p) for p in listed.value}
            assert got and not got & EXCLUDED, (kind, instance)
            for raw in got:  # each one listed is there to read
                await c.read_property(address, rid(kind, instance), PI.from_raw(raw))


async def test_unsupported_services_are_rejected_at_once() -> None:
    async with device() as (h, address), client() as c:
        volts = rid(*_by_name(h)["S1.voltage"].oid)
        with pytest.raises(rb.BacnetRejectError) as err:  # not BacnetTimeoutError
            await c.subscribe_cov_property_multiple(
                address, 7, [(volts, [(PI.PRESENT_VALUE, None, None, False)])], False
            )
        assert err.value.reason == UNRECOGNIZED_SERVICE
        raw = Raw(address)
        try:
            for invoke_id, service_choice in ((3, 30), (4, 31), (5, 200)):
                raw.send(bytes([0x00, 0x05, invoke_id, service_choice, 0x09, 0x01]))
                answer = await raw.answer()
                assert answer == bytes([REJECT << 4, invoke_id, UNRECOGNIZED_SERVICE])
        finally:
            raw.close()


async def test_a_request_longer_than_max_segments_is_aborted() -> None:
    async with device(max_segments=2) as (_, address):
        raw = Raw(address)
        try:
            # ReadPropertyMultiple in segments of 8 bytes of service data
            body = bytes([0x0C, 0, 0, 0, 1, 0x1E, 0x09, 85, 0x1F]) * 3
            for seq in range(3):
                more = 0x04 if seq < 2 else 0
                head = bytes([0x08 | more | 0x02, 0x05, 9, seq, 1, 14])
                raw.send(head + body[seq * 9 : seq * 9 + 9])
                answer = await raw.answer()
                assert answer is not None
                if seq < 2:
                    assert answer[0] >> 4 == SEGMENT_ACK and answer[2] == seq
            assert answer == bytes([ABORT << 4 | 0x01, 9, BUFFER_OVERFLOW])
            raw.send(read_property(10, DEVICE))  # the device goes on answering
            answer = await raw.answer()
            assert answer is not None and answer[0] >> 4 == 0x3 and answer[1] == 10
        finally:
            raw.close()


def _rpm_all(oids: list[tuple[str, int]]) -> Any:
    specs = [
        ReadAccessSpecification(
            objectIdentifier=oid(*o),
            listOfPropertyReferences=[PropertyReference(propertyIdentifier="all")],
        )
        for o in oids
    ]
    request = ReadPropertyMultipleRequest(listOfReadAccessSpecs=specs)
    request.pduSource, request.apduInvokeID = Address("127.0.0.1:47000"), 1
    request.apduMaxResp, request.apduMaxSegs, request.apduSA = 5, 0, True  # 1476, unsaid
    return request


async def _answer(app: Any, handler: Any, request: Any) -> tuple[Any, int]:
    """What ``handler`` answers ``request`` and how often the loop ran
    something else meanwhile (a task that yields as often as it can)."""
    answers: list[Any] = []
    turns = 0
    done = False

    async def other() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    async def response(apdu: Any) -> None:
        answers.append(apdu)

    app.response = response
    probe = asyncio.create_task(other())
    await asyncio.sleep(0)
    start = turns
    try:
        await handler(request)
    finally:
        done = True
        await probe
        del app.response
    return answers[0], turns - start


CLOCK = ("local-time", "local-date")  # read a moment apart


def _values(ack: Any) -> dict[tuple[Any, str], bytes]:
    """(object, property) -> encoded value of an RPM-ACK, order aside."""
    out = {}
    for result in ack.listOfReadAccessResults:
        for element in result.listOfResults:
            if str(element.propertyIdentifier) in CLOCK:
                continue
            value = element.readResult.propertyValue
            out[(tuple(result.objectIdentifier), str(element.propertyIdentifier))] = (
                value.tagList.encode().pduData if value is not None else b""
            )
    return out


@pytest.mark.slow  # ~4 s on a shared 2-core box
async def test_read_property_multiple_is_answered_in_slices_as_bacpypes3_would() -> None:
    async with device() as (h, _):
        svc = service(h.gateway)
        request = _rpm_all([*sorted(p.oid for p in svc.points), ("device", DEVICE)])
        ours, turns = await _answer(svc.app, svc.app.do_ReadPropertyMultipleRequest, request)
        assert turns > 10  # the loop ran other work while the answer was made
        stock = ReadWritePropertyMultipleServices.do_ReadPropertyMultipleRequest
        theirs, _ = await _answer(svc.app, lambda r: stock(svc.app, r), request)
        assert isinstance(theirs, ReadPropertyMultipleACK)
        mine = APCISequence.decode(ours)
        assert isinstance(mine, ReadPropertyMultipleACK)
        assert [tuple(r.objectIdentifier) for r in mine.listOfReadAccessResults] == [
            tuple(r.objectIdentifier) for r in theirs.listOfReadAccessResults
        ]
        assert _values(mine) == _values(theirs)  # the same values, encoded the same


async def test_an_answer_past_the_segments_allowed_is_aborted_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with device(max_response_segments=2) as (h, address), client() as c:
        svc = service(h.gateway)
        everything = sorted(p.oid for p in svc.points)
        request = [(rid(*o), [(PI.ALL, None)]) for o in everything]
        with pytest.raises(rb.BacnetAbortError) as err:
            await c.read_property_multiple(address, request)
        assert err.value.reason == APDU_TOO_LONG
        reads = 0
        read = rpm.read_property_to_result_element

        async def counted(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await read(*args)

        monkeypatch.setattr(rpm, "read_property_to_result_element", counted)
        answer, _ = await _answer(
            svc.app, svc.app.do_ReadPropertyMultipleRequest, _rpm_all(everything)
        )
        assert isinstance(answer, AbortPDU) and answer.apduSrv
        assert answer.apduAbortRejectReason == APDU_TOO_LONG
        assert 0 < reads < len(everything)  # stopped once past the bound, not after reading all
        results = await c.read_property_multiple(address, request[:3])  # a small answer fits
        assert len(results) == 3 and all(not r["error"] for res in results for r in res["results"])


async def test_cov_subscriptions_are_capped_and_a_renewal_is_not_counted() -> None:
    caps = {"cov_max_subscriptions": 5, "cov_max_subscriptions_per_client": 3}
    async with device(**caps) as (h, address), client() as c:
        names = _by_name(h)
        objects = [names[f"S{s}.cell00{n}.voltage"].oid for s in (1, 2) for n in (1, 2, 3)]
        for n, obj in enumerate(objects[:3]):
            await c.subscribe_cov(address, n, rid(*obj), False, 60)
        await c.subscribe_cov(address, 0, rid(*objects[0]), False, 120)  # a renewal fits
        with pytest.raises(rb.BacnetProtocolError) as err:  # a 4th from one host
            await c.subscribe_cov(address, 3, rid(*objects[3]), False, 60)
        assert (err.value.error_class, err.value.error_code) == (
            rb.ErrorClass.RESOURCES.to_raw(),
            rb.ErrorCode.NO_SPACE_TO_ADD_LIST_ELEMENT.to_raw(),
        )
        other, answers = Raw(address, local="127.0.0.2"), []  # another host
        try:
            for invoke_id, obj in enumerate(objects[3:], start=1):
                other.send(subscribe_cov(invoke_id, invoke_id, obj[1], 60))
                answers.append(await other.answer())
        finally:
            other.close()
        simple_ack, error = 0x2, 0x5
        assert [a[0] >> 4 if a else None for a in answers] == [simple_ack, simple_ack, error]
        assert answers[2][3:] == bytes([0x91, 3, 0x91, 19])  # resources, no-space-to-add-...
        await c.unsubscribe_cov(address, 2, rid(*objects[2]))
        await c.subscribe_cov(address, 3, rid(*objects[3]), False, 60)  # room again
        assert len(service(h.gateway).app.subscribers()) == 5


async def test_datagrams_from_outside_the_allowlist_are_dropped() -> None:
    async with device(allow=["127.0.0.2"]) as (h, address):
        outside, inside = Raw(address), Raw(address, local="127.0.0.2")
        try:
            outside.send(read_property(1, DEVICE))
            assert await outside.answer(timeout=1.0) is None
            inside.send(read_property(2, DEVICE))
            answer = await inside.answer()
            assert answer is not None and answer[0] >> 4 == 0x3 and answer[1] == 2
        finally:
            outside.close()
            inside.close()
        assert service(h.gateway).refused_allowlist == 1
