"""One MQTT session as the plugin's session thread drives it (link.py), against
a Mosquitto of the test's own (TLS with a client certificate and a password)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from btms_gateway.plugins.mqtt.codec import Message
from btms_gateway.plugins.mqtt.link import CONNECT_FAILED, Link, tls_context
from btms_gateway.plugins.mqtt.settings import MqttSettings
from conftest import wait_for
from mqtt_peers import Mosquitto

pytestmark = pytest.mark.peer


def test_a_publish_that_finds_the_connection_dead_is_kept_for_the_uplink(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    posts: list[tuple[Any, ...]] = []
    settings = MqttSettings.model_validate(broker.plugin_section(node_id="t"))
    link = Link(settings, "btms-link-test", None, 1, posts.append, tls_context(settings))
    try:
        link.start()
        wait_for(lambda: ("open", 1) in posts, 10, "the connect thread")

        def connected() -> bool:
            link.serve()
            return any(p[0] == "connected" for p in posts)

        wait_for(connected, 10, "the CONNACK")
        broker.kill()  # nothing read the socket since: the writes find out
        mids = [link.publish(Message("t/data", b"x", 1)) for _ in range(5)]
        assert link.socket() is None, "a write should have found the connection dead"
        assert any(p[0] == "ended" for p in posts)
        # every message is the uplink's to take back (with what the broker never
        # acknowledged), none was given up as "refused"
        assert None not in mids and len(set(mids)) == 5
    finally:
        link.stop()
        broker.stop()


def test_a_failed_connect_says_why(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")  # configured, never started: nothing listens
    posts: list[tuple[Any, ...]] = []
    settings = MqttSettings.model_validate(broker.plugin_section(node_id="t"))
    link = Link(settings, "btms-link-test", None, 7, posts.append, tls_context(settings))
    link.start()
    (kind, generation, why) = wait_for(lambda: posts and posts[0], 15, "the connect's end")
    assert (kind, generation) == ("ended", 7)
    assert why.startswith(CONNECT_FAILED) and "refused" in why.lower(), why
    assert link.socket() is None
