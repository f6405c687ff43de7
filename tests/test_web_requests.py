"""What the web server answers to requests a browser or a hostile page may
send: parallel password guesses, cross-site logins, a foreign Host name
(DNS rebinding), unknown paths and methods, bad query values, a second
acknowledge, and one client taking every live-update slot. curl is the
independent client where the exact bytes on the wire matter."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from attack.web import close_held, login_flood, open_stream
from btms_gateway.core.model import Quality
from conftest import require_tool
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
    post_json,
    web_gateway,
)

SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options")


def curl(url: str, *args: str) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one request made by curl."""
    exe = require_tool("curl", "curl")
    command = [exe, "-s", "-i", "--max-time", "10", *args, url]
    # bytes, not text mode: universal newlines would turn the header CRLFs into LF
    out = subprocess.run(command, capture_output=True, timeout=20, check=False).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def acurl(url: str, *args: str) -> tuple[int, dict[str, str], str]:
    return await asyncio.to_thread(curl, url, *args)


async def test_parallel_guesses_meet_the_limit_and_few_checks_run_at_once(tmp_path: Path) -> None:
    web = {"users": USERS, "max_failed_logins": 5, "max_connections_per_client": 100}
    async with web_gateway(tmp_path, web=web) as (_, svc):
        running, most = 0, 0
        lock = threading.Lock()
        check = svc.auth.check_password

        def counted(user: str, password: str) -> bool:  # the scrypt calls, as they run
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            try:
                return check(user, password)
            finally:
                with lock:
                    running -= 1

        svc.auth.check_password = counted

        statuses = await login_flood(svc.url, 60)
        checked = statuses.count(401)
        assert 1 <= checked <= 5, statuses  # counted before the check, not after
        assert set(statuses) <= {401, 429, 503}
        assert most <= 2  # scrypt runs two at a time at most
        # the right password from that address waits out the minute like any other
        status, _ = await post_json(
            svc.url + "/api/login", json={"user": "tech", "password": PASSWORD}
        )
        assert status in (429, 503)


async def test_a_right_password_is_not_counted_as_a_failure(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, web={"users": USERS, "max_failed_logins": 2}) as (_, svc):
        for _ in range(4):
            status, _ = await post_json(
                svc.url + "/api/login", json={"user": "tech", "password": PASSWORD}
            )
            assert status == 200


async def test_login_takes_json_only_and_actions_refuse_a_foreign_origin(tmp_path: Path) -> None:
    async with web_gateway(tmp_path, web={"users": USERS}) as (_, svc):
        body = json.dumps({"user": "tech", "password": PASSWORD})
        # what a form on another site can send without the browser asking first
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            status, headers, text = await acurl(
                svc.url + "/api/login", "-H", f"Content-Type: {kind}", "--data-raw", body
            )
            assert status == 415 and "application/json" in json.loads(text)["error"], kind
            assert "set-cookie" not in headers
        status, headers, _ = await acurl(
            svc.url + "/api/login", "-H", "Content-Type: application/json",
            "-H", "Origin: http://evil.example", "--data-raw", body,
        )  # fmt: skip
        assert status == 403 and "set-cookie" not in headers
        assert svc.stats.refused["origin"] == 1
        status, headers, _ = await acurl(
            svc.url + "/api/login", "-H", "Content-Type: application/json",
            "-H", f"Origin: {svc.url}", "--data-raw", body,
        )  # fmt: skip
        assert status == 200 and "btms_session=" in headers["set-cookie"]


async def test_only_configured_host_names_are_answered(tmp_path: Path) -> None:
    web = {"allowed_hosts": ["gw.plant.example"]}
    async with web_gateway(tmp_path, web=web) as (_, svc):
        url = svc.url + "/api/plant"
        status, headers, text = await acurl(url, "-H", "Host: attacker.example")
        assert status == 421 and "attacker.example" in json.loads(text)["error"]
        assert all(h.lower() in headers for h in SECURITY_HEADERS)
        for host in ("gw.plant.example", "GW.Plant.Example.:8080", "localhost", "127.0.0.1",
                     f"127.0.0.1:{svc.port}", "[::1]:1", "dash.localhost"):  # fmt: skip
            status, _, _ = await acurl(url, "-H", f"Host: {host}")
            assert status == 200, host
        assert svc.stats.refused["host"] == 1


async def test_unknown_paths_and_methods_answer_json_with_security_headers(
    tmp_path: Path,
) -> None:
    async with web_gateway(tmp_path) as (_, svc):
        for path, args, status in (
            ("/api/nope", (), 404),
            ("/api/strings/S1/nope", (), 404),
            ("/api/plant", ("-X", "POST"), 405),
            ("/health/nope", (), 404),
        ):
            got, headers, text = await acurl(svc.url + path, *args)
            assert got == status, path
            assert headers["content-type"].startswith("application/json"), path
            assert "error" in json.loads(text)
            assert all(h.lower() in headers for h in SECURITY_HEADERS), path
            assert headers["cache-control"] == "no-store"
        got, headers, _ = await acurl(svc.url + "/nope")
        assert got == 404 and all(h.lower() in headers for h in SECURITY_HEADERS)
        got, headers, _ = await acurl(svc.url + "/api/stream?string=S1", "--max-time", "1")
        assert got == 200 and all(h.lower() in headers for h in SECURITY_HEADERS)


async def test_bad_query_values_are_refused_with_400(tmp_path: Path) -> None:
    async with web_gateway(tmp_path) as (h, svc):
        from web_support import reading

        h.publish("S1", reading(4), Quality.GOOD)
        base = svc.url + "/api/strings/S1"
        for query, key in (
            ("?cells=maybe", "cells"),
            ("/history?limit=-5", "limit"),
            ("/history?limit=0", "limit"),
            ("/history?limit=x", "limit"),
            ("/history?since=nan", "since"),
            ("/history?since=inf", "since"),
        ):
            status, body = await get_json(base + query)
            assert status == 400 and body["error"].startswith(f"{key}: expected"), query
        for query in ("?cells=false", "?cells=1", "/history?limit=1", "/history?since=0"):
            assert (await get_json(base + query))[0] == 200, query
        _, without = await get_json(base + "?cells=no")
        assert "cells" not in without["reading"]


async def test_a_second_acknowledge_reports_who_acknowledged_first(tmp_path: Path) -> None:
    web = {"users": USERS, "tokens": TOKENS}
    async with web_gateway(tmp_path, web=web, alarms=ALARMS) as (h, svc):
        await _raise_alarm(h)
        url = f"{svc.url}/api/alarms/{ALARM_ID}/acknowledge"
        _, first = await post_json(url, headers={"Authorization": f"Bearer {TOKEN}"})
        status, second = await post_json(url, headers=_basic("tech", PASSWORD))
        assert first["by"] == "token:scada"
        assert status == 200 and second == {
            "alarm_id": ALARM_ID,
            "acknowledged": True,
            "by": "token:scada",
        }
        _, alarms = await get_json(svc.url + "/api/alarms")
        assert alarms[0]["acknowledged_by"] == "token:scada"


async def test_one_address_cannot_take_every_live_slot(tmp_path: Path) -> None:
    web = {"max_live_clients": 4, "max_live_clients_per_client": 2}
    async with web_gateway(tmp_path, web=web) as (h, svc):
        held: list[Any] = []
        try:
            assert [await open_stream(svc.url, "127.0.0.2", held) for _ in range(3)] == [
                200, 200, 503,
            ]  # fmt: skip
            assert svc.stats.refused["live_clients_per_client"] == 1
            assert await open_stream(svc.url, "127.0.0.3", held) == 200  # others still can
            await h.wait_until(lambda: svc.stats.clients == 3, what="3 live clients")
        finally:
            await close_held(held)
