"""The BM-SM register table and its decoding: by hand-computed words, and over
a real pseudo-terminal through the simulator and the RTU poller."""

from __future__ import annotations

from pathlib import Path

import pytest
from btms_gateway.core.model import CellStatus, StringAlarm, StringState
from btms_gateway.core.profiles import ErrorKind, PollError
from btms_gateway.protocols.bmsm.decode import (
    decode_block,
    decode_cells,
    encode_block,
    raw_value,
    to_words,
)
from btms_gateway.protocols.bmsm.poller import BmsmPoller
from btms_gateway.protocols.bmsm.registers import (
    CELL_ARRAYS,
    STRING_BLOCK,
    RegType,
    WordOrder,
    render_markdown,
)
from btms_gateway.protocols.bmsm.simulator import Simulator
from btms_gateway.protocols.rtu import open_link
from hypothesis import given
from hypothesis import strategies as st

DOC = Path(__file__).resolve().parents[1] / "docs" / "bmsm-registers.md"


def test_low_word_first_and_signed_32_bit() -> None:
    # 800.00 V = 80000 = 0x0001_3880: the LOW word comes first on the wire.
    assert raw_value([0x3880, 0x0001], RegType.UINT32, WordOrder.LOW_FIRST) == 80000
    assert raw_value([0x0001, 0x3880], RegType.UINT32, WordOrder.LOW_FIRST) == 0x3880_0001
    # -123.45 A = -12345 = 0xFFFF_CFC7
    assert raw_value([0xCFC7, 0xFFFF], RegType.INT32, WordOrder.LOW_FIRST) == -12345
    assert to_words(-12345, RegType.INT32, WordOrder.LOW_FIRST) == [0xCFC7, 0xFFFF]
    assert raw_value([0xFFC9], RegType.INT16) == -55
    assert raw_value([0xFFC9], RegType.UINT16) == 0xFFC9


def _block(**over: int) -> list[int]:
    words = {0: 0x3880, 1: 0x0001, 2: 0xCFC7, 3: 0xFFFF, 4: 87, 6: 9950, 7: 2, 10: 3,
             11: 0xFFC9, 12: 455, 13: 0b1000010, 14: 1, 15: 0} | over  # fmt: skip
    return [words.get(i, 0) for i in range(16)]


def test_string_block_decodes_every_field_in_si_units() -> None:
    f = decode_block(_block())
    assert f["voltage_v"] == 800.00
    assert f["current_a"] == -123.45
    assert f["soc_pct"] == 87.0
    assert f["balance_pct"] == 99.50
    assert f["state"] is StringState.DISCHARGE
    assert f["cell_count"] == 3
    assert f["ambient_temperature_c"] == -5.5
    assert f["ambient_humidity_pct"] == 45.5
    assert f["alarms"] == StringAlarm.CURRENT_HIGH_DISCHARGE | StringAlarm.HALL_SENSOR_DISCONNECTED
    assert f["relay_closed"] is True
    assert f["aux_input_on"] is False


def test_no_sensor_markers_become_none() -> None:
    words = _block()
    words[11], words[12] = 0x8000, 0xFFFF
    f = decode_block(words)
    assert f["ambient_temperature_c"] is None
    assert f["ambient_humidity_pct"] is None


def test_impossible_cell_count_is_a_decode_error() -> None:
    words = _block()
    words[10] = 121
    with pytest.raises(PollError) as err:
        decode_block(words)
    assert err.value.kind is ErrorKind.DECODE


def test_cells_decode_and_sensor_lost_gives_none() -> None:
    arrays = {
        1000: [2251, 13560, 0],
        1200: [450, 12345, 0],
        1400: [241, 0xFF9C, 0],  # 24.1 C, -10.0 C
        1600: [100, 55, 0],
        1800: [97, 80, 0],
        2000: [0, 2, 1],  # ok, balancing, sensor lost
    }
    c1, c2, c3 = decode_cells(arrays, 3)
    assert (c1.index, c1.voltage_v, c1.resistance_mohm, c1.temperature_c) == (1, 2.251, 0.45, 24.1)
    assert (c1.soc_pct, c1.soh_pct, c1.status) == (100.0, 97.0, CellStatus.NONE)
    assert (c2.voltage_v, c2.resistance_mohm, c2.temperature_c) == (13.56, 12.345, -10.0)
    assert c2.status == CellStatus.BALANCING
    assert c3.status == CellStatus.SENSOR_LOST
    assert (c3.voltage_v, c3.resistance_mohm, c3.temperature_c, c3.soc_pct, c3.soh_pct) == (
        None, None, None, None, None,
    )  # fmt: skip


def test_encode_is_the_inverse_of_decode() -> None:
    fields = decode_block(_block())
    assert encode_block(fields) == _block()


def test_table_covers_the_documented_block_and_arrays() -> None:
    assert [r.address for r in STRING_BLOCK] == [0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert [a.base for a in CELL_ARRAYS] == [1000, 1200, 1400, 1600, 1800, 2000]
    documented = {r.address for r in STRING_BLOCK if r.documented}
    assert documented == {0, 2, 4, 6, 7, 10, 13}
    assert not any(a.documented for a in CELL_ARRAYS)


def test_committed_doc_equals_generated_table() -> None:
    assert DOC.read_text() == render_markdown(), (
        "docs/bmsm-registers.md is stale: "
        "btms-gateway export bmsm-registers > docs/bmsm-registers.md"
    )


async def test_every_register_over_a_real_pty() -> None:
    """Values set in the simulator's truth arrive decoded, in SI units, through
    real RTU frames on a pseudo-terminal."""
    with Simulator([7], cells=4, baud=115200, seed=3, frozen=True) as sim:
        sim.set_cell(7, 1, voltage_v=2.271, resistance_mohm=0.512, temperature_c=-3.4,
                     soc_pct=91, soh_pct=88)  # fmt: skip
        sim.set_cell(7, 2, status=CellStatus.BALANCING)
        sim.set_cell(7, 4, status=CellStatus.SENSOR_LOST)
        low = StringAlarm.SOC_LOW | StringAlarm.VOLTAGE_LOW
        sim.set_string(7, voltage_v=612.34, current_a=-987.65, soc_pct=42, balance_pct=97.25,
                       state=StringState.DISCHARGE, alarms=low,
                       ambient_temperature_c=-12.3, ambient_humidity_pct=None,
                       relay_closed=True, aux_input_on=True)  # fmt: skip
        link = open_link(sim.bus_config(timeout_s=0.3))
        link.open()
        try:
            r = BmsmPoller(link, 7).poll()
        finally:
            link.close()
    assert r.voltage_v == 612.34
    assert r.current_a == -987.65
    assert r.soc_pct == 42.0 and r.balance_pct == 97.25
    assert r.state is StringState.DISCHARGE
    assert r.alarms == StringAlarm.SOC_LOW | StringAlarm.VOLTAGE_LOW
    assert r.ambient_temperature_c == -12.3
    assert r.ambient_humidity_pct is None
    assert r.relay_closed is True and r.aux_input_on is True
    assert r.cell_count == 4 and len(r.cells) == 4
    c1 = r.cells[0]
    assert (c1.voltage_v, c1.resistance_mohm, c1.temperature_c, c1.soc_pct, c1.soh_pct) == (
        2.271, 0.512, -3.4, 91.0, 88.0,
    )  # fmt: skip
    assert r.cells[1].status == CellStatus.BALANCING and r.cells[1].voltage_v is not None
    assert r.cells[3].voltage_v is None and r.cells[3].temperature_c is None
    assert r.read_at > 0


@given(st.integers(-(2**31), 2**31 - 1))
def test_int32_low_word_first_round_trip(value: int) -> None:
    words = to_words(value, RegType.INT32, WordOrder.LOW_FIRST)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert words[0] == value & 0xFFFF  # the low word is first
    assert raw_value(words, RegType.INT32, WordOrder.LOW_FIRST) == value


@given(st.integers(-(2**15), 2**15 - 1))
def test_int16_round_trip(value: int) -> None:
    assert raw_value(to_words(value, RegType.INT16), RegType.INT16) == value


WORDS = st.one_of(st.sampled_from([0, 1, 0x7FFF, 0x8000, 0xFFFF]), st.integers(0, 0xFFFF))


@given(
    count=st.integers(0, 120),
    words=st.lists(st.lists(WORDS, min_size=120, max_size=120), min_size=5, max_size=5),
    statuses=st.lists(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 0x101]), min_size=120, max_size=120),
)
@pytest.mark.slow  # ~6 s on a shared 2-core box
def test_cells_decode_as_one_register_at_a_time(
    count: int, words: list[list[int]], statuses: list[int]
) -> None:
    """The column decoder (C-level conversions, cells made slot by slot) gives
    exactly the readings of the plain way: each word through raw_value and the
    table's scale, each cell through CellReading's own constructor (the
    plausibility check off: most random words are not measurable values)."""
    from btms_gateway.core.model import SENSOR_LOST_BIT, CellReading

    values = [a for a in CELL_ARRAYS if a.field != "status"]
    arrays = {a.base: w for a, w in zip(values, words, strict=True)} | {2000: statuses}
    expected = []
    for i in range(count):
        lost = statuses[i] & SENSOR_LOST_BIT
        cell = [
            None if lost else raw_value([arrays[a.base][i]], a.type) / round(1 / a.scale)
            for a in values
        ]
        expected.append(CellReading(i + 1, *cell, CellStatus(statuses[i])))
    got = decode_cells(arrays, count, check=False)
    assert got == tuple(expected)
    assert [repr(c) for c in got] == [repr(c) for c in expected]
    assert all(type(c) is CellReading for c in got)


# -- plausibility: values the device cannot measure fail the poll ----------------


@pytest.mark.parametrize(
    ("at", "words", "message"),
    [
        (0, (1999, 0), "string voltage 19.99 V outside 20..800 V"),  # 0.01 V below
        (0, (0x3881, 0x0001), "string voltage 800.01 V outside 20..800 V"),
        (0, (0, 0), "string voltage 0 V outside 20..800 V"),
        (2, (0x795F, 0xFFFE), "string current -1000.01 A outside -1000..1000 A"),
        (4, (101,), "string SOC 101 % outside 0..100 %"),
        (6, (10001,), "string balance 100.01 % outside 0..100 %"),
        (11, (0xFE6F,), "ambient temperature -40.1 C outside -40..80 C"),
        (12, (1001,), "ambient humidity 100.1 %RH outside 0..100 %RH"),
    ],
)
def test_a_string_value_the_device_cannot_measure_is_a_decode_error(
    at: int, words: tuple[int, ...], message: str
) -> None:
    block = _block()
    block[at : at + len(words)] = words
    with pytest.raises(PollError) as err:
        decode_block(block)
    assert err.value.kind is ErrorKind.DECODE and err.value.detail == message
    decode_block(block, check=False)  # decoding itself still works


def test_the_limits_of_the_ranges_and_no_sensor_are_accepted() -> None:
    edges = {0: 2000, 1: 0, 2: 0x7960, 3: 0xFFFE, 4: 0, 6: 10000, 11: 800, 12: 0}
    f = decode_block([edges.get(i, w) for i, w in enumerate(_block())])
    got = (f["voltage_v"], f["current_a"], f["soc_pct"], f["balance_pct"])
    assert got == (20.0, -1000.0, 0.0, 100.0)
    assert (f["ambient_temperature_c"], f["ambient_humidity_pct"]) == (80.0, 0.0)
    words = _block()
    words[11], words[12] = 0x8000, 0xFFFF  # no sensor fitted: None, not a value to check
    assert decode_block(words)["ambient_temperature_c"] is None


def _arrays(count: int) -> dict[int, list[int]]:
    """``count`` healthy cells (2.25 V, 0.45 mOhm, 24.0 C, 100 %, 97 %)."""
    return {1000: [2250] * count, 1200: [450] * count, 1400: [240] * count,
            1600: [100] * count, 1800: [97] * count, 2000: [0] * count}  # fmt: skip


@pytest.mark.parametrize(
    ("base", "word", "message"),
    [
        (1000, 0, "cell 3 voltage 0 V outside 1.6..2.6 or 7.5..15.6 V"),
        (1000, 3610, "cell 3 voltage 3.61 V outside 1.6..2.6 or 7.5..15.6 V"),  # between
        (1000, 15601, "cell 3 voltage 15.601 V outside 1.6..2.6 or 7.5..15.6 V"),
        (1200, 99, "cell 3 internal resistance 0.099 mOhm outside 0.1..50 mOhm"),
        (1200, 50001, "cell 3 internal resistance 50.001 mOhm outside 0.1..50 mOhm"),
        (1400, 0xFF37, "cell 3 temperature -20.1 C outside -20..85 C"),
        (1400, 851, "cell 3 temperature 85.1 C outside -20..85 C"),
        (1600, 238, "cell 3 SOC 238 % outside 0..100 %"),
        (1800, 101, "cell 3 SOH 101 % outside 0..100 %"),
        (2000, 97, "cell 3 status 0x0061 has bits the device does not set"),
    ],
)
def test_a_cell_value_the_device_cannot_measure_names_the_cell(
    base: int, word: int, message: str
) -> None:
    arrays = _arrays(4)
    arrays[base][2] = word
    with pytest.raises(PollError) as err:
        decode_cells(arrays, 4)
    assert err.value.kind is ErrorKind.DECODE and err.value.detail == message


def test_both_block_types_pass_and_a_lost_sensor_is_not_checked() -> None:
    arrays = _arrays(4)
    arrays[1000] = [1600, 2600, 7500, 15600]  # the edges of 2 V and 12 V blocks
    assert [c.voltage_v for c in decode_cells(arrays, 4)] == [1.6, 2.6, 7.5, 15.6]
    arrays = _arrays(4)
    for base in (1000, 1200, 1400, 1600, 1800):
        arrays[base][1] = 0  # what a lost sensor may read
    arrays[2000][1] = 1  # sensor lost
    cells = decode_cells(arrays, 4)
    assert cells[1].voltage_v is None and cells[0].voltage_v == 2.25
    arrays[2000][1] = 0  # the same zeros from a sensor not lost: refused
    with pytest.raises(PollError, match="cell 2 voltage 0 V"):
        decode_cells(arrays, 4)


@given(
    count=st.integers(1, 120),
    cell=st.integers(0, 119),
    column=st.sampled_from([a for a in CELL_ARRAYS if a.field != "status"]),
    inside=st.booleans(),
    data=st.data(),
)
def test_a_column_passes_exactly_when_every_value_is_in_range(
    count: int, cell: int, column: object, inside: bool, data: st.DataObject
) -> None:
    """The column check (lowest and highest value first) agrees with checking
    each value: one value anywhere in a column, inside or outside the range."""
    from btms_gateway.protocols.bmsm.registers import CellArray

    assert isinstance(column, CellArray)
    lo, hi = column.valid[0][0], column.valid[-1][1]
    divisor = round(1 / column.scale)
    if inside:
        span = data.draw(st.sampled_from(column.valid))
        value = data.draw(st.integers(round(span[0] * divisor), round(span[1] * divisor)))
    else:
        floor = -0x8000 if column.type == "int16" else 0
        gaps = [st.integers(round(hi * divisor) + 1, 0x7FFF if floor else 0xFFFF)]
        if round(lo * divisor) > floor:  # a uint16 SOC cannot read below 0
            gaps.append(st.integers(floor, round(lo * divisor) - 1))
        if len(column.valid) > 1:
            gaps.append(st.integers(round(column.valid[0][1] * divisor) + 1,
                                    round(column.valid[1][0] * divisor) - 1))  # fmt: skip
        value = data.draw(st.one_of(gaps))
    arrays = _arrays(count)
    arrays[column.base][min(cell, count - 1)] = value & 0xFFFF
    if inside:
        decode_cells(arrays, count)
    else:
        with pytest.raises(PollError, match=f"cell {min(cell, count - 1) + 1} {column.label} "):
            decode_cells(arrays, count)
