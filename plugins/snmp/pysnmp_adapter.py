"""The one place the SNMP plugin reads pysnmp's private state.

pysnmp 7.1's command responders keep, per request being answered, an
11-tuple in the private ``CommandResponderBase.__pendingReqs`` (name-mangled
``_CommandResponderBase__pendingReqs``), written by ``process_pdu`` and read
by ``send_varbinds``/``send_pdu``. responders.py replaces ``send_varbinds``
(pre-encoded varbinds, the response byte bound) and so needs two of its
fields: the message processing model (0: SNMPv1, whose values are converted)
and the response PDU pysnmp prepared. :func:`pending_request` reads them;
nothing else touches the attribute. tests/test_snmp_adapter.py asserts,
against the installed pysnmp, that the attribute exists and that the tuple
still holds these fields at these positions (pyproject pins 7.1.x).
"""

from __future__ import annotations

from typing import Any

from pysnmp.entity.rfc3413 import cmdrsp

#: the private attribute, as Python mangles ``self.__pendingReqs`` in CommandResponderBase
PENDING_ATTRIBUTE = "_CommandResponderBase__pendingReqs"
#: what ``process_pdu`` stores per request, in order (pysnmp 7.1.x)
PENDING_FIELDS = (
    "messageProcessingModel",
    "securityModel",
    "securityName",
    "securityLevel",
    "contextEngineId",
    "contextName",
    "pduVersion",
    "rspPDU",
    "origPdu",
    "maxSizeResponseScopedPDU",
    "statusInformation",
)
MESSAGE_PROCESSING_MODEL = PENDING_FIELDS.index("messageProcessingModel")
RESPONSE_PDU = PENDING_FIELDS.index("rspPDU")


def pending_request(
    responder: cmdrsp.CommandResponderBase, state_reference: Any
) -> tuple[int, Any]:
    """(message processing model, response PDU) of the request ``state_reference``
    that ``responder`` is answering."""
    entry = getattr(responder, PENDING_ATTRIBUTE)[state_reference]
    return entry[MESSAGE_PROCESSING_MODEL], entry[RESPONSE_PDU]
