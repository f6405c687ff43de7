"""One MQTT session over paho-mqtt 2.x (callback API 2), on paho's own thread.

A new paho client is made for every session rather than letting paho
reconnect by itself: paho would resend its unacknowledged messages into the
new session, and for Sparkplug those carry the old session's seq and must
not arrive after the new NBIRTH. So when a session ends, the uplink takes
back what was not acknowledged (as buffered records, replayed as
historical) and drops the client; each session also gets its own last will
(the NDEATH with the new bdSeq).

Callbacks only post a tuple to the session's inbox: paho calls on_publish
with its own message lock held, and the session thread holds none of its
locks while publishing, so the two can never wait on each other. An
acknowledgement does not wake the session thread: it is only bookkeeping,
done on the thread's next pass.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from .codec import Message
from .settings import MqttSettings

log = logging.getLogger("btms_gateway.mqtt")

#: hands a callback to the session thread: (item, wake); acknowledgements do
#: not wake it (they are bookkeeping for its next pass)
Post = Callable[[tuple[Any, ...], bool], None]


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None and tls.key_file is not None:
        password = tls.key_password.get_secret_value() if tls.key_password else None
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file), password)
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Link:
    """A paho client for one session; ``generation`` tags its callbacks so a
    late callback of a finished session is recognised and ignored."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        will: Message | None,
        generation: int,
        post: Post,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.generation = generation
        self._settings = settings
        self._post = post
        v5 = settings.protocol == "5"
        self.client = c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
            reconnect_on_failure=False,
        )
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            c.username_pw_set(settings.username, password)
        if tls is not None:
            c.tls_set_context(tls)
            if settings.tls is not None and settings.tls.insecure:
                c.tls_insecure_set(True)
        if will is not None:
            c.will_set(will.topic, will.payload, will.qos, will.retain)
        c.max_inflight_messages_set(settings.max_inflight)
        c.max_queued_messages_set(0)  # unbounded in paho: the uplink bounds what it hands over
        c.connect_timeout = settings.connect_timeout_s
        # paho retries a failed first connect by itself after this delay: the
        # uplink stops the client long before (it schedules its own backoff)
        c.reconnect_delay_set(3600, 3600)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message

    def start(self) -> None:
        """Connect in paho's thread (DNS, TCP and TLS never block the caller)."""
        s = self._settings
        kwargs: dict[str, Any] = {}
        if s.protocol == "5":
            kwargs["clean_start"] = True
        self.client.connect_async(s.host, s.port, s.keepalive_s, **kwargs)
        self.client.loop_start()

    def stop(self) -> None:
        """End the session without waiting: paho's thread ends by itself."""
        try:
            self.client.disconnect()
        except Exception:  # the socket may be gone already
            log.debug("MQTT disconnect failed", exc_info=True)

    def publish(self, msg: Message) -> int | None:
        """Hand a message to paho; its mid (None if paho refused it)."""
        info = self.client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish to %s refused: %s", msg.topic, mqtt.error_string(info.rc))
            return None
        return int(info.mid)

    def subscribe(self, topics: list[str]) -> None:
        if topics:
            self.client.subscribe([(t, 1) for t in topics])

    # -- paho's thread ------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._post(("connected", self.generation, bool(reason.is_failure), str(reason)), True)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._post(("ended", self.generation, "could not connect"), True)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._post(("ended", self.generation, str(reason)), True)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._post(("ack", self.generation, mid), False)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._post(("message", self.generation, message.topic, bytes(message.payload)), True)
