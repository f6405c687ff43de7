"""The resistance health report of one string: every cell against its
baseline and the string median, the trends and when they cross the alarm
limit, and a table of every cell."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from btms_gateway.core.api import Report, ReportError, ReportSource, StringHealth

from .pages import Document, Table, render, utc

COLORS = {"ok": "#4f7cac", "learning": "#9aa5b1", "warning": "#e8a20a", "alarm": "#b3261e"}
#: cells whose resistance history is drawn: the flagged ones and the steepest
TREND_CELLS = 6
HEAD = ["cell", "mOhm", "baseline", "source", "vs base %", "vs median %", "mOhm/month"]
HEAD += ["crosses", "status"]


def health_report(source: ReportSource, subject: str, fmt: str) -> Report:
    try:
        h = source.health(subject)
    except Exception as exc:  # no history for the string, say
        raise ReportError(f"string {subject!r}: {exc}") from None
    if h is None or not h.cells:
        raise ReportError(f"no resistance readings of string {subject!r}")
    history = _histories(source, h)
    return render(_document(source.site, h, history), fmt, f"health-{h.string}")


def _chosen(h: StringHealth) -> list[int]:
    flagged = h.flagged
    steep = sorted(
        (c for c in h.cells if c.trend_mohm_per_month is not None and c.cell not in flagged),
        key=lambda c: -(c.trend_mohm_per_month or 0.0),
    )
    return (flagged + [c.cell for c in steep])[:TREND_CELLS]


def _histories(source: ReportSource, h: StringHealth) -> dict[int, tuple[Any, Any]]:
    if source.history is None:
        return {}
    days = source.settings.analytics.trend_days
    try:
        return dict(
            source.history.resistance_changes(h.string, _chosen(h), start=h.at - days * 86400)
        )
    except Exception:
        return {}


def _document(site: str, h: StringHealth, history: dict[int, tuple[Any, Any]]) -> Document:
    counts = {k: sum(1 for c in h.cells if c.status == k) for k in COLORS}
    crossing = sorted(
        (c for c in h.cells if c.crosses_at is not None), key=lambda c: c.crosses_at or 0
    )
    facts = [
        ("String", h.string),
        ("Median resistance", "-" if h.median_mohm is None else f"{h.median_mohm:.3f} mOhm"),
        (
            "Limits",
            f"+{h.warning_pct:g} % / +{h.alarm_pct:g} % over baseline, "
            f"+{h.median_warning_pct:g} % / +{h.median_alarm_pct:g} % over the median",
        ),
        ("Cells", f"{len(h.cells)}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)),
        ("Flagged cells", ", ".join(str(c) for c in h.flagged) or "none"),
        (
            "First to cross the alarm limit",
            f"cell {crossing[0].cell} on {utc(crossing[0].crosses_at)[:10]}"
            if crossing
            else "none",
        ),
    ]
    plots: list[tuple[str, Any]] = [
        ("Resistance of every cell: baseline and string median", _resistance_plot(h)),
        ("Rise over the baseline and over the string median", _percent_plot(h)),
    ]
    if history:
        plots.append(
            ("Resistance trend of the flagged and steepest cells", _trend_plot(h, history))
        )
    rows, marked = [], set()
    for i, c in enumerate(h.cells):
        rows.append(
            [
                str(c.cell), _f(c.mohm, 3), _f(c.baseline_mohm, 3), c.baseline_source or "-",
                _f(c.vs_baseline_pct, 1, True), _f(c.vs_median_pct, 1, True),
                _f(c.trend_mohm_per_month, 4), utc(c.crosses_at)[:10] if c.crosses_at else "-",
                c.status,
            ]
        )  # fmt: skip
        if c.status in ("warning", "alarm"):
            marked.add(i)
    table = Table(
        "Every cell",
        HEAD,
        rows,
        marked,
    )
    return Document(
        "Resistance health report",
        site,
        h.string,
        time.time(),
        "Internal resistance of each cell against its own baseline (IEEE 1188 practice) and "
        "against the string's median cell, which flags a cell weak from installation; trends "
        "are least-squares lines through the history of each cell's resistance.",
        facts,
        plots,
        [table],
    )


def _first(crossing: list[Any]) -> str:
    if not crossing:
        return "none"
    return f"cell {crossing[0].cell} on {utc(crossing[0].crosses_at)[:10]}"


def _f(x: float | None, digits: int, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _resistance_plot(h: StringHealth) -> Any:
    def draw(ax: Any) -> None:
        x = [c.cell for c in h.cells]
        ax.bar(x, [c.mohm or 0 for c in h.cells], color=[COLORS[c.status] for c in h.cells])
        base = [(c.cell, c.baseline_mohm) for c in h.cells if c.baseline_mohm is not None]
        if base:
            ax.scatter(
                *zip(*base, strict=True), marker="_", s=60, color="#1d2330", label="baseline"
            )
        if h.median_mohm is not None:
            m = h.median_mohm
            ax.axhline(m, color="#1d2330", lw=1, label=f"median {m:.3f}")
            ax.axhline(m * (1 + h.median_warning_pct / 100), color="#e8a20a", ls="--", lw=1,
                       label=f"median +{h.median_warning_pct:g} %")  # fmt: skip
            ax.axhline(m * (1 + h.median_alarm_pct / 100), color="#b3261e", ls="--", lw=1,
                       label=f"median +{h.median_alarm_pct:g} %")  # fmt: skip
            ax.set_ylim(m * 0.7, max(m * (1 + h.median_alarm_pct / 100) * 1.08,
                                     max(c.mohm or 0 for c in h.cells) * 1.05))  # fmt: skip
        ax.set_xlabel("cell")
        ax.set_ylabel("internal resistance (mOhm)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper right", ncol=2)

    return draw


def _percent_plot(h: StringHealth) -> Any:
    def draw(ax: Any) -> None:
        x = np.array([c.cell for c in h.cells], dtype=float)
        vb = np.array([np.nan if c.vs_baseline_pct is None else c.vs_baseline_pct for c in h.cells])
        vm = np.array([np.nan if c.vs_median_pct is None else c.vs_median_pct for c in h.cells])
        ax.bar(x - 0.2, vb, width=0.4, color="#4f7cac", label="over its baseline")
        ax.bar(x + 0.2, vm, width=0.4, color="#e8710a", label="over the string median")
        ax.axhline(h.warning_pct, color="#e8a20a", ls="--", lw=1, label=f"+{h.warning_pct:g} %")
        ax.axhline(h.alarm_pct, color="#b3261e", ls="--", lw=1, label=f"+{h.alarm_pct:g} %")
        ax.axhline(0, color="#1d2330", lw=0.8)
        ax.set_xlabel("cell")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper right", ncol=2)

    return draw


def _trend_plot(h: StringHealth, history: dict[int, tuple[Any, Any]]) -> Any:
    by_cell = {c.cell: c for c in h.cells}

    def draw(ax: Any) -> None:
        import matplotlib.dates as mdates

        for k, (cell, (t, v)) in enumerate(sorted(history.items())):
            if len(t) == 0:
                continue
            color = f"C{k}"
            days = t / 86400.0
            ax.step(days, v, where="post", color=color, lw=1.2, label=f"cell {cell}")
            c = by_cell.get(cell)
            if c is not None and c.trend_mohm_per_month is not None and c.limit_mohm:
                end = c.crosses_at or h.at
                slope = c.trend_mohm_per_month / 30.44
                xs = np.array([days[0], end / 86400.0])
                now_v = c.mohm if c.mohm is not None else v[-1]
                ys = now_v + slope * (xs - h.at / 86400.0)
                ax.plot(xs, ys, color=color, ls=":", lw=1)
                ax.axhline(c.limit_mohm, color=color, ls="--", lw=0.6)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        ax.set_xlabel("date (dotted: the trend, dashed: each cell's alarm limit)")
        ax.set_ylabel("internal resistance (mOhm)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=3)
        for label in ax.get_xticklabels():
            label.set_rotation(20)

    return draw
