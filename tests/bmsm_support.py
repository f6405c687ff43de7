"""Shared helpers of the BM-SM profile tests (no tests here)."""

from __future__ import annotations

from btms_gateway.protocols.bmsm.registers import CELL_ARRAYS

#: a site's register map override (a later firmware, say): every cell array one register up
SHIFTED = "".join(f"[cell.{a.field}]\nbase = {a.base + 1}\n" for a in CELL_ARRAYS)
