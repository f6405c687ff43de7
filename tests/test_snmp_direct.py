"""The direct path for SNMPv2c reads (plugins/snmp/direct.py) sends what
pysnmp's own message path sends, octet for octet, and leaves to pysnmp
everything it is not sure of. Each request goes over UDP twice to the same
agent: once with the direct path off (pysnmp's answer, the reference), once
with it on; only values that change between two requests by themselves
(uptimes, packet counters, data ages) are compared by name and type alone.
net-snmp's snmpbulkwalk checks a whole table walk the same way."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from attack.snmp import v2c_message
from btms_gateway.plugins.snmp import ber, plugin
from btms_gateway.plugins.snmp.agent import READ_VIEW
from btms_gateway.plugins.snmp.direct import Decline
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pysnmp.entity import config
from snmp_rig import (
    BASE,
    OIDS,
    RIG_MAX_RESPONSE,
    VOLATILE,
    AgentThread,
    comparable,
    datagram_exchange,
    decode_v2c,
    oids,
    publish_plant,
    rig_config,
)
from snmp_support import COMMUNITY, V2C, net_snmp

pytestmark = pytest.mark.peer

SNMP_IN_PKTS = (1, 3, 6, 1, 2, 1, 11, 1, 0)
BAD_COMMUNITY_NAMES = (1, 3, 6, 1, 2, 1, 11, 4, 0)


@pytest.fixture(scope="module")
def rig() -> Iterator[Any]:
    cfg = rig_config()
    with AgentThread(cfg, publish_plant) as agent:
        yield agent


def direct() -> Any:
    return plugin.current().agent.direct


def send(datagram: bytes, timeout: float = 5.0) -> bytes | None:
    return datagram_exchange(plugin.current().agent.bound, datagram, timeout)


def volatile(reply: bytes) -> bool:
    names = [name for name, _kind, _ber in decode_v2c(reply)[3]]
    return any(name[: len(v)] == v for name in names for v in VOLATILE)


def both(datagram: bytes, timeout: float = 5.0) -> tuple[bytes | None, bool]:
    """The direct path's reply, after checking it against pysnmp's, and
    whether the direct path answered."""
    d = direct()
    d.enabled = False  # read by the loop thread at the next datagram
    try:
        reference = send(datagram, timeout)
    finally:
        d.enabled = True
    before = d.answered
    reply = send(datagram, timeout)
    answered = d.answered > before
    if answered:  # else both replies are pysnmp's
        assert reference is not None and reply is not None
        if volatile(reference):
            assert comparable(decode_v2c(reply)) == comparable(decode_v2c(reference))
        else:
            assert reply == reference
    return reply, answered


KINDS = st.sampled_from(["get", "next", "bulk"])
REQUEST_IDS = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 127, 128, -1]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(kind=KINDS, start=st.lists(oids(), min_size=1, max_size=4), n=st.integers(0, 5),
       m=st.sampled_from([0, 1, 2, 7, 50, 120, 400]), request_id=REQUEST_IDS)  # fmt: skip
def test_direct_reads_answer_what_pysnmp_answers(
    rig: Any, kind: str, start: list[tuple[int, ...]], n: int, m: int, request_id: int
) -> None:
    # a GETBULK with nothing to answer is dropped, by either path (no reply to wait for)
    assume(kind != "bulk" or n or m)
    both(v2c_message(COMMUNITY, kind, start, n, m, request_id))


USUAL = [
    ("get", [(*OIDS["btmsStringCurrent"], 1)], 0, 0),
    ("get", [(*OIDS["btmsCellVoltage"], 1, 3), (*OIDS["btmsCellSoc"], 3, 2)], 0, 0),
    ("get", [(*OIDS["btmsCellVoltage"], 2, 1)], 0, 0),  # S2 never read: noSuchInstance
    ("get", [(*BASE, 1, 99, 1)], 0, 0),  # no such object
    ("get", [(*OIDS["btmsGwUptime"], 0)], 0, 0),
    ("next", [OIDS["btmsCellVoltage"], (*OIDS["btmsCellTemperature"], 3, 1)], 0, 0),
    ("next", [BASE], 0, 0),
    ("bulk", [OIDS["btmsCellVoltage"]], 0, 50),
    ("bulk", [(*OIDS["btmsCellVoltage"], 1, 12), (*OIDS["btmsStringSoc"], 1)], 1, 20),
    ("bulk", [BASE, (*BASE, 1)], 0, 200),  # capped at 300 varbinds: 150 each
]


@pytest.mark.parametrize(("kind", "start", "n", "m"), USUAL)
def test_the_usual_reads_are_answered_directly(
    rig: Any, kind: str, start: list[tuple[int, ...]], n: int, m: int
) -> None:
    reply, answered = both(v2c_message(COMMUNITY, kind, start, n, m))
    assert answered and reply is not None
    _indication, status, _index, varbinds = decode_v2c(reply)
    assert status == 0 and varbinds
    assert len(reply) <= RIG_MAX_RESPONSE
    if kind == "bulk":
        r = len(start) - n
        asked = n + min(m, 300 // r) * r
        if len(varbinds) < asked:  # cut at the byte bound: whole repetitions, nearly full
            assert (len(varbinds) - n) % r == 0 and len(reply) > RIG_MAX_RESPONSE - 200 * r
        else:
            assert len(varbinds) == asked


def test_a_getbulk_is_cut_at_the_byte_bound_alike_on_both_paths(rig: Any) -> None:
    """max-repetitions far past what fits: both paths keep the same whole
    repetitions (both() compares the replies octet for octet)."""
    for start, n in (([BASE], 0), ([OIDS["btmsCellSoc"], BASE], 1)):
        reply, answered = both(v2c_message(COMMUNITY, "bulk", start, n, 400))
        assert answered and reply is not None
        _indication, status, _index, varbinds = decode_v2c(reply)
        assert status == 0 and n < len(varbinds) < n + 300
        assert RIG_MAX_RESPONSE - 200 < len(reply) <= RIG_MAX_RESPONSE


LEFT_TO_PYSNMP = {
    "in pysnmp's tree": ("get", [(1, 3, 6, 1, 2, 1, 1, 5, 0)], 0, 0),
    "mixed": ("get", [(*OIDS["btmsStringCurrent"], 1), (1, 3, 6, 1, 2, 1, 1, 1, 0)], 0, 0),
    "before the base": ("next", [(1, 3, 6, 1, 2, 1, 1)], 0, 0),
    "past the subtree's end": ("bulk", [(*BASE, 1, 6)], 0, 120),
    "after the base": ("next", [(*BASE[:-1], BASE[-1] + 1)], 0, 0),
    "a SET": ("set", [(*OIDS["btmsStringCurrent"], 1)], 0, 0),
}


@pytest.mark.parametrize("case", sorted(LEFT_TO_PYSNMP))
def test_what_the_direct_path_leaves_to_pysnmp(rig: Any, case: str) -> None:
    kind, start, n, m = LEFT_TO_PYSNMP[case]
    reply, answered = both(v2c_message(COMMUNITY, kind, start, n, m))
    assert reply is not None and not answered


def test_a_wrong_community_gets_pysnmps_silence_and_is_counted(rig: Any) -> None:
    def bad_names() -> int:
        reply = send(v2c_message(COMMUNITY, "get", [BAD_COMMUNITY_NAMES]))
        assert reply is not None
        return int.from_bytes(decode_v2c(reply)[3][0][2][2:], "big")

    before = bad_names()
    reply, answered = both(v2c_message("wrong", "get", [(*OIDS["btmsStringCurrent"], 1)]), 1.0)
    assert reply is None and not answered
    assert bad_names() == before + 2  # once per path


def tlv(tag: int, content: bytes, long_form: bool = False) -> bytes:
    n = len(content)
    assert n < 0x80
    return bytes((tag, 0x81, n) if long_form else (tag, n)) + content


def get_message(request_id: bytes, value: bytes, long_id: bool = False) -> bytes:
    """An SNMPv2c GET of btmsStringCurrent.1, written out by hand."""
    oid = ber.oid_content((*OIDS["btmsStringCurrent"], 1))
    varbind = tlv(0x30, tlv(0x06, oid) + value)
    pdu = tlv(0x02, request_id, long_id) + b"\x02\x01\x00\x02\x01\x00" + tlv(0x30, varbind)
    return tlv(0x30, b"\x02\x01\x01" + tlv(0x04, COMMUNITY.encode()) + tlv(0xA0, pdu))


def test_encodings_pysnmp_would_rewrite_are_left_to_it(rig: Any) -> None:
    good = get_message(b"\x05", b"\x05\x00")
    assert good == v2c_message(COMMUNITY, "get", [(*OIDS["btmsStringCurrent"], 1)], request_id=5)
    for datagram in (get_message(b"\x00\x05", b"\x05\x00"), get_message(b"\x05", b"\x02\x01\x07")):
        reply, answered = both(datagram)  # a padded request-id, a value other than NULL
        assert reply is not None and not answered
    # a long-form length is only another way to write the same request
    reply, answered = both(get_message(b"\x05", b"\x05\x00", long_id=True))
    assert answered and reply is not None and b"\x02\x01\x05" in reply


def test_snmp_in_pkts_counts_direct_requests(rig: Any) -> None:
    def in_pkts() -> int:
        reply = send(v2c_message(COMMUNITY, "get", [SNMP_IN_PKTS]))
        assert reply is not None
        return int.from_bytes(decode_v2c(reply)[3][0][2][2:], "big")

    before, answered = in_pkts(), direct().answered
    for k in range(5):
        assert send(v2c_message(COMMUNITY, "get", [(*OIDS["btmsStringCurrent"], k + 1)]))
    assert direct().answered == answered + 5
    assert in_pkts() == before + 6  # the five and the second read itself


def test_a_view_below_the_base_turns_the_direct_path_off(rig: Any) -> None:
    engine = plugin.current().agent.engine
    column = OIDS["btmsCellVoltage"]
    request = v2c_message(COMMUNITY, "next", [column])
    config.add_vacm_view(engine, READ_VIEW, "excluded", column, "")
    try:
        reply, answered = both(request)
        assert reply is not None and not answered
        name = decode_v2c(reply)[3][0][0]
        assert name[: len(column)] != column  # the excluded column is skipped
    finally:
        config.delete_vacm_view(engine, READ_VIEW, column)
    reply, answered = both(request)
    assert answered and reply is not None and decode_v2c(reply)[3][0][0][: len(column)] == column


def mutate(datagram: bytes, how: str, at: int, x: bytes) -> bytes:
    """``datagram`` with one change: a byte XORed with x[0], cut at ``at``, or x inserted."""
    out = bytearray(datagram)
    if how == "flip":
        out[at] ^= x[0] or 1
    elif how == "cut":
        del out[at:]
    else:
        out[at:at] = x
    return bytes(out)


def declined_or_answered_right(rig: Any, d: bytes) -> bool:
    """True when the direct path answered ``d`` (as pysnmp does, or the check fails)."""

    async def ask() -> bytes | None:
        try:
            return direct().reply(d)  # type: ignore[no-any-return]
        except Decline:
            return None

    if rig.call(ask) is None:
        return False
    reply, answered = both(d)  # answered directly: pysnmp must answer the same
    assert answered and reply is not None
    return True


HOW = ["flip", "flip", "flip", "cut", "insert"]
PDU = 7 + len(COMMUNITY)  # where a change can still leave a request to answer


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(kind=KINDS, start=st.lists(oids(), min_size=1, max_size=3), data=st.data())
def test_a_mutated_request_is_declined_or_answered_as_pysnmp_would(
    rig: Any, kind: str, start: list[tuple[int, ...]], data: st.DataObject
) -> None:
    datagram = v2c_message(COMMUNITY, kind, start, 0, 10)
    how = data.draw(st.sampled_from(HOW))
    at = data.draw(st.one_of(st.integers(PDU, len(datagram) - 1), st.integers(0, PDU)))
    declined_or_answered_right(
        rig, mutate(datagram, how, at, data.draw(st.binary(min_size=1, max_size=4)))
    )


def test_many_mutated_requests_still_reach_the_direct_path(rig: Any) -> None:
    """The property above says something only if mutated requests do get
    answered directly: 400 seeded mutations of the usual reads."""
    rng = random.Random(11)
    answered = 0
    for k in range(400):
        kind, start, n, m = USUAL[k % len(USUAL)]
        datagram = v2c_message(COMMUNITY, kind, start, n, m)
        at = rng.randrange(PDU, len(datagram))
        x = rng.randbytes(rng.randint(1, 4))
        answered += declined_or_answered_right(rig, mutate(datagram, rng.choice(HOW), at, x))
    assert answered >= 40


async def test_a_net_snmp_bulkwalk_reads_the_same_table_either_way(rig: Any) -> None:
    from snmp_support import agent_address

    async def walk() -> str:
        r = await net_snmp(
            "snmpbulkwalk", *V2C, "-Cr37", "-On", agent_address(), "BTMS-GATEWAY-MIB::btmsCellTable"
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    d = direct()
    d.enabled = False
    try:
        reference = await walk()
    finally:
        d.enabled = True
    before = d.answered
    assert await walk() == reference
    lines = reference.splitlines()
    assert len(lines) > 100
    # every GETBULK but the last, which runs past the cell table, answered directly
    assert d.answered - before >= len(lines) // 37 - 1


def test_random_walks_end_where_pysnmps_end(rig: Any) -> None:
    """GETNEXT chains from random points (a walk by snmpwalk's own steps)."""
    rng = random.Random(7)
    for _ in range(20):
        oid = rng.choice(list(OIDS.values()))
        for _step in range(rng.randint(1, 30)):
            reply, _answered = both(v2c_message(COMMUNITY, "next", [oid]))
            assert reply is not None
            oid = decode_v2c(reply)[3][0][0]
