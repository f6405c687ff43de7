"""Pages: the same figures and tables as one self-contained HTML page and as
a PDF, with the site, string and time on every page.

matplotlib draws both (its Agg canvas for the PNGs the HTML page embeds,
its own PDF backend through ``PdfPages`` for the PDF: vector plots, fonts
embedded, no other dependency), and is imported only here, when a report is
made: it is the ``reports`` extra. Figures are built with the object API
(``Figure``), never pyplot, so reports made in the gateway's worker threads
share no global state.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from btms_gateway.core.api import Report, ReportError

A4 = (8.27, 11.69)
ROWS_PER_PAGE = 52
INSTALL = "pip install 'btms-gateway[reports]'"


def matplotlib_modules() -> tuple[Any, Any]:
    """(Figure, PdfPages), or ReportError saying what to install."""
    try:
        from matplotlib.backends.backend_pdf import PdfPages
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ReportError(
            f"reports need matplotlib, which is not installed ({exc}): {INSTALL}"
        ) from None
    return Figure, PdfPages


def utc(t: float | None, seconds: bool = False) -> str:
    if t is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime(fmt)


@dataclass
class Table:
    title: str
    head: list[str]
    rows: list[list[str]]
    #: row indexes to emphasise (the weakest cells, the flagged ones)
    marked: set[int] = field(default_factory=set)


@dataclass
class Document:
    """A report before it is rendered: plots (functions drawing on a Figure)
    and tables, with what every page names."""

    kind: str  #: "Discharge report", "Resistance health report"
    site: str
    string: str
    made_at: float
    subtitle: str
    facts: list[tuple[str, str]]
    plots: list[tuple[str, Callable[[Any], None]]]
    tables: list[Table]
    notes: list[str] = field(default_factory=list)

    @property
    def header(self) -> str:
        dot = " \u00b7 "
        return f"{self.site}{dot}string {self.string}{dot}{self.kind}{dot}{utc(self.made_at)}"


def render(doc: Document, fmt: str, filename: str) -> Report:
    if fmt == "html":
        return Report(to_html(doc).encode(), "text/html; charset=utf-8", f"{filename}.html")
    if fmt == "pdf":
        return Report(to_pdf(doc), "application/pdf", f"{filename}.pdf")
    raise ReportError(f"format: html or pdf, found {fmt!r}")


def _figure(Figure: Any, height: float = 4.2) -> Any:
    """Fixed margins (room for the tick labels and a twin axis' label) rather
    than a layout engine: constrained layout measured every text's extent and
    took 40 % of an HTML report's time."""
    fig = Figure(figsize=(A4[0] - 0.6, height))
    fig.subplots_adjust(left=0.09, right=0.91, bottom=0.12, top=0.97)
    return fig


def to_html(doc: Document) -> str:
    Figure, _ = matplotlib_modules()
    e = html.escape
    images = []
    for title, draw in doc.plots:
        fig = _figure(Figure)
        draw(fig.subplots())
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        data = base64.b64encode(buf.getvalue()).decode()
        images.append(
            f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(title)}</figcaption></figure>"
        )
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in doc.facts)
    tables = []
    for t in doc.tables:
        head = "".join(f"<th>{e(h)}</th>" for h in t.head)
        body = "".join(
            ("<tr class=mark>" if i in t.marked else "<tr>")
            + "".join(f"<td>{e(c)}</td>" for c in row)
            + "</tr>"
            for i, row in enumerate(t.rows)
        )
        tables.append(
            f"<h2>{e(t.title)}</h2><table class=cells><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )
    notes = "".join(f"<p class=note>{e(n)}</p>" for n in doc.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(doc.kind)}: {e(doc.string)} ({e(doc.site)})</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #1d2330; }}
header.page {{ border-bottom: 2px solid #1d2330; margin-bottom: 1em; padding-bottom: .3em;
  display: flex; justify-content: space-between; font-size: 12px; color: #4a5568; }}
h1 {{ margin: .2em 0; }} h2 {{ margin-top: 1.5em; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 2px 8px; text-align: right; }}
table.facts th {{ text-align: left; font-weight: 600; }} table.facts td {{ text-align: left; }}
table.cells {{ font-variant-numeric: tabular-nums; font-size: 12px; }}
table.cells tr:nth-child(even) {{ background: #f4f6f9; }}
table.cells tr.mark {{ background: #fde2e0; font-weight: 600; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #4a5568; }}
p.note {{ color: #8a4b00; }}
@media print {{
  header.page {{ position: fixed; top: 0; left: 0; right: 0; background: white; }}
  body {{ margin-top: 3em; }} @page {{ size: A4; margin: 18mm 12mm; }}
  figure, tr {{ break-inside: avoid; }}
}}
</style></head><body>
<header class="page"><span>{e(doc.site)} \u00b7 string {e(doc.string)}</span>
<span>{e(doc.kind)} \u00b7 made {e(utc(doc.made_at, True))}</span></header>
<h1>{e(doc.kind)}: string {e(doc.string)}</h1>
<p>{e(doc.subtitle)}</p>
<table class=facts>{facts}</table>{notes}
{"".join(images)}
{"".join(tables)}
<footer><p class=muted>btms-gateway \u00b7 {e(doc.header)}</p></footer>
</body></html>
"""


def to_pdf(doc: Document) -> bytes:
    Figure, PdfPages = matplotlib_modules()
    buf = io.BytesIO()
    pages: list[Any] = []
    first = Figure(figsize=A4)
    _page_frame(first, doc)
    first.text(0.06, 0.91, f"{doc.kind}: string {doc.string}", fontsize=16, weight="bold")
    y = 0.885
    for line in textwrap.wrap(doc.subtitle, 105):
        first.text(0.06, y, line, fontsize=8.5, color="#4a5568")
        y -= 0.015
    y -= 0.012
    for k, v in doc.facts:
        first.text(0.06, y, k, fontsize=9, weight="bold")
        first.text(0.36, y, v, fontsize=9)
        y -= 0.018
    for n in doc.notes:
        first.text(0.06, y, n, fontsize=8.5, color="#8a4b00")
        y -= 0.02
    plots = list(doc.plots)
    if plots:  # the first plot below the facts
        _place(first, plots.pop(0), (0.06, 0.08, 0.9, y - 0.12))
    pages.append(first)
    while plots:
        page = Figure(figsize=A4)
        _page_frame(page, doc)
        _place(page, plots.pop(0), (0.06, 0.52, 0.9, 0.38))
        if plots:
            _place(page, plots.pop(0), (0.06, 0.07, 0.9, 0.38))
        pages.append(page)
    for t in doc.tables:
        for start in range(0, max(1, len(t.rows)), ROWS_PER_PAGE):
            page = Figure(figsize=A4)
            _page_frame(page, doc)
            _table_page(page, t, start)
            pages.append(page)
    with PdfPages(buf, metadata={"Title": doc.header, "Creator": "btms-gateway"}) as pdf:
        for i, page in enumerate(pages, start=1):
            page.text(0.94, 0.02, f"page {i} of {len(pages)}", ha="right", fontsize=7.5)
            pdf.savefig(page)
    return buf.getvalue()


def _page_frame(fig: Any, doc: Document) -> None:
    """What every page carries: site, string, report and time."""
    fig.text(0.06, 0.965, f"{doc.site} \u00b7 string {doc.string}", fontsize=8.5, weight="bold")
    fig.text(0.94, 0.965, f"{doc.kind} \u00b7 {utc(doc.made_at)}", fontsize=8.5, ha="right")
    fig.add_artist(_rule(fig, 0.958))
    fig.text(0.06, 0.02, "btms-gateway", fontsize=7.5, color="#4a5568")


def _rule(fig: Any, y: float) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([0.06, 0.94], [y, y], transform=fig.transFigure, color="#1d2330", lw=0.8)


def _place(page: Any, plot: tuple[str, Callable[[Any], None]], rect: Sequence[float]) -> None:
    """The plot's axes in ``rect`` (x, y, width, height of the page), with
    room left of it for the axis labels and under it for the x label."""
    title, draw = plot
    x, y, w, h = rect
    draw(page.add_axes((x + 0.05, y + 0.04, w - 0.11, h - 0.06)))
    page.text(x, y + h + 0.008, title, fontsize=9.5, weight="bold")


def _table_page(page: Any, t: Table, start: int) -> None:
    rows = t.rows[start : start + ROWS_PER_PAGE]
    widths = [max(len(h), *(len(r[i]) for r in t.rows)) for i, h in enumerate(t.head)]
    line = "  ".join(h.rjust(w) for h, w in zip(t.head, widths, strict=True))
    page.text(0.06, 0.93, t.title + (" (continued)" if start else ""), fontsize=11, weight="bold")
    page.text(0.06, 0.905, line, fontsize=7.5, family="monospace", weight="bold")
    y = 0.89
    for i, row in enumerate(rows, start=start):
        text = "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
        marked = i in t.marked
        page.text(
            0.06, y, text, fontsize=7.5, family="monospace",
            color="#b3261e" if marked else "#1d2330", weight="bold" if marked else "normal",
        )  # fmt: skip
        y -= 0.0158
