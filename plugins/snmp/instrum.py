"""An instrumentation controller serving BTMS-GATEWAY-MIB from the sorted index.

pysnmp's per-object instrumentation (one MibScalarInstance per value) is too
slow and heavy for 32 x 120 cells, so OIDs under the enterprise base are
answered here by bisection. pysnmp still does the engine, BER, USM and VACM
work: every value served is passed to the context's access function
(``acFun("read", ...)``, the VACM view "read" of the requester), and every
OID outside the base goes to pysnmp's default controller (SNMPv2-MIB system
group, snmp counters, engine objects), whose answers are merged in OID order
for GETNEXT/GETBULK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pysnmp.proto import rfc1905
from pysnmp.smi import error
from pysnmp.smi.instrum import AbstractMibInstrumController

from .image import Index, ServeContext, after, find, name_at, prebuilt_at


class BtmsController(AbstractMibInstrumController):
    def __init__(
        self, base: tuple[int, ...], default: Any, ctx: ServeContext, build: Callable[[], Index]
    ) -> None:
        self.base = base
        self.default = default
        self.ctx = ctx
        self.build = build
        self.index = build()  # replaced whole, never mutated; read once per request
        self.dirty = False  # set when the plant's shape changed: rebuild before serving
        self._last: tuple[Index, tuple[int, ...], int] | None = None  # GETBULK's next start

    # --- helpers -----------------------------------------------------------
    def current(self) -> Index:
        """The index for the current shape, rebuilt at most once per burst of
        changes (32 strings read for the first time cost one rebuild, not 32).
        Requests and refreshes both run on the loop, so this cannot race."""
        if self.dirty:
            self.index = self.build()
            self.dirty = False
        return self.index

    def _mine(self, oid: tuple[int, ...]) -> bool:
        return oid[: len(self.base)] == self.base

    @staticmethod
    def _hidden(oid: tuple[int, ...], context: dict[str, Any]) -> bool:
        """True when VACM puts this OID outside the requester's read view.
        Raises (AuthorizationError...) when the requester has no access at all.
        The value is not passed: pysnmp only inspects it for SNMPv1, which has
        no access here."""
        ac = context.get("acFun")
        return bool(ac and ac("read", (oid, None), **context))

    def _get(self, index: Index, oid: tuple[int, ...], context: dict[str, Any]) -> Any:
        pos = find(index, oid)
        value = None if pos is None else prebuilt_at(index, pos, self.ctx)
        if self._hidden(oid, context):
            return rfc1905.noSuchObject
        if value is None:
            known = any(oid[: len(o)] == o for o in index.objects)
            return rfc1905.noSuchInstance if known else rfc1905.noSuchObject
        return value

    def _next(self, index: Index, oid: tuple[int, ...], context: dict[str, Any]) -> Any:
        last = self._last
        if last is not None and last[0] is index and last[1] == oid:
            pos = last[2] + 1  # a GETBULK repetition continues where we stopped
        else:
            pos = after(index, oid)
        n = len(index.keys)
        while pos < n:
            value = prebuilt_at(index, pos, self.ctx)
            if value is not None:
                name = name_at(index, pos)
                if not self._hidden(name, context):
                    self._last = (index, name, pos)
                    return name, value
            pos += 1
        return None

    # --- the controller API pysnmp's command responders call ------------------
    def read_variables(self, *varBinds: Any, **context: Any) -> list[Any]:
        index = self.current()
        out: list[Any] = []
        for idx, (name, val) in enumerate(varBinds):
            oid = tuple(name)
            context["idx"] = idx
            if self._mine(oid):
                out.append((oid, self._get(index, oid, context)))
            else:
                out.extend(self.default.read_variables((name, val), **context))
        return out

    def read_next_variables(self, *varBinds: Any, **context: Any) -> list[Any]:
        index = self.current()
        out: list[Any] = []
        for idx, (name, val) in enumerate(varBinds):
            if isinstance(val, rfc1905.EndOfMibView):
                # a GETBULK repetition after the end: answering it again would
                # make pysnmp re-walk (and VACM-check) its whole tree each time
                out.append((name, val))
                continue
            oid = tuple(name)
            context["idx"] = idx
            mine = self._next(index, oid, context)
            if mine is not None and oid >= self.base:
                out.append(mine)  # nothing of the default tree lies inside our subtree
                continue
            theirs = self.default.read_next_variables((name, val), **context)[0]
            if mine is None:
                out.append(theirs)
            elif isinstance(theirs[1], rfc1905.EndOfMibView) or tuple(theirs[0]) > mine[0]:
                out.append(mine)
            else:
                out.append(theirs)
        return out

    def write_variables(self, *varBinds: Any, **context: Any) -> list[Any]:
        """Read-only agent: SET on our objects is notWritable; elsewhere the
        default controller decides (its VACM write view is empty: noAccess)."""
        for idx, (name, _val) in enumerate(varBinds):
            if self._mine(tuple(name)):
                raise error.NotWritableError(name=name, idx=idx)
        return self.default.write_variables(*varBinds, **context)
