"""Modbus/TCP Security: a TLS listener that requires a client certificate from our CA."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.plugin_manager import create_manager
from btms_gateway.core.registry import validate_config
from btms_gateway.kit.testing import GatewayHarness, plant_config
from btms_gateway.plugins.modbus_tcp import plugin
from btms_gateway.plugins.modbus_tcp.settings import ModbusTcpSettings
from modbus_support import modbus_config
from pydantic import ValidationError
from pymodbus.client import AsyncModbusTlsClient


def _client_ctx(pki: dict[str, str], with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"])
    if with_cert:
        ctx.load_cert_chain(pki["client_crt"], pki["client_key"])
    return ctx


async def _tls_read(port: int, ctx: ssl.SSLContext) -> list[int] | None:
    client = AsyncModbusTlsClient("127.0.0.1", port=port, sslctx=ctx, timeout=2, retries=0)
    try:
        if not await client.connect():
            return None
        rr = await client.read_holding_registers(0, count=2, device_id=101)
        return None if rr.isError() else list(rr.registers)
    except Exception:  # handshake refused / connection closed
        return None
    finally:
        client.close()


async def test_tls_client_with_a_valid_certificate_reads_one_without_is_refused(
    pki: dict[str, str],
) -> None:
    tls = {
        "enabled": True,
        "port": 0,
        "certfile": pki["server_crt"],
        "keyfile": pki["server_key"],
        "cafile": pki["ca"],
    }
    async with GatewayHarness(modbus_config(2, 1, tls=tls)) as h:
        port = plugin.service(h.gateway).tls_port
        assert await _tls_read(port, _client_ctx(pki, with_cert=True)) == [1, 2]
        assert await _tls_read(port, _client_ctx(pki, with_cert=False)) is None
        # and the certificate-holding client is still served afterwards
        assert await _tls_read(port, _client_ctx(pki, with_cert=True)) == [1, 2]


def _tls_settings(pki: dict[str, str]) -> dict[str, object]:
    return {
        "enabled": True,
        "port": 0,
        "certfile": pki["server_crt"],
        "keyfile": pki["server_key"],
        "cafile": pki["ca"],
    }


async def _closed_unanswered(reader: asyncio.StreamReader, timeout: float) -> bytes | None:
    """What the server sent before closing within ``timeout`` (None: still
    open); a TLS alert or a reset is a close with nothing sent."""
    got = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(4096):
                got += chunk
    except (ssl.SSLError, ConnectionError):
        pass
    except TimeoutError:
        return None
    return got


async def _refused_without_certificate(port: int, ctx: ssl.SSLContext) -> bool:
    """A TLS 1.3 client finishes its side of the handshake before the server
    checks its certificate: the refusal is the alert (or EOF) read next."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        return await _closed_unanswered(reader, 5.0) == b""
    finally:
        writer.close()


async def test_tls_handshakes_are_bounded_admitted_first_and_never_leak(
    pki: dict[str, str],
) -> None:
    """On the TLS listener too, admission comes before any byte is read: a
    host outside the allowlist gets no ServerHello. A socket that never
    starts its handshake is closed after request_timeout_s (asyncio's own
    TLS server held it 60 s, outside every limit), and a failed handshake
    releases its handler (asyncio never reported those, so pymodbus kept
    them: one leaked per failed handshake)."""
    config = modbus_config(2, 1, tls=_tls_settings(pki), allow=["127.0.0.1"], request_timeout_s=0.5)
    async with GatewayHarness(config) as h:
        svc = plugin.service(h.gateway)
        port = svc.tls_port
        client_hello = ssl.MemoryBIO(), ssl.MemoryBIO()
        probe = _client_ctx(pki, with_cert=True).wrap_bio(
            *client_hello, server_hostname="127.0.0.1"
        )
        with contextlib.suppress(ssl.SSLWantReadError):
            probe.do_handshake()
        hello = client_hello[1].read()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        writer.write(hello)
        assert await _closed_unanswered(reader, 5.0) == b""  # not a byte of TLS back
        writer.close()
        assert svc.stats.refused_allowlist == 1
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for reader, writer in silent:
            assert await _closed_unanswered(reader, 5.0) == b""
            writer.close()
        for _ in range(10):  # no client certificate: refused by the handshake
            assert await _refused_without_certificate(port, _client_ctx(pki, with_cert=False))
        assert svc.guard.counts.handshake_failed >= 13
        await h.wait_until(
            lambda: svc.stats.connections == 0 and not svc.tls.active_connections,
            what="every failed handshake released",
        )
        assert await _tls_read(port, _client_ctx(pki, with_cert=True)) == [1, 2]


def test_tls_settings_name_missing_files(tmp_path: Path) -> None:
    tls = {
        "enabled": True,
        "certfile": str(tmp_path / "nope.crt"),
        "keyfile": str(tmp_path / "nope.key"),
        "cafile": str(tmp_path / "ca.crt"),
    }
    cfg = plant_config(plugins={"modbus_tcp": {"tls": tls}})
    with pytest.raises(
        ConfigError, match=r"plugins\.modbus_tcp\.tls\.certfile: expected an existing file"
    ):
        validate_config(cfg, "<test>", create_manager())
    with pytest.raises(ValidationError, match=r"cafile when enabled = true"):
        ModbusTcpSettings.model_validate(
            {"tls": {"enabled": True, "certfile": __file__, "keyfile": __file__}}
        )
    # a disabled TLS section is not checked
    ModbusTcpSettings.model_validate({"tls": {"enabled": False, "certfile": "/nope"}})
