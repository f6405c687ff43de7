"""The reports render, carry the site, string and time on every page, and
name the right cells: a recorded discharge of the simulator with weak cells
injected, read back through poppler's pdftotext/pdftoppm (independent of
the library that wrote the PDF)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from analytics_support import discharge, history_service, site_settings
from btms_gateway.core.reports import ReportError, ReportSource
from btms_gateway.plugins.reports.plugin import KINDS
from conftest import require_tool

WEAK = [4, 15]
SITE = "Riverside data centre"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    data_dir = tmp_path_factory.mktemp("site")
    h = history_service(data_dir)
    o = discharge(24, 3, WEAK, current_a=60.0, step_s=2.0, data_dir=data_dir, history=h)
    assert h.sync(120)
    h.close()
    assert o.summary.id is not None
    return data_dir, o.summary.id


def _source(data_dir: Path) -> ReportSource:
    return ReportSource.from_files(site_settings(data_dir, SITE))


def _pdf_pages(path: Path) -> list[str]:
    tool = require_tool("pdftotext", "poppler-utils")
    text = subprocess.run([tool, "-layout", str(path), "-"], capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    return [p for p in text.stdout.split("\f") if p.strip()]


def test_discharge_pdf_names_the_weakest_cells_on_pages_that_say_where(
    recorded: tuple[Path, int], tmp_path: Path
) -> None:
    data_dir, event = recorded
    report = KINDS["discharge"](_source(data_dir), str(event), "pdf")
    assert report.media_type == "application/pdf" and report.filename.endswith(".pdf")
    path = tmp_path / report.filename
    path.write_bytes(report.data)
    pages = _pdf_pages(path)
    assert len(pages) >= 3  # facts and curves, more plots, the cell table
    for page in pages:  # site, string and time on every page
        assert f"{SITE} · string S1" in page
        assert re.search(r"Discharge report · \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    assert re.search(r"Weakest cells\s+(4, 15|15, 4),", pages[0])
    table = "\n".join(pages[2:])
    ranks = re.findall(r"^\s+(\d+)\s+(\d+)\s+\d\.\d{3}", table, flags=re.M)
    assert sorted(int(cell) for rank, cell in ranks if int(rank) <= 2) == WEAK
    assert len(ranks) == 24
    pdftoppm = require_tool("pdftoppm", "poppler-utils")
    done = subprocess.run([pdftoppm, "-png", "-r", "30", "-f", "1", "-l", "1", str(path),
                           str(tmp_path / "p")], capture_output=True)  # fmt: skip
    assert done.returncode == 0 and list(tmp_path.glob("p-1.png"))


@pytest.mark.parametrize("points", [50, 51, 53])  # strides that do and do not end on the last
def test_the_curves_end_at_the_cells_end_voltages(
    recorded: tuple[Path, int], monkeypatch: pytest.MonkeyPatch, points: int
) -> None:
    """The curves are thinned for drawing, never by their end: the knee of the
    last seconds is where the end voltages the table and the bars show come from."""
    from btms_gateway.plugins.reports import discharge as report

    data_dir, event = recorded
    source = _source(data_dir)
    assert source.discharges is not None
    s = source.discharges.get(event)
    assert s is not None
    monkeypatch.setattr(report, "MAX_POINTS", points)
    curves = report._curves(source, s)
    assert curves is not None and len(curves["minutes"]) <= 2 * points + 1
    assert curves["minutes"][-1] == pytest.approx((s.end - s.start) / 60.0)
    ends = {c.cell: c.end_v for c in s.cells}
    assert {cell: round(float(v[-1]), 3) for cell, v in curves["cells"].items()} == ends


def test_discharge_html_is_self_contained_with_the_weak_cells_marked(
    recorded: tuple[Path, int],
) -> None:
    data_dir, event = recorded
    page = KINDS["discharge"](_source(data_dir), str(event), "html").data.decode()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count('src="data:image/png;base64,') == 3  # curves, end voltages, string
    marked = re.findall(r"<tr class=mark><td>(\d+)</td><td>(\d+)</td>", page)
    assert [int(cell) for _, cell in marked][:2] in (WEAK, WEAK[::-1])
    assert f"{SITE} · string S1" in page and "Discharge report" in page


def test_health_report_flags_the_weak_cells_against_the_median(
    recorded: tuple[Path, int], tmp_path: Path
) -> None:
    data_dir, _ = recorded
    page = KINDS["health"](_source(data_dir), "S1", "html").data.decode()
    flagged = re.search(r"<th>Flagged cells</th><td>([^<]*)</td>", page)
    assert flagged is not None and flagged.group(1) == ", ".join(str(c) for c in WEAK)
    pdf = KINDS["health"](_source(data_dir), "S1", "pdf")
    path = tmp_path / pdf.filename
    path.write_bytes(pdf.data)
    for page_text in _pdf_pages(path):
        assert f"{SITE} · string S1" in page_text and "Resistance health report ·" in page_text


def test_unknown_subjects_and_formats_are_clear_errors(recorded: tuple[Path, int]) -> None:
    data_dir, _ = recorded
    source = _source(data_dir)
    with pytest.raises(ReportError, match="no discharge 999"):
        KINDS["discharge"](source, "999", "pdf")
    with pytest.raises(ReportError, match="a discharge id"):
        KINDS["discharge"](source, "last", "pdf")
    with pytest.raises(ReportError, match="html or pdf"):
        KINDS["discharge"](source, "1", "docx")


def test_without_matplotlib_the_report_says_what_to_install(
    recorded: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, event = recorded
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ReportError, match=r"pip install 'btms-gateway\[reports\]'"):
        KINDS["discharge"](_source(data_dir), str(event), "pdf")
