"""pysnmp's command responders, taught to carry pre-encoded varbinds.

Only ``send_varbinds`` changes: varbinds whose value is a ``ber.Prebuilt``
go into the response PDU as ``univ.Any`` (copied verbatim by pyasn1's
encoder); all others take pysnmp's usual path. Request parsing, the
GETBULK repetition logic, error handling, message processing and USM are
pysnmp's own (7.1.x; the private ``__pendingReqs`` it keeps per request is
read here, hence the version pin in pyproject).
"""

from __future__ import annotations

from typing import Any

from pyasn1.codec.ber import decoder
from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdrsp
from pysnmp.proto import rfc1905
from pysnmp.proto.api import v2c

from .ber import Prebuilt

UNCHECKED = {"verifyConstraints": False, "matchTags": False, "matchConstraints": False}


def set_varbinds(pdu: Any, varbinds: list[Any], expand: bool) -> None:
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
    def send_varbinds(
        self, snmpEngine: Any, stateReference: Any, errorStatus: Any, errorIndex: Any, varBinds: Any
    ) -> None:
        pending = self._CommandResponderBase__pendingReqs[stateReference]  # type: ignore[attr-defined]
        pdu = pending[7]
        v2c.apiPDU.set_error_status(pdu, errorStatus)
        v2c.apiPDU.set_error_index(pdu, errorIndex)
        # SNMPv1 (message processing model 0) converts values: give it objects
        set_varbinds(pdu, varBinds, expand=pending[0] == 0)
        self.send_pdu(snmpEngine, stateReference, pdu)


class GetResponder(_Prebuilt, cmdrsp.GetCommandResponder):
    pass


class NextResponder(_Prebuilt, cmdrsp.NextCommandResponder):
    pass


class BulkResponder(_Prebuilt, cmdrsp.BulkCommandResponder):
    pass


class SetResponder(cmdrsp.SetCommandResponder):
    pass
