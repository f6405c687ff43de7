"""An instrumentation controller serving BTMS-GATEWAY-MIB from the sorted index.

pysnmp's per-object instrumentation (one MibScalarInstance per value) is too
slow and heavy for 32 x 120 cells, so OIDs under the enterprise base are
answered here by bisection. pysnmp still does the engine, BER, USM and VACM
work: values are passed to the context's access function (``acFun("read",
...)``, the VACM view "read" of the requester), and every OID outside the
base goes to pysnmp's default controller (SNMPv2-MIB system group, snmp
counters, engine objects), whose answers are merged in OID order for
GETNEXT/GETBULK.

GET and GETNEXT ask the access function about every value they return.
GETBULK (``read_bulk``) walks each repeated varbind's chain in one call and
asks it once per scalar or column a chain enters when no VACM view treats
part of that column differently, and per value otherwise; in pysnmp's tree
it asks once per region every view decides as a whole (views.py), and the
end of that tree is remembered (end_of_view.py). Every step a chain takes
outside our subtree, or from below it, is the GETNEXT step itself, so the
answers are those of pysnmp's repetition loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from pysnmp.proto import rfc1905
from pysnmp.smi import error
from pysnmp.smi.instrum import AbstractMibInstrumController

from .end_of_view import EndOfView
from .image import (
    Index,
    ServeContext,
    after,
    encode,
    find,
    name_at,
    prebuilt_at,
    segment_number,
    values,
)
from .views import Verdicts, ViewTree

SOURCES = frozenset({"plant", "alarms"})


class BtmsController(AbstractMibInstrumController):
    def __init__(
        self,
        base: tuple[int, ...],
        default: Any,
        ctx: ServeContext,
        build: Callable[[Index | None, Collection[str] | None], Index],
    ) -> None:
        self.base = base
        self.default = default
        self.ctx = ctx
        self.build = build
        self.views = ViewTree(default.get_mib_builder())
        self.end_of_view = EndOfView(default)
        self.index = build(None, None)  # replaced whole, never mutated; read once per request
        self.dirty: set[str] = set()  # sources whose shape changed: rebuild before serving
        self._last: tuple[Index, tuple[int, ...], int] | None = None  # GETNEXT's next start

    # --- helpers -----------------------------------------------------------
    def invalidate(self, source: str) -> None:
        """The shape of ``source`` ("plant" or "alarms") changed."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        self.dirty.add(source)

    def current(self) -> Index:
        """The index for the current shape, rebuilt for the tables whose source
        changed: alarms at the next request (a burst of them costs one
        rebuild), the plant by the refresh itself (plugin.py). Requests and
        refreshes both run on the loop, so this cannot race."""
        if self.dirty:
            self.index = self.build(self.index, frozenset(self.dirty))
            self.dirty.clear()
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
            pos = last[2] + 1  # a walk continues where we stopped
        else:
            pos = after(index, oid)
        n = index.size
        while pos < n:
            value = prebuilt_at(index, pos, self.ctx)
            if value is not None:
                name = name_at(index, pos)
                if not self._hidden(name, context):
                    self._last = (index, name, pos)
                    return name, value
            pos += 1
        return None

    def _visible(
        self,
        index: Index,
        oid: tuple[int, ...],
        count: int,
        context: dict[str, Any],
        verdicts: dict[int, bool],
    ) -> list[Any]:
        """Up to ``count`` readable values after ``oid``, in order: what
        ``count`` successive ``_next`` steps return. In a segment every view
        decides as a whole, the access function is asked about its first
        present value only, and the verdict kept for the request (``verdicts``
        by segment number): a hidden segment is skipped without reading it."""
        out: list[Any] = []
        pos = after(index, oid)
        if pos >= index.size:
            return out
        segments, ctx, hidden_at = index.segments, self.ctx, self._hidden
        for seg_no in range(segment_number(index, pos), len(segments)):
            if verdicts.get(seg_no):
                continue
            seg = segments[seg_no]
            uniform = self.views.uniform(seg.oid)
            for row, raw in values(seg, pos, ctx):
                if uniform:
                    hidden = verdicts.get(seg_no)
                    if hidden is None:
                        name = seg.oid + seg.rows.suffixes[row]
                        hidden = verdicts[seg_no] = hidden_at(name, context)
                    if hidden:
                        break
                elif hidden_at(seg.oid + seg.rows.suffixes[row], context):
                    continue
                out.append(encode(seg, row, raw))
                if len(out) == count:
                    return out
        return out

    # --- reads for a requester whose view holds the whole subtree (direct.py) --
    def get_unchecked(self, oid: tuple[int, ...]) -> Any:
        """GET of ``oid`` under the base: a Prebuilt, noSuchObject or noSuchInstance."""
        return self._get(self.current(), oid, {})

    def run_unchecked(self, oid: tuple[int, ...], count: int) -> list[Any] | None:
        """``count`` GETNEXT steps from ``oid`` (>= the base), or None when
        the subtree ends first."""
        run = self._visible(self.current(), oid, count, {}, {})
        return run if len(run) == count else None

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

    def read_bulk(self, varBinds: Any, repetitions: int, **context: Any) -> list[list[Any]]:
        """Each varbind's chain of ``repetitions`` GETNEXT answers (the
        GETBULK repeaters), as pysnmp's loop of ``read_next_variables`` calls
        would produce them. Raises what the access function raises; the
        responder then answers the request through that loop instead, which
        raises it with pysnmp's own error index."""
        index = self.current()
        if context.get("acFun") is not None:
            context = dict(context, acFun=Verdicts(context["acFun"], self.views))
        verdicts: dict[int, bool] = {}
        chains: list[list[Any]] = []
        for name, val in varBinds:
            chain: list[Any] = []
            while len(chain) < repetitions:
                if isinstance(val, rfc1905.EndOfMibView):
                    chain.extend([(name, val)] * (repetitions - len(chain)))
                    break
                oid = tuple(name)
                if oid >= self.base:
                    run = self._visible(index, oid, repetitions - len(chain), context, verdicts)
                    chain.extend(run)
                    if len(chain) == repetitions:
                        break
                    if run:
                        name, val = run[-1]
                    # the index is exhausted: the default tree goes on
                    name, val = self.end_of_view.next((name, val), **context)
                else:
                    name, val = self.read_next_variables((name, val), **context)[0]
                chain.append((name, val))
            chains.append(chain)
        return chains

    def write_variables(self, *varBinds: Any, **context: Any) -> list[Any]:
        """Read-only agent: SET on our objects is notWritable; elsewhere the
        default controller decides (its VACM write view is empty: noAccess)."""
        for idx, (name, _val) in enumerate(varBinds):
            if self._mine(tuple(name)):
                raise error.NotWritableError(name=name, idx=idx)
        return self.default.write_variables(*varBinds, **context)
