"""``btms-gateway probe``: read a BM-SM once and show every register of its
map (probe.py), or ``--scan`` a bus for the slave ids that answer. The first
thing to run with real hardware (docs/deployment.md, "Commissioning").

Exit status: 0 nothing flagged (a scan: some BM-SM found), 1 something
flagged (a scan: none found), 2 no answer, a port that cannot be opened, or
a usage error.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from btms_gateway.core.api import BAUD_RATES, BusConfig, PollError
from btms_gateway.protocols.rtu import open_link

from .cli_options import map_or_exit, overrides_option
from .probe import (
    ZERO_FILLED,
    ProbeResult,
    Row,
    ScanHit,
    probe,
    scan,
    scan_time_per_id,
    value_text,
)
from .registers import MAX_CELLS, CellArray, Register, spans_text
from .regmap import RegisterMap

EXIT_FLAGGED, EXIT_ERROR = 1, 2
PROBE_TIMEOUT_S, SCAN_TIMEOUT_S = 0.5, 0.1
CELLS_PER_LINE = 3


def _id_range(value: str) -> range:
    first, sep, last = value.partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        raise click.BadParameter(f"expected FIRST-LAST like 1-32, found {value!r}") from None
    if not 1 <= lo <= hi <= 247:
        raise click.BadParameter(f"expected ids within 1..247, first <= last, found {value!r}")
    return range(lo, hi + 1)


@click.command()
@click.option("--port", help="Serial device, e.g. /dev/ttyUSB0 (or /dev/serial/by-id/...).")
@click.option("--host", help="RTU over TCP: the RS485-to-Ethernet converter's address.")
@click.option("--tcp-port", type=click.IntRange(1, 65535), help="RTU over TCP: its TCP port.")
@click.option("--slave", type=click.IntRange(1, 247), help="The BM-SM's slave id (1..247).")
@click.option("--scan", "do_scan", is_flag=True, help="Find the slave ids that answer.")
@click.option(
    "--range", "id_range", default="1-247", show_default=True,
    callback=lambda _c, _p, v: _id_range(v),
    help="With --scan: the ids to try, FIRST-LAST.",
)  # fmt: skip
@click.option(
    "--baud", type=click.Choice([str(b) for b in BAUD_RATES]), default="9600", show_default=True
)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True)
@click.option("--stopbits", type=click.Choice(["1", "2"]), default="1", show_default=True)
@click.option(
    "--timeout", type=click.FloatRange(0.01, 10), default=None,
    help=f"Response timeout in seconds [default: {PROBE_TIMEOUT_S}; with --scan "
    f"{SCAN_TIMEOUT_S}, per id].",
)  # fmt: skip
@click.option(
    "--cells", type=click.IntRange(0, MAX_CELLS), default=None,
    help="Read and show at most this many cells [default: all the device reports].",
)  # fmt: skip
@overrides_option("Read with this override file's register map (as a string's register_overrides).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def probe_command(
    port: str | None, host: str | None, tcp_port: int | None, slave: int | None, do_scan: bool,
    id_range: range, baud: str, parity: str, stopbits: str, timeout: float | None,
    cells: int | None, overrides: Path | None, fmt: str,
) -> None:  # fmt: skip
    """Read a BM-SM once and print every register of its map with the raw
    words, the decoded value, the valid range and a flag on anything that is
    not a measurement; or --scan a bus for the slave ids that answer.

    Exit status: 0 nothing flagged (--scan: a BM-SM found), 1 something
    flagged (--scan: none found), 2 no answer or a usage error."""
    if (port is None) == (host is None):
        raise click.UsageError("give the bus: --port DEVICE, or --host HOST --tcp-port PORT")
    if host is not None and tcp_port is None:
        raise click.UsageError("--host needs --tcp-port (the converter's TCP port)")
    if port is not None and tcp_port is not None:
        raise click.UsageError("--tcp-port goes with --host, not with --port")
    if do_scan == (slave is not None):
        raise click.UsageError("give --slave ID to probe one device, or --scan to find them")
    regmap = map_or_exit(overrides)
    bus = BusConfig(
        name="probe",
        transport="serial" if port else "rtu-over-tcp",
        port=port, host=host, tcp_port=tcp_port, baudrate=int(baud), parity=parity,  # type: ignore[arg-type]  # click.Choice-checked, typed str
        stopbits=int(stopbits),  # type: ignore[arg-type]  # click.Choice-checked: 1 or 2, typed int
        timeout_s=timeout or (SCAN_TIMEOUT_S if do_scan else PROBE_TIMEOUT_S),
        # a scan moves on to the next id after a frame gap, not a guard window:
        # a late reply then shows as a garbled one at the next id, said so
        late_reply_guard_s=0.0 if do_scan else None,
    )  # fmt: skip
    where = port or f"{host}:{tcp_port}"
    line = f"{baud} 8{parity}{stopbits}"
    link = open_link(bus)
    try:
        link.open()
    except PollError as exc:
        held = "lock" in exc.detail.lower() or "busy" in exc.detail.lower()
        hint = " (another program holds it: stop the gateway first, systemctl stop btms-gateway)"
        click.echo(f"probe: {exc.detail}{hint if held else ''}", err=True)
        sys.exit(EXIT_ERROR)
    try:
        if do_scan:
            status = _run_scan(link, bus, where, line, id_range, regmap, fmt)
        else:
            assert slave is not None
            result = probe(link, slave, regmap, cells=cells)
            out = _json(result, where, line) if fmt == "json" else _text(result, where, line)
            click.echo(out)
            status = result.status
    finally:
        link.close()
    sys.exit(status)


# -- probe output -------------------------------------------------------------------


def _text(result: ProbeResult, where: str, line: str) -> str:
    regmap = result.regmap
    source = "default table" if regmap.is_default else f"overrides from {regmap.source}"
    out = [
        f"BM-SM probe: slave {result.slave} on {where} ({line}); register map: {source}",
        f"{result.transactions} transaction(s) in {result.seconds:.2f} s",
        "",
    ]
    if result.block:
        read = regmap.block_read
        out += [f"String block (HR {read.address}..{read.end - 1})", ""]
        out += _block_table(result.block, regmap)
    if result.cell_count is not None:
        shown = result.cells_read
        out += ["", f"Cell arrays: cell count {result.cell_count}, {shown} cell(s) read", ""]
        for a in result.arrays:
            if a.rows or a.failure:
                out += _array_table(a.array, a.rows, a.failure, regmap)
        zeros = sorted({r.cell for r in result.rows() if ZERO_FILLED in r.flags and r.cell})
        if zeros:
            out += [f"! cell(s) {', '.join(map(str, zeros))}: {ZERO_FILLED}", ""]
    if result.error:
        out += ["", f"ERROR: {result.error}"]
    if out[-1]:
        out.append("")
    out.append(_summary(result))
    return "\n".join(out)


def _summary(result: ProbeResult) -> str:
    n = len(result.rows())
    verdict = {0: "nothing flagged", 1: "check the flagged registers (!)", 2: "incomplete"}
    return f"summary: {n} registers, {result.flagged} flagged: {verdict[result.status]}"


def _words_hex(words: Sequence[int]) -> str:
    return " ".join(f"{w:04X}" for w in words)


def _words_dec(words: Sequence[int]) -> str:
    return " ".join(str(w) for w in words)


def _block_table(rows: list[Row], regmap: RegisterMap) -> list[str]:
    head = (
        f"{'':1} {'HR':<6} {'hex':<10} {'dec':<12} {'value':>10} {'unit':<6} "
        f"{'valid':<14} {'source':<11} field"
    )
    out = [head]
    for r in rows:
        reg = r.row
        hr = f"{r.address}-{r.address + 1}" if len(r.words) == 2 else str(r.address)
        if reg is None:
            unit, valid, source, what = "-", "-", "-", "(not in the register map)"
        else:
            assert isinstance(reg, Register)
            unit, valid = reg.unit, spans_text(reg.valid)
            source = "documented" if reg.documented else "assumed"
            what = reg.field or "reserved"
            if regmap.changes.get(f"string.{reg.field}"):
                what += " [overridden]"
        mark = "!" if r.flags else ""
        out.append(
            f"{mark:1} {hr:<6} {_words_hex(r.words):<10} {_words_dec(r.words):<12} "
            f"{value_text(r):>10} {unit:<6} {valid:<14} {source:<11} {what}"
        )
        out += [f"    ! {flag}" for flag in r.flags]
    return out


def _array_table(
    array: CellArray, rows: list[Row], failure: str | None, regmap: RegisterMap
) -> list[str]:
    source = "documented" if array.documented else "assumed"
    change = regmap.changes.get(f"cell.{array.field}")
    scale = "" if array.unit == "bits" else f", scale {array.scale:g} {array.unit}"
    valid = f", valid {spans_text(array.valid, array.unit)}" if array.valid else ""
    out = [
        f"cell.{array.field}: HR {array.base} + i, {array.type}{scale}{valid}, {source}"
        + (f" [overridden: {change}]" if change else "")
    ]
    if failure:
        return [*out, f"    ! {failure}", ""]
    cell = f"{'cell':>4} {'HR':>5} {'hex':>4} {'dec':>5} {'value':>8}"
    out.append("  " + "  | ".join([cell] * min(CELLS_PER_LINE, max(1, len(rows)))))
    for i in range(0, len(rows), CELLS_PER_LINE):
        parts = [
            f"{r.cell:>4} {r.address:>5} {r.words[0]:04X} {r.words[0]:>5} "
            f"{value_text(r):>8}{'!' if r.flags else ' '}"
            for r in rows[i : i + CELLS_PER_LINE]
        ]
        out.append("  " + " | ".join(parts).rstrip())
    for r in rows:
        flags = [f for f in r.flags if f != ZERO_FILLED]  # said once for all arrays
        out += [f"    ! cell {r.cell} (HR {r.address}): {flag}" for flag in flags]
    return [*out, ""]


def _json(result: ProbeResult, where: str, line: str) -> str:
    regmap = result.regmap
    doc: dict[str, Any] = {
        "slave": result.slave,
        "bus": where,
        "line": line,
        "register_map": regmap.source,
        "transactions": result.transactions,
        "seconds": round(result.seconds, 3),
        "cell_count": result.cell_count,
        "cells_read": result.cells_read,
        "registers": [_row_json(r, regmap) for r in result.rows()],
        "arrays_refused": [
            {"quantity": f"cell.{a.array.field}", "flag": a.failure}
            for a in result.arrays
            if a.failure
        ],
        "error": result.error,
        "summary": {"registers": len(result.rows()), "flagged": result.flagged},
        "status": result.status,
    }
    return json.dumps(doc, indent=1)


def _row_json(r: Row, regmap: RegisterMap) -> dict[str, Any]:
    reg = r.row
    out: dict[str, Any] = {
        "quantity": r.key,
        "address": r.address,
        "cell": r.cell,
        "words": list(r.words),
        "value": r.value,
        "flags": r.flags,
    }
    if reg is not None:
        out |= {
            "meaning": reg.meaning,
            "type": str(reg.type),
            "word_order": str(reg.word_order),
            "scale": reg.scale,
            "unit": reg.unit,
            "valid": [list(s) for s in reg.valid],
            "source": "documented" if reg.documented else "assumed",
            "overridden": regmap.changes.get(r.key),
        }
    return out


# -- scan output ---------------------------------------------------------------------


def _run_scan(
    link: Any, bus: BusConfig, where: str, line: str, ids: range, regmap: RegisterMap, fmt: str
) -> int:
    per_id = scan_time_per_id(
        bus.timeout_s, bus.char_time_s(), bus.frame_gap_s(), regmap.cell_count.words
    )
    reg = regmap.cell_count
    to_stderr = fmt == "json"  # JSON on stdout, the progress beside it

    def say(text: str) -> None:
        click.echo(text, err=to_stderr)

    say(
        f"scanning slave ids {ids.start}..{ids.stop - 1} on {where} ({line}), reading HR "
        f"{reg.address} (cell count) once each: timeout {bus.timeout_s:g} s, about "
        f"{per_id:.2f} s per silent id, at most {per_id * len(ids):.0f} s"
    )
    started = time.monotonic()
    seen: list[int] = []

    def progress(slave: int, hits: list[ScanHit]) -> None:
        while len(seen) < len(hits):
            hit = hits[len(seen)]
            seen.append(hit.slave)
            say(f"  id {hit.slave}: {_hit_text(hit)}")
        done = slave - ids.start + 1
        if done % 16 == 0 or slave == ids.stop - 1:
            took = time.monotonic() - started
            say(f"  ... ids {ids.start}..{slave} done, {took:.1f} s ({took / done:.3f} s per id)")

    try:
        hits = scan(link, ids, regmap, progress)
    except PollError as exc:
        click.echo(f"scan: {exc.detail}", err=True)
        return EXIT_ERROR
    took = time.monotonic() - started
    found = [h for h in hits if h.cell_count is not None]
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "bus": where,
                    "line": line,
                    "ids": [ids.start, ids.stop - 1],
                    "seconds": round(took, 3),
                    "seconds_per_id": round(took / len(ids), 4),
                    "found": [
                        {"slave": h.slave, "cell_count": h.cell_count, "note": h.note} for h in hits
                    ],
                },
                indent=1,
            )
        )
    else:
        click.echo(
            f"found {len(found)} BM-SM(s) in {took:.1f} s ({took / len(ids):.3f} s per id): "
            + (", ".join(f"id {h.slave} ({h.cell_count} cells)" for h in found) or "none")
        )
        others = [h for h in hits if h.cell_count is None]
        if others:
            click.echo("other answers: " + "; ".join(f"id {h.slave} {h.note}" for h in others))
    return 0 if found else EXIT_FLAGGED


def _hit_text(hit: ScanHit) -> str:
    if hit.cell_count is None:
        return hit.note
    return f"{hit.cell_count} cells" + (f" ({hit.note})" if hit.note else "")
