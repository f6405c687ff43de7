"""The BM-SM plugin registers through the same entry point and hooks a third
party would use: the "bmsm" device profile and the `simulate` command. The
profile's poller is driven here exactly as the engine drives it."""

from __future__ import annotations

import time

from btms_gateway.core.cli import build_cli
from btms_gateway.core.config import StringConfig
from btms_gateway.core.plugin_manager import FailureLog, create_manager
from btms_gateway.core.registry import device_profiles
from btms_gateway.protocols.bmsm.simulator import Simulator
from btms_gateway.protocols.rtu import open_link
from click.testing import CliRunner


def test_profile_registered_from_the_entry_point() -> None:
    failures = FailureLog()
    profiles = device_profiles(create_manager(), failures)
    assert "bmsm" in profiles
    assert "BM-SM" in profiles["bmsm"].description


def test_simulate_command_is_on_the_cli() -> None:
    cli = build_cli()
    assert "simulate" in cli.commands
    r = CliRunner().invoke(cli, ["simulate", "--help"])
    assert r.exit_code == 0 and "--pty" in r.output and "--fault" in r.output


async def test_engine_style_use_of_profile_link_and_counters() -> None:
    profile = device_profiles(create_manager(), FailureLog())["bmsm"]
    with Simulator([1, 2], cells={1: 120, 2: 12}, baud=115200, seed=8, frozen=True) as sim:
        bus = sim.bus_config("busA", timeout_s=0.3)
        link = open_link(bus)
        assert not link.is_open
        link.open()
        try:
            p1 = profile.create_poller(StringConfig(name="S1", bus="busA", slave_id=1), bus, link)
            p2 = profile.create_poller(StringConfig(name="S2", bus="busA", slave_id=2), bus, link)
            r1 = p1.poll()
            r2 = p2.poll(retries=0)
        finally:
            link.close()
        assert r1.cells == sim.expected(1).cells and len(r2.cells) == 12
    # a first poll: the block, the cells, the block again (the count confirmed)
    assert link.counters.requests == 16 and link.counters.responses == 16
    assert link.counters_for(1).requests == link.counters_for(2).requests == 8


def test_export_bmsm_registers_prints_the_committed_doc() -> None:
    from pathlib import Path

    r = CliRunner().invoke(build_cli(), ["export", "bmsm-registers"])
    assert r.exit_code == 0
    doc = Path(__file__).resolve().parents[1] / "docs" / "bmsm-registers.md"
    assert r.output == doc.read_text()


def test_a_steady_poll_reads_the_string_block_last_and_stamps_its_reply() -> None:
    """The string block (current, voltage, SOC, alarms) is the freshest part of a
    reading: after the first poll it is the last read, and read_at falls between
    that reply and the end of the poll, never before the data was in."""
    profile = device_profiles(create_manager(), FailureLog())["bmsm"]
    with Simulator([1], cells={1: 120}, baud=115200, seed=3, frozen=True) as sim:
        bus = sim.bus_config("busA", timeout_s=0.3)
        link = open_link(bus)
        link.open()
        try:
            poller = profile.create_poller(
                StringConfig(name="S1", bus="busA", slave_id=1), bus, link
            )
            first = poller.poll()
            mark = len(sim.truth_log)
            second = poller.poll()
            polled_until = time.time()
        finally:
            link.close()
        records = sim.truth_log[mark:]
    assert [r.address for r in sim.truth_log[:1]] == [0]  # no plan yet: the block first
    assert len(records) == 7 and records[-1].address == 0 and records[-1].count == 16
    assert all(r.address != 0 for r in records[:-1])
    assert records[-1].at <= second.read_at <= polled_until
    assert second.cells == first.cells and second.current_a == first.current_a
