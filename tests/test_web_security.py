"""Security of the web plugin: read-only by default, actions need credentials,
hashed secrets only, and no secret in the logs (the allowlist and connection
limits: test_web_limits.py; request checks: test_web_requests.py)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import aiohttp
import pytest
from btms_gateway.core.config_load import ConfigError
from btms_gateway.core.registry import validate_config
from btms_gateway.kit.testing import plant_config
from btms_gateway.plugins.web.auth import hash_password, verify_password
from btms_gateway.plugins.web.commands import web_group
from click.testing import CliRunner
from web_support import (
    ALARM_ID,
    ALARMS,
    PASSWORD,
    TOKEN,
    TOKENS,
    USERS,
    _basic,
    _raise_alarm,
    get_json,
    manager,
    post_json,
    web_gateway,
)


def _acked(h) -> bool:  # type: ignore[no-untyped-def]
    return next(a for a in h.gateway.alarms.active() if a.alarm_id == ALARM_ID).acknowledged


async def test_acknowledge_refused_without_credentials_accepted_with(tmp_path: Path) -> None:
    web = {"users": USERS, "tokens": TOKENS}
    async with web_gateway(tmp_path, web=web, alarms=ALARMS) as (h, svc):
        await _raise_alarm(h)
        url = f"{svc.url}/api/alarms/{ALARM_ID}/acknowledge"
        status, body = await post_json(url)
        assert status == 401 and body == {"error": "login required"}
        assert (await post_json(url, headers={"Authorization": "Bearer wrong"}))[0] == 401
        assert (await post_json(url, headers=_basic("tech", "wrong")))[0] == 401
        assert not _acked(h)
        status, body = await post_json(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body == {
            "alarm_id": ALARM_ID,
            "acknowledged": True,
            "by": "token:scada",
        }
        assert _acked(h)
        status, alarms = await get_json(svc.url + "/api/alarms")
        assert alarms[0]["acknowledged_by"] == "token:scada"
        _, events = await get_json(svc.url + "/api/events", params={"kind": "acknowledged"})
        assert events["source"] == "event_log" and events["events"][0]["alarm_id"] == ALARM_ID
        status, body = await post_json(
            f"{svc.url}/api/alarms/nope/acknowledge", headers=_basic("tech", PASSWORD)
        )
        assert status == 404 and "no active alarm" in body["error"]
        refused = svc.stats.refused
        assert refused["no_credentials"] == 1 and refused["bad_token"] == 1


async def test_dashboard_session_needs_its_csrf_header(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, web={"users": USERS}, alarms=ALARMS) as (h, svc):
        await _raise_alarm(h)
        url = f"{svc.url}/api/alarms/{ALARM_ID}/acknowledge"
        jar = aiohttp.CookieJar(unsafe=True)  # the default jar ignores cookies of IP hosts
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            async with s.post(svc.url + "/api/login", json={"user": "tech", "password": "x"}) as r:
                assert r.status == 401
            async with s.post(
                svc.url + "/api/login", json={"user": "tech", "password": PASSWORD}
            ) as r:
                assert r.status == 200
                login = await r.json()
                cookie = r.cookies["btms_session"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
            async with s.post(url) as r:  # cookie alone: a cross-site form could do that
                assert r.status == 403
            assert not _acked(h)
            async with s.post(url, headers={"X-CSRF-Token": login["csrf"]}) as r:
                assert r.status == 200 and (await r.json())["by"] == "tech"
            assert _acked(h)
            async with s.post(svc.url + "/api/logout") as r:
                assert r.status == 200
            async with s.get(svc.url + "/api/session") as r:
                assert (await r.json())["user"] is None


async def test_read_only_when_no_users_are_configured(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, alarms=ALARMS) as (h, svc):
        await _raise_alarm(h)
        status, body = await post_json(
            f"{svc.url}/api/alarms/{ALARM_ID}/acknowledge",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert status == 403 and "actions are disabled" in body["error"]
        assert (await get_json(svc.url + "/api/plant"))[0] == 200  # reading stays open
        status, _ = await post_json(svc.url + "/api/login", json={"user": "a", "password": "b"})
        assert status == 403


async def test_failed_logins_are_throttled_and_secrets_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    web = {"users": USERS, "tokens": TOKENS, "max_failed_logins": 3}
    async with web_gateway(tmp_path, web=web, alarms=ALARMS) as (h, svc):
        await _raise_alarm(h)
        for _ in range(3):
            status, _ = await post_json(
                svc.url + "/api/login", json={"user": "tech", "password": "guess-123"}
            )
            assert status == 401
        status, body = await post_json(
            svc.url + "/api/login", json={"user": "tech", "password": PASSWORD}
        )
        assert status == 429 and "too many failed logins" in body["error"]
        await post_json(
            f"{svc.url}/api/alarms/{ALARM_ID}/acknowledge",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert _acked(h)
    logged = caplog.text
    assert "failed web login for user 'tech'" in logged
    for secret in ("guess-123", PASSWORD, TOKEN, USERS["tech"]):
        assert secret not in logged


async def test_security_headers(tmp_path: Path) -> None:
    async with (
        web_gateway(tmp_path) as (_, svc),
        aiohttp.ClientSession() as s,
        s.get(svc.url + "/") as r,
    ):
        assert r.status == 200
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "<title>BTMS Gateway</title>" in await r.text()


def _web_config(web: dict) -> None:
    validate_config(plant_config(plugins={"web": web}), "gw.toml", manager())


def test_plain_passwords_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as err:
        _web_config({"users": {"admin": "hunter2-plain"}})
    text = str(err.value)
    assert "plugins.web.users" in text and "plain passwords are not accepted" in text
    assert "hunter2-plain" not in text
    with pytest.raises(ConfigError, match=r"tokens\.x: a token hash"):
        _web_config({"tokens": {"x": "not-a-hash"}})
    with pytest.raises(ConfigError, match="an IP address or CIDR network"):
        _web_config({"allow": ["everyone"]})
    _web_config({"users": USERS, "tokens": TOKENS, "allow": ["192.168.0.0/16"]})


def test_hash_password_command_makes_a_config_line() -> None:
    result = CliRunner().invoke(
        web_group, ["hash-password", "--user", "ops", "--stdin"], input="s3cret!\n"
    )
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith('users.ops = "scrypt$') and "s3cret!" not in line
    stored = line.split('"')[1]
    assert verify_password("s3cret!", stored) and not verify_password("s3cret", stored)
    _web_config({"users": {"ops": stored}})
    result = CliRunner().invoke(web_group, ["new-token", "--name", "scada"])
    assert result.exit_code == 0 and 'tokens.scada = "sha256$' in result.output


def test_password_hashes_are_salted() -> None:
    assert hash_password("same", n=2**10) != hash_password("same", n=2**10)
    with pytest.raises(ValueError):
        hash_password("")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "web.crt", tmp_path / "web.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


async def test_tls_serves_https_and_marks_the_cookie_secure(tmp_path: Path) -> None:
    import ssl

    certfile, keyfile = _self_signed(tmp_path)
    web = {"users": USERS, "tls_certfile": str(certfile), "tls_keyfile": str(keyfile)}
    async with web_gateway(tmp_path, web=web) as (_, svc):
        assert svc.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(certfile))
        async with aiohttp.ClientSession() as s:
            async with s.get(svc.url + "/health/live", ssl=context) as r:
                assert r.status == 200
            async with s.post(
                svc.url + "/api/login", json={"user": "tech", "password": PASSWORD}, ssl=context
            ) as r:
                assert r.status == 200 and r.cookies["btms_session"]["secure"]
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(svc.url + "/health/live")  # not trusted without the CA file
    with pytest.raises(ConfigError, match="tls_certfile and tls_keyfile go together"):
        _web_config({"tls_certfile": str(certfile)})
