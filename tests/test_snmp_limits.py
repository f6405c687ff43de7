"""The SNMP agent's safe defaults against reflection and amplification, as
net-snmp's tools see them: who is answered (loopback only unless
configured), how large any answer is (max_response_bytes), how often one
source is answered (a token bucket), and sysServices.

127.0.0.0/8 is all loopback on Linux: net-snmp's ``--clientaddr`` (or a
socket bound to 127.0.0.2) is "another host" without any set-up.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from attack.snmp import burst, v2c_message
from btms_gateway.core.model import Quality
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
from btms_gateway.plugins.snmp import plugin
from snmp_rig import OIDS, decode_v2c
from snmp_support import COMMUNITY, QUICK, V2C, V3, agent_address, net_snmp, snmp_settings

pytestmark = pytest.mark.peer

SENT = re.compile(r"^Sending (\d+) bytes to", re.M)
RECEIVED = re.compile(r"^Received (\d+) byte packet from", re.M)


def harness(**settings: object) -> GatewayHarness:
    return GatewayHarness(
        plant_config(strings=2, ups=1, plugins={"snmp": snmp_settings(**settings)})
    )


async def publish_cells(h: GatewayHarness, cells: int) -> None:
    reading = make_reading(cells)
    h.publish("S1", reading, Quality.GOOD)
    await h.wait_until(
        lambda: plugin.current().ctx.plant.strings["S1"].reading is reading, what="refresh"
    )


def sizes(debug_output: str) -> tuple[list[int], list[int]]:
    """Request and response sizes from a net-snmp tool's ``-d`` packet dump."""
    return [int(n) for n in SENT.findall(debug_output)], [
        int(n) for n in RECEIVED.findall(debug_output)
    ]


@pytest.mark.parametrize(("bound", "version"), [(1472, V2C), (1472, V3), (1024, V2C)])
async def test_a_huge_getbulk_is_answered_within_the_byte_bound(
    bound: int, version: list[str]
) -> None:
    """The amplifier of the issue: a ~40-byte GETBULK asking for 10,000
    repetitions returned 20 kB. Now the response holds whole repetitions up
    to max_response_bytes of UDP payload, in order, and nothing more."""
    async with harness(max_response_bytes=bound) as h:
        await publish_cells(h, 120)
        r = await net_snmp(
            "snmpbulkget", "-d", *version, "-Cr10000", agent_address(),
            "BTMS-GATEWAY-MIB::btmsCellVoltage",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        sent, received = sizes(r.stdout + r.stderr)
        assert received and max(received) <= bound, (sent, received)
        lines = [ln for ln in r.stdout.splitlines() if "btmsCellVoltage.1." in ln]
        assert 10 <= len(lines) < 120
        cells = [int(ln.split(" = ")[0].rsplit(".", 1)[1]) for ln in lines]
        assert cells == list(range(1, len(cells) + 1))  # a prefix, none skipped
        if version is V2C:
            assert max(received) / max(sent) < bound / 38  # ~37x at most, was ~500x


async def test_a_get_that_would_not_fit_is_answered_toobig() -> None:
    """RFC 3416 4.2.1: tooBig with no variable bindings, on both paths."""
    async with harness(max_response_bytes=1024) as h:
        await publish_cells(h, 40)
        names = [f"BTMS-GATEWAY-MIB::btmsCellVoltage.1.{c}" for c in range(1, 41)]
        r = await net_snmp("snmpget", "-d", *V2C, agent_address(), *names)
        assert r.returncode != 0 and "tooBig" in r.stderr, r.stderr
        _sent, received = sizes(r.stdout + r.stderr)
        assert received and max(received) <= 1024
        r = await net_snmp("snmpget", *V2C, agent_address(), *names[:5])  # a smaller one fits
        assert r.returncode == 0 and r.stdout.count("btmsCellVoltage") == 5, r.stderr


async def test_by_default_only_loopback_is_answered() -> None:
    """allowed_managers empty: loopback only (it answered every source before).
    This machine has no other address to send from, so the default is read
    off the running agent's allowlist; a source that is refused is then made
    by allowing 127.0.0.1 alone and sending from 127.0.0.2."""
    async with harness():
        r = await net_snmp("snmpget", *V2C, agent_address(), "SNMPv2-MIB::sysDescr.0")
        assert r.returncode == 0 and "btms-gateway" in r.stdout, r.stderr
        assert plugin.current().agent.transport.allowlist.allows("127.0.0.2")
        assert not plugin.current().agent.transport.allowlist.allows("192.0.2.1")
    async with harness(allowed_managers=["127.0.0.1"]):
        r = await net_snmp(
            "snmpget", "--clientaddr=127.0.0.2", *V2C, *QUICK, agent_address(),
            "SNMPv2-MIB::sysDescr.0",
        )  # fmt: skip
        assert r.returncode != 0 and "Timeout" in r.stderr, r.stdout + r.stderr
        assert plugin.current().stats.dropped_sources >= 1
        r = await net_snmp("snmpget", *V2C, agent_address(), "SNMPv2-MIB::sysDescr.0")
        assert r.returncode == 0, r.stderr


def _burst(address: tuple[str, int], source: str, count: int) -> int:
    """Send ``count`` GETs from ``source`` at once; how many were answered (all
    of them without error)."""
    get = v2c_message(COMMUNITY, "get", [(*OIDS["btmsGwUptime"], 0)])
    replies = burst(address, source, get, count)
    assert all(decode_v2c(reply)[1] == 0 for reply in replies)
    return len(replies)


async def test_each_source_is_rate_limited_on_its_own() -> None:
    async with harness(rate_limit_per_s=5, rate_limit_burst=10):
        address = plugin.current().agent.bound
        answered = await asyncio.to_thread(_burst, address, "127.0.0.2", 40)
        assert 10 <= answered <= 30, answered  # the burst, and what refilled meanwhile
        assert plugin.current().stats.rate_limited == 40 - answered
        # another source has its own bucket
        assert await asyncio.to_thread(_burst, address, "127.0.0.3", 5) == 5
        r = await net_snmp("snmpget", *V2C, agent_address(), "SNMPv2-MIB::sysUpTime.0")
        assert r.returncode == 0, r.stderr


async def test_sys_services_says_an_application_layer_agent() -> None:
    async with harness():
        r = await net_snmp("snmpget", *V2C, "-Oqv", agent_address(), "SNMPv2-MIB::sysServices.0")
        assert r.returncode == 0 and r.stdout.strip() == "72", r.stdout + r.stderr
