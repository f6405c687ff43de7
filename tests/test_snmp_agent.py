"""The SNMP agent as net-snmp's tools see it: values by name with the MIB
loaded, v2c and v3 authPriv, refused SETs and credentials, the allowlist,
the bind check, and malformed datagrams."""

from __future__ import annotations

import os
import random
import re
import socket

import pytest
from btms_gateway.core.gateway import GatewayStartError
from btms_gateway.core.model import Quality
from btms_gateway.core.version import __version__
from btms_gateway.kit.testing import GatewayHarness, make_reading, plant_config
from btms_gateway.plugins.snmp import plugin
from snmp_support import (
    AUTH_KEY,
    BOTH_PATHS,
    COMMUNITY,
    OLD_AUTH,
    OLD_PRIV,
    OLD_USER,
    PRIV_KEY,
    QUICK,
    USER,
    V2C,
    V3,
    agent_address,
    net_snmp,
    snmp_settings,
)

pytestmark = pytest.mark.peer


def harness(strings: int = 3, **settings: object) -> GatewayHarness:
    return GatewayHarness(
        plant_config(strings=strings, ups=2, plugins={"snmp": snmp_settings(**settings)})
    )


async def publish_and_wait(h: GatewayHarness, name: str, cells: int, **kw: object) -> None:
    reading = make_reading(cells, **kw)  # type: ignore[arg-type]
    h.publish(name, reading, Quality.GOOD)
    await h.wait_until(
        lambda: plugin.current().ctx.plant.strings[name].reading is reading, what="refresh"
    )


@BOTH_PATHS
async def test_v2c_get_reads_held_values_by_name(fast_path: bool) -> None:
    async with harness(fast_path=fast_path) as h:
        await publish_and_wait(h, "S2", 5, current_a=-42.5, soc_pct=73.0)
        r = await net_snmp(
            "snmpget", *V2C, agent_address(),
            "BTMS-GATEWAY-MIB::btmsStringCurrent.2",
            "BTMS-GATEWAY-MIB::btmsStringSoc.2",
            "BTMS-GATEWAY-MIB::btmsCellVoltage.2.3",
            "BTMS-GATEWAY-MIB::btmsCellResistance.2.3",
            "BTMS-GATEWAY-MIB::btmsStringQuality.2",
            "SNMPv2-MIB::sysObjectID.0",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        out = r.stdout
        # make_reading: cell i voltage 2.25 + i mV, resistance 0.5 + i uOhm
        assert "btmsStringCurrent.2 = INTEGER: -42.50 A" in out
        assert "btmsStringSoc.2 = INTEGER: 73 %" in out
        assert "btmsCellVoltage.2.3 = INTEGER: 2.253 V" in out
        assert "btmsCellResistance.2.3 = INTEGER: .503 mOhm" in out
        assert "btmsStringQuality.2 = INTEGER: good(1)" in out
        assert "sysObjectID.0 = OID: BTMS-GATEWAY-MIB::btmsGatewayMIB" in out
        ups = plugin.current().ctx.plant.ups["UPS2"]  # S2 is UPS2's only string
        r = await net_snmp(
            "snmpget", *V2C, agent_address(),
            "BTMS-GATEWAY-MIB::btmsUpsVoltage.2",
            "BTMS-GATEWAY-MIB::btmsUpsCurrent.2",
            "BTMS-GATEWAY-MIB::btmsUpsQuality.2",
            "BTMS-GATEWAY-MIB::btmsUpsQuality.1",
            "BTMS-GATEWAY-MIB::btmsGwStringsGood.0",
            "BTMS-GATEWAY-MIB::btmsGwVersion.0",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"btmsUpsVoltage.2 = INTEGER: {ups.voltage_v:.2f} V" in r.stdout
        assert "btmsUpsCurrent.2 = INTEGER: -42.50 A" in r.stdout
        assert "btmsUpsQuality.2 = INTEGER: good(1)" in r.stdout
        assert "btmsUpsQuality.1 = INTEGER: offline(3)" in r.stdout  # S1, S3 never read
        assert "btmsGwStringsGood.0 = Gauge32: 1" in r.stdout
        assert f"btmsGwVersion.0 = STRING: {__version__}" in r.stdout


@BOTH_PATHS
async def test_values_follow_new_readings_and_quality(fast_path: bool) -> None:
    async with harness(fast_path=fast_path) as h:
        await publish_and_wait(h, "S1", 3, cell_voltage_v=2.1)
        await publish_and_wait(h, "S1", 4, cell_voltage_v=2.2)  # shape change: 4 cells
        h.publish("S1", plugin.current().ctx.plant.strings["S1"].reading, Quality.STALE)
        await h.wait_until(
            lambda: plugin.current().ctx.plant.strings["S1"].quality is Quality.STALE
        )
        r = await net_snmp(
            "snmpget", *V2C, agent_address(),
            "BTMS-GATEWAY-MIB::btmsCellVoltage.1.4",
            "BTMS-GATEWAY-MIB::btmsStringQuality.1",
            "BTMS-GATEWAY-MIB::btmsStringStatus.1",
            "BTMS-GATEWAY-MIB::btmsStringVoltage.3",
            "BTMS-GATEWAY-MIB::btmsStringDataAge.3",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "btmsCellVoltage.1.4 = INTEGER: 2.204 V" in r.stdout
        assert "btmsStringQuality.1 = INTEGER: stale(2)" in r.stdout
        assert "btmsStringStatus.1 = INTEGER: error(2)" in r.stdout
        # S3 was never read: no value is invented for it
        assert "btmsStringVoltage.3 = No Such Instance" in r.stdout
        assert "btmsStringDataAge.3 = No Such Instance" in r.stdout


@BOTH_PATHS
async def test_walk_and_bulkwalk_agree_and_cover_every_cell(fast_path: bool) -> None:
    async with harness(fast_path=fast_path) as h:
        agent = plugin.current().agent  # the switch reaches both fast paths
        assert (agent.direct is not None) is fast_path and agent.bulk.fast is fast_path
        await publish_and_wait(h, "S1", 120)
        await publish_and_wait(h, "S3", 7)
        walk = await net_snmp(
            "snmpwalk", *V2C, "-On", agent_address(), "BTMS-GATEWAY-MIB::btmsCellTable"
        )
        bulk = await net_snmp(
            "snmpbulkwalk", *V3, "-Cr200", "-On", agent_address(), "BTMS-GATEWAY-MIB::btmsCellTable"
        )
        assert walk.returncode == 0 and bulk.returncode == 0, walk.stderr + bulk.stderr
        assert walk.stdout == bulk.stdout
        lines = walk.stdout.splitlines()
        assert len(lines) == (120 + 7) * 7  # 7 accessible columns
        assert sum(".4.1.3.3." in ln for ln in lines) == 7  # btmsCellVoltage.3.*


@BOTH_PATHS
async def test_getbulk_answers_more_than_pysnmps_default_64(fast_path: bool) -> None:
    """pysnmp alone answers at most 64 varbinds; the byte bound (limits.py,
    tests/test_snmp_limits.py) is what caps a GETBULK here."""
    async with harness(max_response_bytes=8192, fast_path=fast_path) as h:
        await publish_and_wait(h, "S1", 120)
        r = await net_snmp(
            "snmpbulkget", *V2C, "-Cr100", agent_address(), "BTMS-GATEWAY-MIB::btmsCellVoltage"
        )
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.splitlines()) == 100  # max_bulk_varbinds' default


@BOTH_PATHS
async def test_system_group_and_full_walk_merge_in_order(fast_path: bool) -> None:
    async with harness(fast_path=fast_path) as h:
        await publish_and_wait(h, "S1", 2)
        r = await net_snmp("snmpwalk", *V2C, "-On", agent_address(), ".1.3.6.1")
        assert r.returncode == 0, r.stderr
        lines = [ln for ln in r.stdout.splitlines() if " = " in ln]
        assert "No more variables left in this MIB View" in lines[-1]
        oids = [ln.split(" = ")[0] for ln in lines[:-1]]
        keys = [tuple(int(p) for p in o.strip(".").split(".")) for o in oids]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert ".1.3.6.1.2.1.1.1.0" in oids  # sysDescr
        assert ".1.3.6.1.4.1.8072.9999.9999.1.4.1.3.1.2" in oids  # a cell voltage
        assert ".1.3.6.1.6.3.10.2.1.1.0" in oids  # snmpEngineID (after our subtree)
        # pysnmp's own community/USM/VACM tables are not in the read view
        assert not any(
            o.startswith((".1.3.6.1.6.3.18", ".1.3.6.1.6.3.16", ".1.3.6.1.6.3.15.1.2"))
            for o in oids
        )
        assert COMMUNITY not in r.stdout


def v3(user: str, auth: str, auth_key: str, priv_key: str) -> list[str]:
    """net-snmp arguments for an SNMPv3 authPriv request with AES privacy."""
    return [
        "-v3",
        "-l",
        "authPriv",
        "-u",
        user,
        "-a",
        auth,
        "-A",
        auth_key,
        "-x",
        "AES",
        "-X",
        priv_key,
    ]


@pytest.mark.parametrize(
    "creds",
    [
        v3(USER, "SHA-256", AUTH_KEY, PRIV_KEY),
        v3(OLD_USER, "SHA", OLD_AUTH, OLD_PRIV),
    ],
    ids=["sha256-aes128", "sha1-aes128"],
)
async def test_v3_authpriv_users_read(creds: list[str]) -> None:
    async with harness() as h:
        await publish_and_wait(h, "S1", 3)
        r = await net_snmp(
            "snmpget", *creds, agent_address(), "BTMS-GATEWAY-MIB::btmsCellVoltage.1.1"
        )
        assert r.returncode == 0, r.stderr
        assert "btmsCellVoltage.1.1 = INTEGER: 2.251 V" in r.stdout


@pytest.mark.parametrize(
    "creds",
    [
        ["-v2c", "-c", "public"],
        v3(USER, "SHA-256", "wrong-auth-key", PRIV_KEY),
        v3(USER, "SHA-256", AUTH_KEY, "wrong-priv-key"),
        v3("intruder", "SHA-256", AUTH_KEY, PRIV_KEY),
        ["-v3", "-l", "noAuthNoPriv", "-u", USER],
    ],
    ids=["wrong-community", "wrong-auth-key", "wrong-priv-key", "unknown-user", "noauth"],
)
async def test_wrong_credentials_get_no_data_and_are_counted(creds: list[str]) -> None:
    async with harness() as h:
        await publish_and_wait(h, "S1", 3)
        before = plugin.current().stats.auth_failures()
        r = await net_snmp(
            "snmpget", *creds, *QUICK, agent_address(), "BTMS-GATEWAY-MIB::btmsCellVoltage.1.1"
        )
        assert r.returncode != 0
        assert "2.251" not in r.stdout and "btmsCellVoltage.1.1 =" not in r.stdout
        if creds[1] != "-l" or creds[2] != "noAuthNoPriv":
            assert plugin.current().stats.auth_failures() > before
        ok = await net_snmp(
            "snmpget", *V2C, agent_address(), "BTMS-GATEWAY-MIB::btmsGwSnmpAuthFailures.0"
        )
        assert ok.returncode == 0, ok.stderr


async def test_v3_only_agent_ignores_the_community() -> None:
    async with harness(v2c=False) as h:
        await publish_and_wait(h, "S1", 2)
        r = await net_snmp("snmpget", *V2C, *QUICK, agent_address(), "SNMPv2-MIB::sysDescr.0")
        assert r.returncode != 0 and "btms-gateway" not in r.stdout
        r = await net_snmp("snmpget", *V3, agent_address(), "SNMPv2-MIB::sysDescr.0")
        assert r.returncode == 0 and "btms-gateway" in r.stdout, r.stderr


async def test_snmpv1_gets_no_data() -> None:
    """Only v2c and v3 have a VACM group: a v1 request with the right community
    gets an error, never a value."""
    async with harness() as h:
        await publish_and_wait(h, "S1", 2)
        for tool in ("snmpget", "snmpgetnext"):
            r = await net_snmp(
                tool,
                "-v1",
                "-c",
                COMMUNITY,
                *QUICK,
                agent_address(),
                "BTMS-GATEWAY-MIB::btmsCellVoltage.1.1",
            )
            assert r.returncode != 0
            assert "btmsCell" not in r.stdout, r.stdout


@pytest.mark.parametrize(
    "target",
    [
        "BTMS-GATEWAY-MIB::btmsStringSoc.1 i 5",
        "SNMPv2-MIB::sysContact.0 s intruder",
        "SNMPv2-MIB::sysName.0 s x",
    ],
)
async def test_set_is_refused(target: str) -> None:
    async with harness() as h:
        await publish_and_wait(h, "S1", 2)
        for creds in (V2C, V3):
            r = await net_snmp("snmpset", *creds, agent_address(), *target.split())
            assert r.returncode != 0
            assert re.search(r"notWritable|noAccess", r.stderr), r.stderr
        after = await net_snmp("snmpget", *V2C, agent_address(), "SNMPv2-MIB::sysContact.0")
        assert "intruder" not in after.stdout


async def test_port_in_use_fails_startup_loudly() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(GatewayStartError, match=rf"cannot bind udp 127\.0\.0\.1:{port}"):
            async with harness(port=port):
                pass


async def test_allowlist_drops_other_sources_and_counts_them() -> None:
    async with harness(allowed_managers=["10.0.0.0/8"]):
        r = await net_snmp("snmpget", *V2C, *QUICK, agent_address(), "SNMPv2-MIB::sysDescr.0")
        assert r.returncode != 0 and "Timeout" in r.stderr
        assert plugin.current().stats.dropped_sources >= 1
    async with harness(allowed_managers=["127.0.0.0/8", "::1"]):
        r = await net_snmp("snmpget", *V2C, agent_address(), "SNMPv2-MIB::sysDescr.0")
        assert r.returncode == 0 and "btms-gateway" in r.stdout


@pytest.mark.slow  # ~5 s on a shared 2-core box
async def test_ten_thousand_malformed_datagrams_leave_the_agent_answering() -> None:
    async with harness(rate_limit_per_s=0) as h:  # every datagram reaches the decoder
        await publish_and_wait(h, "S1", 2)
        agent = plugin.current().agent
        host, port = agent.bound  # type: ignore[misc]
        in_pkts, parse_errors = agent.engine.get_mib_builder().import_symbols(
            "__SNMPv2-MIB", "snmpInPkts", "snmpInASNParseErrs"
        )

        def received() -> int:
            return int(in_pkts.syntax)

        def counted() -> int:
            return int(parse_errors.syntax) + plugin.current().stats.bad_datagrams

        rng = random.Random(7)
        valid = bytes.fromhex("302902010104067075626c6963a01c0204") + os.urandom(4)
        start, start_bad = received(), counted()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(10_000):
                kind = i % 4
                if kind == 0:
                    data = rng.randbytes(rng.randint(1, 1400))
                elif kind == 1:
                    data = valid[: rng.randint(1, len(valid))]  # truncated BER
                elif kind == 2:
                    data = b"\x30\x84\xff\xff\xff\xff" + rng.randbytes(20)  # absurd length
                else:
                    data = b""
                s.sendto(data, (host, port))
                if i % 50 == 49:  # stay within the socket buffer: wait for the agent
                    await h.wait_until(lambda n=i: received() - start >= n + 1, timeout=10)
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(65535)  # not one of them was answered
        assert received() - start == 10_000
        # counted as bad by pysnmp or the plugin (a random datagram may also land
        # in another counter, e.g. snmpInBadVersions)
        assert counted() - start_bad >= 9_900
        r = await net_snmp(
            "snmpget", *V2C, agent_address(),
            "BTMS-GATEWAY-MIB::btmsCellVoltage.1.2",
            "BTMS-GATEWAY-MIB::btmsGwSnmpBadDatagrams.0",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "btmsCellVoltage.1.2 = INTEGER: 2.252 V" in r.stdout
        assert "btmsGwSnmpBadDatagrams.0 = Counter32: " in r.stdout
