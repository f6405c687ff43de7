"""The discharge report: every cell's curve with the weakest highlighted, end
voltages against the cutoff, the string's voltage and current, and a table
of every cell, weakest first."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from btms_gateway.core.api import DischargeSummary, Report, ReportError, ReportSource

from .pages import Document, Table, render, utc

#: how many of the weakest cells are drawn in colour and named
HIGHLIGHT = 5
#: at most this many points per curve (a 2-hour discharge at 1 s has 7,200)
MAX_POINTS = 800
WEAK = ["#b3261e", "#e8710a", "#c2185b", "#7b1fa2", "#f9a825"]


def discharge_report(source: ReportSource, subject: str, fmt: str) -> Report:
    try:
        event_id = int(subject)
    except ValueError:
        raise ReportError(f"a discharge id (a number), found {subject!r}") from None
    if source.discharges is None:
        raise ReportError("no discharges recorded yet")
    s = source.discharges.get(event_id)
    if s is None:
        raise ReportError(f"no discharge {event_id}")
    curves = _curves(source, s)
    return render(_document(source.site, s, curves), fmt, f"discharge-{s.id}-{s.string}")


def _curves(source: ReportSource, s: DischargeSummary) -> dict[str, Any] | None:
    """Minutes since the start, each cell's voltage, the string's voltage and
    current, from the history's raw readings (None when they are gone)."""
    if source.history is None:
        return None
    try:
        series = source.history.series(
            s.string,
            ["voltage_v", "current_a", "cell_voltage_v"],
            s.start,
            s.end + 0.001,
            resolution="raw",
        )
    except Exception:
        return None
    if len(series.t) == 0:
        return None
    values = series.stats["value"]
    n = len(series.t)
    # every step-th reading and the last one: the cells' end voltages (the
    # table's, and the end-voltage plot's) are the curves' ends, knee included
    keep = np.unique(np.r_[np.arange(0, n, max(1, n // MAX_POINTS)), n - 1])
    cells = [c.cell for c in series.columns[2:]]
    return {
        "minutes": (series.t[keep] - s.start) / 60.0,
        "string_v": values[keep, 0],
        "current": values[keep, 1],
        "cells": {cell: values[keep, 2 + k] for k, cell in enumerate(cells)},
    }


def _document(site: str, s: DischargeSummary, curves: dict[str, Any] | None) -> Document:
    weakest = s.weakest[:HIGHLIGHT]
    cutoff_count = sum(1 for c in s.cells if c.cutoff_s is not None)
    facts = [
        ("Discharge", f"{s.id} of string {s.string}"),
        ("Start / end", f"{utc(s.start, True)}  ..  {utc(s.end, True)}"),
        ("Duration", f"{s.duration_s / 60:.1f} min"),
        ("Delivered", f"{s.ah:.2f} Ah, {s.wh / 1000:.3f} kWh (mean {s.mean_current_a:.1f} A)"),
        ("String voltage", f"{s.start_voltage_v:.2f} V -> lowest {s.lowest_voltage_v:.2f} V"),
        (
            "End voltage",
            f"{s.string_cutoff_v:.2f} V ({s.cutoff_v:.3f} V per cell): "
            + ("reached" if s.reached_cutoff else "not reached"),
        ),
        ("Depth of discharge", "-" if s.dod_pct is None else f"{s.dod_pct:.1f} % of rated"),
        ("Cells at the cutoff", f"{cutoff_count} of {len(s.cells)}"),
        ("Weakest cells", ", ".join(str(c) for c in s.weakest[:10])),
    ]
    notes = []
    plots = []
    if curves is None:
        notes.append("The raw readings of this discharge are no longer in the history: no curves.")
    else:
        plots.append(("Every cell's voltage (the weakest in colour)", _cells_plot(s, curves)))
    plots.append(("End and lowest voltage of every cell against the cutoff", _end_plot(s)))
    if curves is not None:
        plots.append(("String voltage and current", _string_plot(s, curves)))
    rows, marked = [], set()
    for i, c in enumerate(sorted(s.cells, key=lambda c: c.rank)):
        rows.append(
            [
                str(c.rank), str(c.cell), f"{c.start_v:.3f}", f"{c.lowest_v:.3f}",
                f"{c.end_v:.3f}", "-" if c.drop_v_per_h is None else f"{c.drop_v_per_h:.3f}",
                "-" if c.cutoff_s is None else f"{c.cutoff_s / 60:.1f}",
            ]
        )  # fmt: skip
        if c.cell in weakest:
            marked.add(i)
    table = Table(
        "Every cell, weakest first",
        ["rank", "cell", "start V", "lowest V", "end V", "drop V/h", "to cutoff min"],
        rows,
        marked,
    )
    return Document(
        "Discharge report",
        site,
        s.string,
        time.time(),
        "Cells ranked weakest first: the earliest to reach the cutoff, then the lowest "
        "voltage. Raw readings from the gateway's history; Ah and Wh integrated from every "
        "reading of the discharge.",
        facts,
        plots,
        [table],
        notes,
    )


def _cells_plot(s: DischargeSummary, curves: dict[str, Any]) -> Any:
    weakest = s.weakest[:HIGHLIGHT]

    def draw(ax: Any) -> None:
        x = curves["minutes"]
        for cell, v in curves["cells"].items():
            if cell not in weakest:
                ax.plot(x, v, color="#7f8ea3", lw=0.5, alpha=0.5)
        for k, cell in enumerate(weakest):
            v = curves["cells"].get(cell)
            if v is not None:
                ax.plot(x, v, color=WEAK[k % len(WEAK)], lw=1.6, label=f"cell {cell}")
        ax.axhline(s.cutoff_v, color="#1d2330", ls="--", lw=1, label=f"cutoff {s.cutoff_v:g} V")
        ax.set_xlabel("minutes since the start")
        ax.set_ylabel("cell voltage (V)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left", ncol=2)

    return draw


def _end_plot(s: DischargeSummary) -> Any:
    weakest = set(s.weakest[:HIGHLIGHT])

    def draw(ax: Any) -> None:
        cells = sorted(s.cells, key=lambda c: c.cell)
        x = np.array([c.cell for c in cells])
        end = np.array([c.end_v for c in cells])
        low = np.array([c.lowest_v for c in cells])
        colors = ["#b3261e" if c.cell in weakest else "#4f7cac" for c in cells]
        ax.bar(x, end - s.cutoff_v + 0.15, bottom=s.cutoff_v - 0.15, color=colors, width=0.8)
        ax.scatter(x, low, s=6, color="#1d2330", label="lowest", zorder=3)
        ax.axhline(s.cutoff_v, color="#1d2330", ls="--", lw=1, label=f"cutoff {s.cutoff_v:g} V")
        ax.set_ylim(min(low.min(), s.cutoff_v) - 0.05, max(end.max(), s.cutoff_v) + 0.05)
        ax.set_xlabel("cell")
        ax.set_ylabel("end voltage (V)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="lower right")

    return draw


def _string_plot(s: DischargeSummary, curves: dict[str, Any]) -> Any:
    def draw(ax: Any) -> None:
        x = curves["minutes"]
        ax.plot(x, curves["string_v"], color="#1d2330", lw=1.2)
        ax.axhline(s.string_cutoff_v, color="#b3261e", ls="--", lw=1)
        ax.set_xlabel("minutes since the start")
        ax.set_ylabel("string voltage (V)")
        ax.grid(alpha=0.3)
        cur = ax.twinx()
        cur.plot(x, -curves["current"], color="#e8710a", lw=1)
        cur.set_ylabel("discharge current (A)", color="#e8710a")

    return draw
