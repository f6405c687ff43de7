"""pysnmp's private per-request state the SNMP plugin reads (pysnmp_adapter.py,
the one module that reads it) is where the adapter expects it, in the
installed pysnmp: the attribute, and the fields at the positions read.

pysnmp does not document ``__pendingReqs``; an upgrade that renames it or
reorders its tuple fails here, by name, rather than as wrong answers.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pysnmp
from btms_gateway.plugins.snmp import pysnmp_adapter as adapter
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context


def test_the_installed_pysnmp_is_the_one_the_adapter_was_written_for() -> None:
    """pyproject pins 7.1.x (>= 7.1.30): a wider pin needs this module re-read first."""
    assert pysnmp.__version__.startswith("7.1."), pysnmp.__version__


def _stored_tuple(method: str) -> list[str]:
    """The names ``CommandResponderBase.<method>`` puts into (or takes out of)
    ``self.__pendingReqs[stateReference]``, in order, read from its source."""
    source = textwrap.dedent(inspect.getsource(getattr(cmdrsp.CommandResponderBase, method)))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            if isinstance(target, ast.Subscript) and isinstance(value, ast.Tuple):
                pending = target.value  # process_pdu: pendingReqs[ref] = (...)
                names = value.elts
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Subscript):
                pending = value.value  # send_pdu: (...) = pendingReqs[ref]
                names = target.elts
            else:
                continue
            if isinstance(pending, ast.Attribute) and pending.attr == "__pendingReqs":
                return [n.id for n in names if isinstance(n, ast.Name)]
    raise AssertionError(f"CommandResponderBase.{method} no longer uses __pendingReqs")


def test_process_pdu_stores_the_fields_the_adapter_reads_where_it_reads_them() -> None:
    stored = _stored_tuple("process_pdu")
    assert tuple(stored) == adapter.PENDING_FIELDS
    assert stored[adapter.MESSAGE_PROCESSING_MODEL] == "messageProcessingModel"
    assert stored[adapter.RESPONSE_PDU] == "rspPDU"
    # send_pdu (pysnmp's, which the responders still call) reads the same tuple
    assert len(_stored_tuple("send_pdu")) == len(adapter.PENDING_FIELDS)


def test_a_responder_has_the_private_table_and_the_adapter_reads_an_entry() -> None:
    snmp_engine = engine.SnmpEngine()
    config.add_context(snmp_engine, "")
    responder = cmdrsp.GetCommandResponder(snmp_engine, context.SnmpContext(snmp_engine))
    table = getattr(responder, adapter.PENDING_ATTRIBUTE)
    assert isinstance(table, dict)
    entry = tuple(f"<{name}>" for name in adapter.PENDING_FIELDS)
    table["ref"] = entry
    assert adapter.pending_request(responder, "ref") == ("<messageProcessingModel>", "<rspPDU>")
    responder.release_state_information("ref")  # pysnmp's own method empties the same table
    assert "ref" not in table
    assert adapter.__doc__ and adapter.PENDING_ATTRIBUTE.endswith("__pendingReqs")
