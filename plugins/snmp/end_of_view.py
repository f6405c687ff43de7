"""pysnmp's own MIB tree past its last readable object, remembered.

A GETBULK whose repetitions run past our subtree goes on in pysnmp's tree
(snmpEngine) and reaches the end of the MIB view there. To answer that last
step, pysnmp walks every object after the last readable one (its USM, VACM,
community and target tables, two passes each) and asks the access function
about each: 5..9 ms on the 2-core VM, once at the end of every walk.

``EndOfView`` keeps, per start OID and requester (security model, name and
level, context), the fact that pysnmp answered endOfMibView, together with a
version of pysnmp's tree: the builder's ``lastBuildId`` (MIB modules loaded,
symbols exported) and the sum of every tree node's ``branchVersionId``
(pysnmp bumps a node's on every registration under it: a table row created
or destroyed, a scalar instance added; the VACM tables' rows are such rows,
so a view, access or group change counts too). Nothing else decides that
there is nothing readable after an OID, and the answer carries no value; so
while the version is the same, the answer is the same, and it is given
without the walk. Any other answer, or a refusal, is never kept.
"""

from __future__ import annotations

from typing import Any

from pysnmp.proto import rfc1905

LIMIT = 256  # start OIDs x requesters remembered; a walk needs one


class EndOfView:
    def __init__(self, default: Any) -> None:
        self.default = default
        self.builder = default.get_mib_builder()
        self._ends: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.remembered = 0  # answers given without pysnmp's walk

    def version(self) -> tuple[int, int]:
        total = 0
        for symbols in self.builder.mibSymbols.values():
            for obj in symbols.values():
                v = getattr(obj, "branchVersionId", None)
                if type(v) is int:
                    total += v
        return self.builder.lastBuildId, total

    def next(self, var_bind: Any, **context: Any) -> Any:
        """``default.read_next_variables(var_bind)[0]``."""
        name = tuple(var_bind[0])
        engine = context.get("snmpEngine")
        if engine is None:
            return self.default.read_next_variables(var_bind, **context)[0]
        request = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
        key = (
            name,
            request["securityModel"],
            request["securityName"],
            request["securityLevel"],
            request["contextName"],
        )
        known = self._ends.get(key)
        if known is not None and known == self.version():
            self.remembered += 1
            return name, rfc1905.endOfMibView
        answer = self.default.read_next_variables(var_bind, **context)[0]
        if isinstance(answer[1], rfc1905.EndOfMibView):
            if len(self._ends) >= LIMIT:
                self._ends.clear()
            self._ends[key] = self.version()
        return answer
