"""Which subtrees every VACM view decides as a whole.

pysnmp's VACM (rfc3415.Vacm.is_access_allowed) decides an OID by the longest
view-tree family entry that is a prefix of it (after masking). For an OID X
under a prefix P, every entry at most as long as P matches X exactly when it
matches P, so if no entry is longer than P and could match under P, every X
under P gets the verdict of the first X checked. ``ViewTree.uniform(P)``
answers that from the vacmViewTreeFamilyTable itself, looking at the entries
of every view (a conservative answer: an entry of another view can only
cause a per-OID check that was not needed). Entries with a wildcard mask
longer than P always count as "could match". The table is re-read when
pysnmp's own cache would be (its ``branchVersionId`` changes).

The verdict itself always comes from pysnmp's access function, called with a
real instance OID: only its reuse for the rest of the subtree is decided here.
"""

from __future__ import annotations

from typing import Any

from pysnmp.proto import rfc1902
from pysnmp.smi.error import NoSuchInstanceError

MIB = "SNMP-VIEW-BASED-ACM-MIB"
COUNTER64 = rfc1902.Counter64.tagSet


def _wildcards(mask: bytes, length: int) -> bool:
    """Whether the mask ignores one of the first ``length`` sub-identifiers
    (pysnmp: a 0 bit within min(8 * len(mask), length) is a wildcard)."""
    limit = min(len(mask) * 8, length)
    return any(not mask[i // 8] & (0x80 >> (i % 8)) for i in range(limit))


class ViewTree:
    def __init__(self, mib_builder: Any) -> None:
        self.builder = mib_builder
        self._version = -1
        self._entries: list[tuple[tuple[int, ...], bool]] = []  # (subtree, has wildcards)
        self._uniform: dict[tuple[int, ...], bool] = {}

    def _refresh(self) -> None:
        name_col, subtree_col, mask_col = self.builder.import_symbols(
            MIB, "vacmViewTreeFamilyViewName", "vacmViewTreeFamilySubtree", "vacmViewTreeFamilyMask"
        )
        if self._version == name_col.branchVersionId:
            return
        entries = []
        node = name_col
        while True:
            try:
                node = name_col.getNextNode(node.name)
            except NoSuchInstanceError:
                break
            inst = node.name[len(name_col.name) :]
            subtree = tuple(subtree_col.getNode(subtree_col.name + inst).syntax)
            mask = mask_col.getNode(mask_col.name + inst).syntax.asOctets()
            entries.append((subtree, _wildcards(mask, len(subtree))))
        self._entries, self._uniform = entries, {}
        self._version = name_col.branchVersionId

    def region(self, oid: tuple[int, ...]) -> tuple[int, ...] | None:
        """The shortest prefix of ``oid`` every view decides as a whole (a
        longer prefix of a uniform one is uniform too), or None."""
        for cut in range(1, len(oid) + 1):
            if self.uniform(oid[:cut]):
                return oid[:cut]
        return None

    def uniform(self, prefix: tuple[int, ...]) -> bool:
        """True when every view gives every OID under ``prefix`` one verdict."""
        self._refresh()
        known = self._uniform.get(prefix)
        if known is None:
            cut = len(prefix)
            known = self._uniform[prefix] = not any(
                len(subtree) > cut and (wild or subtree[:cut] == prefix)
                for subtree, wild in self._entries
            )
        return known


class Verdicts:
    """The access function of one request, asking pysnmp's once per region
    every view decides as a whole (``ViewTree.region``): pysnmp's own tree
    walk asks it about every column and instance it passes, hundreds of
    times past the last readable object (about 10 ms at the end of a walk).
    A refusal (raised) is never kept; nor is a verdict on a Counter64 value,
    which pysnmp also checks by type for SNMPv1."""

    def __init__(self, ac: Any, views: ViewTree) -> None:
        self.ac = ac
        self.views = views
        self.regions: list[tuple[tuple[int, ...], bool]] = []

    def __call__(self, view_type: str, var_bind: Any, **context: Any) -> bool:
        name, value = var_bind
        if view_type != "read" or getattr(value, "tagSet", None) == COUNTER64:
            return bool(self.ac(view_type, var_bind, **context))
        oid = tuple(name)
        for prefix, hidden in self.regions:
            if oid[: len(prefix)] == prefix:
                return hidden
        hidden = bool(self.ac(view_type, var_bind, **context))
        region = self.views.region(oid)
        if region is not None:
            self.regions.append((region, hidden))
        return hidden
