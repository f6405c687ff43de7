"""pysnmp's command responders, taught to carry pre-encoded varbinds.

``send_varbinds``: the whole variable-bindings list goes into the response
PDU as one ``univ.Any`` (copied verbatim by pyasn1's encoder): varbinds
whose value is a ``ber.Prebuilt`` as they are, pysnmp's own (the default
tree's objects, endOfMibView...) encoded one by one by pyasn1, the same
octets pyasn1 writes for them inside the list, so pyasn1 walks one
component instead of fifty. SNMPv1 (values converted) and anything pyasn1
cannot encode take pysnmp's usual path.

GETBULK: ``handle_management_operation`` is pysnmp 7.1's, except that the
repeaters' chains come from one ``read_bulk`` call of our controller instead
of ``max-repetitions`` calls of ``read_next_variables``, interleaved as
pysnmp's loop would; if that call raises (the access function refused the
requester), the request is answered through pysnmp's loop after all, so
errors carry pysnmp's own status and index. ``fast = False`` (``[plugins.snmp]
fast_path = false``) keeps pysnmp's loop for every request and one
``univ.Any`` per varbind (the library path, the tests' reference).

Request parsing, error handling, message processing and USM are pysnmp's own
(7.1.x; the private ``__pendingReqs`` it keeps per request is read through
pysnmp_adapter.py, whose version test pins what is read).
"""

from __future__ import annotations

from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdrsp
from pysnmp.error import PySnmpError
from pysnmp.proto import rfc1905
from pysnmp.proto.api import v2c
from pysnmp.smi import error as smi_error

from . import ber, limits
from .ber import Prebuilt
from .pysnmp_adapter import pending_request

UNCHECKED = {"verifyConstraints": False, "matchTags": False, "matchConstraints": False}


def varbind_ber(name: Any, value: Any) -> bytes:
    """What pyasn1 writes for one varbind of the list (pysnmp's objects)."""
    vb = rfc1905.VarBind()
    v2c.apiVarBind.set_oid_value(vb, (name, value))
    return encoder.encode(vb)


def encode_varbinds(varbinds: list[Any]) -> list[bytes] | None:
    """Each varbind as pyasn1 writes it inside the list (None: pyasn1 cannot)."""
    done: dict[tuple[int, int], bytes] = {}  # a GETBULK's endOfMibView, repeated
    parts = []
    try:
        for name, value in varbinds:
            if type(value) is Prebuilt:
                parts.append(value.ber)
                continue
            key = (id(name), id(value))  # both alive as long as ``varbinds``
            if key not in done:
                done[key] = varbind_ber(name, value)
            parts.append(done[key])
    except PyAsn1Error:
        return None  # pysnmp's own path fails on it the way it always has
    return parts


def set_varbinds(
    pdu: Any,
    varbinds: list[Any],
    expand: bool,
    whole: bool = True,
    parts: list[bytes] | None = None,
) -> None:
    """``parts``: the varbinds already encoded (encode_varbinds), if they were."""
    if whole and not expand:
        if parts is None:
            parts = encode_varbinds(varbinds)
        if parts is not None:
            body = b"".join(parts)
            block = univ.Any(b"\x30" + ber.length(len(body)) + body)
            pdu.setComponentByPosition(3, block, **UNCHECKED)
            return
    vb_list = pdu.setComponentByPosition(3).getComponentByPosition(3)
    vb_list.clear()
    for idx, (name, value) in enumerate(varbinds):
        if type(value) is Prebuilt:
            if not expand:
                vb_list.setComponentByPosition(idx, univ.Any(value.ber), **UNCHECKED)
                continue
            decoded, _ = decoder.decode(value.ber, asn1Spec=rfc1905.VarBind())
            name, value = decoded[0], decoded[1].getComponent(True)
        vb_list.setComponentByPosition(idx)
        v2c.apiVarBind.set_oid_value(vb_list.getComponentByPosition(idx), (name, value))


class _Prebuilt(cmdrsp.CommandResponderBase):
    fast = True
    #: the bound every response obeys (limits.py); the agent sets it from its settings
    max_response_bytes = 65507
    too_big = 0  # responses answered tooBig because they would not fit

    def send_varbinds(
        self, snmpEngine: Any, stateReference: Any, errorStatus: Any, errorIndex: Any, varBinds: Any
    ) -> None:
        model, pdu = pending_request(self, stateReference)
        parts = encode_varbinds(varBinds)
        if errorStatus in (0, "noError") and parts is not None:
            request = snmpEngine.observer.get_execution_context("rfc3412.receiveMessage:request")
            request_list = len(encoder.encode(request["pdu"].getComponentByPosition(3)))
            budget = limits.varbind_budget(
                self.max_response_bytes, len(request["wholeMsg"]), request_list
            )
            keep = self._fit([len(p) for p in parts], budget, request["pdu"])
            if keep is None:  # RFC 3416 4.2.1: tooBig, error-index 0, no varbinds
                self.too_big += 1
                errorStatus, errorIndex, varBinds, parts = "tooBig", 0, [], []
            elif keep < len(parts):
                varBinds, parts = varBinds[:keep], parts[:keep]
        v2c.apiPDU.set_error_status(pdu, errorStatus)
        v2c.apiPDU.set_error_index(pdu, errorIndex)
        # SNMPv1 (message processing model 0) converts values: give it objects
        set_varbinds(pdu, varBinds, expand=model == 0, whole=self.fast, parts=parts)
        self.send_pdu(snmpEngine, stateReference, pdu)

    def _fit(self, sizes: list[int], budget: int, request: Any) -> int | None:
        """How many varbinds the response keeps: all of them, or tooBig (None)."""
        return len(sizes) if limits.fits(sizes, budget) else None


class GetResponder(_Prebuilt, cmdrsp.GetCommandResponder):
    pass


class NextResponder(_Prebuilt, cmdrsp.NextCommandResponder):
    pass


class BulkResponder(_Prebuilt, cmdrsp.BulkCommandResponder):
    fallbacks = 0  # requests the fast path handed back to pysnmp's loop

    def _fit(self, sizes: list[int], budget: int, request: Any) -> int | None:
        """As many as fit (limits.bulk_fit), with N and R as pysnmp computes them."""
        count = len(v2c.apiPDU.get_varbinds(request))
        n = min(max(int(v2c.apiBulkPDU.get_non_repeaters(request)), 0), count)
        return limits.bulk_fit(sizes, n, count - n, budget)

    def handle_management_operation(
        self, snmpEngine: Any, stateReference: Any, contextName: Any, PDU: Any
    ) -> None:
        instrum = self.snmpContext.get_mib_instrum(contextName)
        bulk = getattr(instrum, "read_bulk", None)
        if not self.fast or bulk is None or pending_request(self, stateReference)[0] == 0:
            return super().handle_management_operation(snmpEngine, stateReference, contextName, PDU)
        # rfc1905: 4.2.3, as pysnmp 7.1.30 computes N, M and R
        nonRepeaters = v2c.apiBulkPDU.get_non_repeaters(PDU)
        if nonRepeaters < 0:
            nonRepeaters = 0
        maxRepetitions = v2c.apiBulkPDU.get_max_repetitions(PDU)
        if maxRepetitions < 0:
            maxRepetitions = 0
        reqVarBinds = v2c.apiPDU.get_varbinds(PDU)
        N = min(int(nonRepeaters), len(reqVarBinds))
        M = int(maxRepetitions)
        R = max(len(reqVarBinds) - N, 0)
        if R:
            M = min(M, self.max_varbinds // R)
        context = dict(snmpEngine=snmpEngine, acFun=self.verify_access, cbCtx=self.cbCtx)
        try:
            rspVarBinds = instrum.read_next_variables(*reqVarBinds[:N], **context) if N else []
            if M and R:
                chains = bulk(reqVarBinds[-R:], M, **context)
                rspVarBinds.extend(vb for rep in zip(*chains, strict=True) for vb in rep)
        except PySnmpError:
            # refused (no access, ...): pysnmp's loop raises it with its own index
            self.fallbacks += 1
            return super().handle_management_operation(snmpEngine, stateReference, contextName, PDU)
        if len(rspVarBinds):
            self.send_varbinds(snmpEngine, stateReference, 0, 0, rspVarBinds)
            self.release_state_information(stateReference)
        else:
            raise smi_error.SmiError()


class SetResponder(cmdrsp.SetCommandResponder):
    pass
