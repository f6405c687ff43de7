"""The agent's pre-encoded varbinds are byte for byte what pyasn1 encodes, and
a response carrying them decodes with pysnmp's own message decoder."""

from __future__ import annotations

from typing import Any

from btms_gateway.plugins.snmp import ber
from btms_gateway.plugins.snmp.image import ENCODERS
from btms_gateway.plugins.snmp.responders import set_varbinds
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.proto.api import v2c

arcs = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20)
oids = st.builds(lambda first, second, rest: (first, second, *rest),
                 st.integers(0, 1), st.integers(0, 39), arcs)  # fmt: skip
values = st.one_of(
    st.tuples(st.sampled_from(["Integer32", "INTEGER"]), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.sampled_from(["Gauge32", "Unsigned32", "Counter32", "TimeTicks"]),
              st.integers(0, 2**32 - 1)),
    st.tuples(st.sampled_from(["OCTET STRING", "BITS"]), st.binary(max_size=300)),
    st.tuples(st.just("OCTET STRING"), st.text(max_size=200)),
)  # fmt: skip


def reference(oid: tuple[int, ...], base: str, raw: object) -> bytes:
    """pyasn1's encoding (texts go out UTF-8 encoded, as the agent sends them)."""
    raw = raw.encode() if isinstance(raw, str) else raw
    vb = rfc1905.VarBind()
    v2c.apiVarBind.set_oid_value(vb, (oid, ENCODERS[base](raw)))
    return encoder.encode(vb)


@given(oids, values)
def test_varbind_encoding_matches_pyasn1(oid: tuple[int, ...], value: tuple[str, object]) -> None:
    base, raw = value
    content = ber.oid_content(oid)
    ours, theirs = ber.varbind(ber.oid_tlv(content), base, raw), reference(oid, base, raw)
    if isinstance(raw, int) and raw < 0:
        # pyasn1 writes e.g. -128 as 02 02 FF 80, which X.690 8.3.2 forbids
        # (first 9 bits all ones); ours is the minimal 02 01 80
        assert len(ours) <= len(theirs)
    else:
        assert ours == theirs
    decoded, rest = decoder.decode(ours, asn1Spec=rfc1905.VarBind())
    assert rest == b"" and tuple(decoded[0]) == oid
    expected = raw.encode() if isinstance(raw, str) else raw
    assert decoded[1].getComponent(True) == expected
    assert ber.decode_oid_content(content) == oid


def test_response_with_prebuilt_varbinds_decodes_like_a_normal_one() -> None:
    name = (1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 1, 4, 1, 3, 1, 2)
    normal, fast = v2c.GetResponsePDU(), v2c.GetResponsePDU()
    for pdu in (normal, fast):
        v2c.apiPDU.set_defaults(pdu)
        v2c.apiPDU.set_request_id(pdu, 7)
    v2c.apiPDU.set_varbinds(
        normal, [(name, rfc1902.Integer32(2252)), ((1, 3, 6), rfc1905.endOfMibView)]
    )
    prebuilt = ber.Prebuilt(ber.varbind(ber.oid_tlv(ber.oid_content(name)), "Integer32", 2252))
    set_varbinds(fast, [(name, prebuilt), ((1, 3, 6), rfc1905.endOfMibView)], expand=False)
    assert encoder.encode(fast) == encoder.encode(normal)
    decoded, rest = decoder.decode(encoder.encode(fast), asn1Spec=v2c.GetResponsePDU())
    assert rest == b"" and v2c.apiPDU.get_varbinds(decoded)[0][1] == 2252
    expanded = v2c.GetResponsePDU()
    v2c.apiPDU.set_defaults(expanded)
    v2c.apiPDU.set_request_id(expanded, 7)
    set_varbinds(expanded, [(name, prebuilt), ((1, 3, 6), rfc1905.endOfMibView)], expand=True)
    assert encoder.encode(expanded) == encoder.encode(normal)
    assert isinstance(univ.Any(prebuilt.ber), univ.Any)


pysnmp_values = st.one_of(
    st.sampled_from([rfc1905.endOfMibView, rfc1905.noSuchObject, rfc1905.noSuchInstance]),
    st.builds(rfc1902.Counter64, st.integers(0, 2**64 - 1)),
    st.builds(rfc1902.TimeTicks, st.integers(0, 2**32 - 1)),
    st.builds(rfc1902.IpAddress, st.binary(min_size=4, max_size=4)),
    st.builds(rfc1902.ObjectIdentifier, oids),
    st.builds(rfc1902.OctetString, st.binary(max_size=40)),
    st.builds(rfc1902.Integer32, st.integers(-(2**31), 2**31 - 1)),
)


@given(
    st.lists(st.tuples(oids, st.one_of(values, pysnmp_values)), max_size=60),
    st.integers(0, 2**31 - 1),
)
def test_a_varbind_list_encodes_as_one_block_like_one_by_one(
    items: list[tuple[tuple[int, ...], Any]], request_id: int
) -> None:
    """The list goes in as one univ.Any (whole=True), ours pre-encoded and
    pysnmp's objects encoded one by one: the message octets are those of one
    univ.Any per varbind (whole=False) and of pyasn1's own objects."""
    varbinds, plain = [], []
    for oid, value in items:
        if isinstance(value, tuple):  # ours: (base type, raw value)
            base, raw = value
            if isinstance(raw, int) and raw < 0:
                continue  # pyasn1's non-minimal form: see above
            ours = ber.varbind(ber.oid_tlv(ber.oid_content(oid)), base, raw)
            varbinds.append((oid, ber.Prebuilt(ours)))
            plain.append((oid, ENCODERS[base](raw.encode() if isinstance(raw, str) else raw)))
        else:
            varbinds.append((oid, value))
            plain.append((oid, value))
    encoded = []
    for whole in (True, False):
        pdu = v2c.GetResponsePDU()
        v2c.apiPDU.set_defaults(pdu)
        v2c.apiPDU.set_request_id(pdu, request_id)
        set_varbinds(pdu, varbinds, expand=False, whole=whole)
        encoded.append(encoder.encode(pdu))
    reference = v2c.GetResponsePDU()
    v2c.apiPDU.set_defaults(reference)
    v2c.apiPDU.set_request_id(reference, request_id)
    v2c.apiPDU.set_varbinds(reference, plain)
    assert encoded[0] == encoded[1] == encoder.encode(reference)
