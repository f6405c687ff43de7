"""SNMPv2c reads of our own subtree, answered without pysnmp's message path.

pysnmp spends about a millisecond of CPU on each request before and after
our controller runs: pyasn1 decodes the datagram into objects, the message
dispatcher, the community security model and VACM pass it along, and the
response is built and encoded the same way back (docs/performance.md, "SNMP
agent"). For the requests a NOC poller sends all day (v2c GET, GETNEXT and
GETBULK of the battery tables) none of that decides anything: the community
is ours, the requester's view holds the whole enterprise subtree, and the
answers are the controller's. So such a request is read straight from the
datagram's bytes and answered from the controller (the same index, the same
pre-encoded varbinds), byte for byte what pysnmp would send
(tests/test_snmp_direct.py compares the two on random requests).

Everything else is left to pysnmp untouched, and that is how errors keep
pysnmp's own status codes, counters and authentication-failure traps: other
versions, SET, a community that is not ours, a varbind outside the subtree
or a walk that runs past its end, anything encoded in a form pyasn1 would
re-encode differently or refuse to decode, a view that no longer holds the whole
subtree as one (checked with pysnmp's VACM on every request), a GET or
GETNEXT whose answer would not fit the byte bound (pysnmp's responder
answers it tooBig). A GETBULK is cut to what fits by the same rule as
pysnmp's responder (limits.py). The one counter pysnmp keeps for a request
that succeeds, snmpInPkts, is counted here too.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from pysnmp.error import PySnmpError
from pysnmp.proto import rfc1902, rfc1905

from . import ber, limits
from .controller import BtmsController
from .views import ViewTree

log = logging.getLogger("btms_gateway.plugins.snmp")

GET, GETNEXT, GETBULK, RESPONSE = 0xA0, 0xA1, 0xA5, 0xA2
V2C = b"\x02\x01\x01"  # version INTEGER 1
NO_ERROR = b"\x02\x01\x00\x02\x01\x00"  # error-status 0, error-index 0
NULL = b"\x05\x00"
NO_SUCH = {id(rfc1905.noSuchObject): b"\x80\x00", id(rfc1905.noSuchInstance): b"\x81\x00"}
NO_AUTH_NO_PRIV, V2C_MODEL, VACM = 1, 2, 3


class Decline(Exception):
    """Not a request this path answers: pysnmp gets the datagram."""


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, end) of the TLV at ``pos``; definite lengths only."""
    if pos + 2 > end:
        raise Decline
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 2 or pos + k > end:
            raise Decline
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise Decline
    return tag, pos, pos + n


def _integer(buf: bytes, start: int, end: int) -> int:
    if not 1 <= end - start <= 4:  # Integer32
        raise Decline
    return int.from_bytes(buf[start:end], "big", signed=True)


def _minimal(buf: bytes, start: int, end: int) -> bool:
    """An INTEGER's content as pyasn1 would write it (echoed request-ids)."""
    if end - start == 1:
        return True
    first, second = buf[start], buf[start + 1]
    return not ((first == 0x00 and second < 0x80) or (first == 0xFF and second >= 0x80))


def _oid(content: bytes) -> tuple[int, ...]:
    """An OBJECT IDENTIFIER whose every sub-identifier is minimally encoded
    (so that re-encoding it gives the same octets), else Decline."""
    if not content or content[-1] & 0x80:
        raise Decline
    at_start = True
    for byte in content:
        if at_start and byte == 0x80:
            raise Decline
        at_start = not byte & 0x80
    return ber.decode_oid_content(content)


class DirectReads:
    """Answers the requests above for one agent; ``enabled = False`` hands
    every request to pysnmp (the tests' reference path)."""

    enabled = True

    def __init__(
        self,
        engine: Any,
        controller: BtmsController,
        community: bytes,
        security_name: str,
        max_varbinds: int,
        max_response: int = 65507,
    ) -> None:
        self.engine = engine
        self.controller = controller
        self.base = controller.base
        self.community = community
        self._community_tlv = b"\x04" + ber.length(len(community)) + community
        self.security_name = rfc1902.OctetString(security_name)
        self.max_varbinds = max_varbinds
        self.max_response = max_response  # limits.py: the bound every response obeys
        # the smallest varbind under the base (SEQUENCE, an OID one arc longer than
        # the base, a two-octet value): how many could fit bounds what is computed
        self._min_varbind = 2 + 2 + len(ber.oid_content(self.base)) + 1 + 2
        builder = engine.get_mib_builder()
        (self._in_pkts,) = builder.import_symbols("__SNMPv2-MIB", "snmpInPkts")
        (max_size,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineMaxMessageSize")
        self.max_size = int(max_size.syntax)
        self.views = ViewTree(builder)
        self.answered = 0  # requests answered here
        self.failures = 0  # requests this path failed on (pysnmp answered them)

    def answer(self, datagram: bytes, send: Callable[[bytes], None]) -> bool:
        """True when the request was answered here."""
        if not self.enabled:
            return False
        try:
            reply = self.reply(datagram)
        except Decline:
            return False
        except Exception:  # a fault of this path must not cost the manager its answer
            self.failures += 1
            if self.failures == 1 or self.failures % 1000 == 0:
                log.exception("direct SNMP read failed (%d so far); pysnmp answers", self.failures)
            return False
        self._in_pkts.syntax += 1
        self.answered += 1
        send(reply)
        return True

    def reply(self, d: bytes) -> bytes:
        """The response message for request ``d``, or Decline."""
        end = len(d)
        tag, pos, msg_end = _tlv(d, 0, end)
        if tag != 0x30 or msg_end != end or d[pos : pos + 3] != V2C:
            raise Decline
        tag, c_start, c_end = _tlv(d, pos + 3, end)
        if tag != 0x04 or not hmac.compare_digest(d[c_start:c_end], self.community):
            raise Decline
        kind, pos, pdu_end = _tlv(d, c_end, end)
        if kind not in (GET, GETNEXT, GETBULK) or pdu_end != end:
            raise Decline
        tag, r_start, r_end = _tlv(d, pos, end)
        if tag != 0x02 or not 1 <= r_end - r_start <= 4 or not _minimal(d, r_start, r_end):
            raise Decline
        request_id = b"\x02" + bytes((r_end - r_start,)) + d[r_start:r_end]  # as pyasn1 writes it
        tag, start, n_end = _tlv(d, r_end, end)
        non_repeaters = _integer(d, start, n_end) if tag == 0x02 else None
        tag, start, m_end = _tlv(d, n_end, end)
        max_repetitions = _integer(d, start, m_end) if tag == 0x02 else None
        if non_repeaters is None or max_repetitions is None or max_repetitions < 0:
            raise Decline  # error-index and max-repetitions: 0.. (pysnmp's decoder drops the rest)
        if kind == GETBULK and non_repeaters < 0:
            raise Decline
        tag, pos, list_end = _tlv(d, m_end, end)
        if tag != 0x30 or list_end != end:
            raise Decline
        names: list[tuple[tuple[int, ...], bytes]] = []  # (oid, its OID TLV's content)
        while pos < end:
            tag, start, vb_end = _tlv(d, pos, end)
            tag_oid, o_start, o_end = _tlv(d, start, vb_end)
            if tag != 0x30 or tag_oid != 0x06 or d[o_end:vb_end] != NULL:
                raise Decline
            content = d[o_start:o_end]
            names.append((_oid(content), content))
            pos = vb_end
        if not names or not self._view_holds_base():
            raise Decline
        budget = limits.varbind_budget(self.max_response, end, end - m_end)
        if kind == GET:
            varbinds = [self._get(oid, content) for oid, content in names]
        elif kind == GETNEXT:
            varbinds = [self._step(oid, 1)[0] for oid, _c in names]
        else:
            varbinds = self._bulk(
                [oid for oid, _c in names], non_repeaters, max_repetitions, budget
            )
            n = min(non_repeaters, len(names))
            keep = limits.bulk_fit([len(v) for v in varbinds], n, len(names) - n, budget)
            if keep is None:
                raise Decline  # tooBig: pysnmp's responder answers it
            del varbinds[keep:]
        if kind != GETBULK and not limits.fits([len(v) for v in varbinds], budget):
            raise Decline  # tooBig: pysnmp's responder answers it
        body = b"".join(varbinds)
        pdu = request_id + NO_ERROR + b"\x30" + ber.length(len(body)) + body
        msg = V2C + self._community_tlv + bytes((RESPONSE,)) + ber.length(len(pdu)) + pdu
        reply = b"\x30" + ber.length(len(msg)) + msg
        if len(reply) > self.max_size:
            raise Decline  # pysnmp decides what a response too big becomes
        return reply

    def _view_holds_base(self) -> bool:
        """The v2c view includes every OID under the base with one verdict:
        no view-tree entry below it (ViewTree.uniform) and VACM allows it."""
        if not self.views.uniform(self.base):
            return False
        try:
            self.engine.access_control_model[VACM].is_access_allowed(
                self.engine, V2C_MODEL, self.security_name, NO_AUTH_NO_PRIV,
                "read", b"", self.base,
            )  # fmt: skip
        except PySnmpError:  # StatusInformation: notInView, noGroupName, ...
            return False
        return True

    def _get(self, oid: tuple[int, ...], content: bytes) -> bytes:
        if oid[: len(self.base)] != self.base:
            raise Decline
        value = self.controller.get_unchecked(oid)
        if type(value) is ber.Prebuilt:
            return value.ber
        body = ber.oid_tlv(content) + NO_SUCH[id(value)]
        return b"\x30" + ber.length(len(body)) + body

    def _step(self, oid: tuple[int, ...], count: int) -> list[bytes]:
        """``count`` GETNEXT answers from ``oid``, all inside the subtree."""
        if oid < self.base:
            raise Decline  # pysnmp's own tree may hold what comes next
        run = self.controller.run_unchecked(oid, count)
        if run is None:
            raise Decline  # the subtree ends first: pysnmp's tree goes on
        return [value.ber for _name, value in run]

    def _bulk(
        self, oids: list[tuple[int, ...]], non_repeaters: int, max_repetitions: int, budget: int
    ) -> list[bytes]:
        """RFC 3416 4.2.3 with N, M and R as pysnmp 7.1 computes them
        (responders.BulkResponder), less the repetitions that could not fit in
        ``budget`` octets even if every varbind were the smallest possible:
        the reply is cut there anyway (limits.bulk_fit), and a chain need not
        be computed (or run past the subtree's end) for nothing."""
        n = min(non_repeaters, len(oids))
        m = max_repetitions
        r = len(oids) - n
        if r:
            m = min(m, self.max_varbinds // r, budget // (r * self._min_varbind) + 1)
        out = [self._step(oid, 1)[0] for oid in oids[:n]]
        if m and r:
            chains = [self._step(oid, m) for oid in oids[n:]]
            out.extend(vb for rep in zip(*chains, strict=True) for vb in rep)
        if not out:
            raise Decline  # pysnmp drops such a request
        return out
