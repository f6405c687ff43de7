"""One MQTT session over paho-mqtt 2.x (callback API 2), driven by the
plugin's session thread.

A new paho client is made for every session rather than letting paho
reconnect by itself: paho would resend its unacknowledged messages into the
new session, and for Sparkplug those carry the old session's seq and must
not arrive after the new NBIRTH. So when a session ends, the uplink takes
back what was not acknowledged (as buffered records, replayed as
historical) and drops the client; each session also gets its own last will
(the NDEATH with the new bdSeq).

paho has no thread of its own here (no ``loop_start``): the connect (DNS,
TCP, the TLS handshake, the CONNECT packet, all blocking) runs in a
short-lived thread of its own, and from the moment it is done the session
thread does all of paho's work through its external-loop API, on each of
its passes: it reads (``loop_read``: acknowledgements, commands), writes (a
publish goes onto the socket at once, ``loop_write`` sends what the socket
did not take) and keeps the session alive (``loop_misc``). It waits on the
socket together with its inbox only while the broker's next word matters at
once (uplink.py ``awaits_broker``); otherwise acknowledgements wait in the
socket for the next pass. With paho's own thread every publish woke that
thread and every acknowledgement woke the session thread back: two thread
switches per message, more CPU than encoding the message.

paho's callbacks (run by those calls, on the session thread, or by the
connect thread) only post a tuple to the session's inbox, handled on its
next pass; an acknowledgement (one a message) only goes into ``acked``,
which the uplink takes right after ``serve``.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from .codec import Message
from .settings import MqttSettings

log = logging.getLogger("btms_gateway.mqtt")

#: hands a callback's news to the session thread (its inbox)
Post = Callable[[tuple[Any, ...]], None]
#: how an "ended" says that no CONNECT reached the broker (the reason follows)
CONNECT_FAILED = "could not connect"


#: what ``publish`` says when the message is paho's to deliver, or the uplink's to take back
_KEPT = (
    MQTTErrorCode.MQTT_ERR_SUCCESS,
    MQTTErrorCode.MQTT_ERR_NO_CONN,
    MQTTErrorCode.MQTT_ERR_CONN_LOST,
)


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
    late callback of a finished session is recognised and ignored. Used by
    the session thread only, once ``start``'s connect thread posted
    ``("open", generation)``."""

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
        self._lock = threading.Lock()  # the connect thread hands the client over
        self._open = False
        self._stopped = False
        #: mids the broker acknowledged, for the uplink to take after ``serve``
        self.acked: deque[int] = deque()
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
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message

    def start(self) -> None:
        """Connect in a thread of its own (DNS, TCP and TLS never block the
        session thread, which goes on buffering meanwhile)."""
        threading.Thread(
            target=self._connect, name=f"mqtt-connect-{self.generation}", daemon=True
        ).start()

    def _connect(self) -> None:
        s = self._settings
        kwargs: dict[str, Any] = {"clean_start": True} if s.protocol == "5" else {}
        try:
            self.client.connect(s.host, s.port, s.keepalive_s, **kwargs)
        except Exception as exc:  # refused, unreachable, TLS, timeout: CONNECT not sent
            self._post(("ended", self.generation, f"{CONNECT_FAILED}: {exc}"))
            return
        with self._lock:
            if self._stopped:  # stopped while connecting: nobody wants this session
                self.client.disconnect()
                return
            self._open = True
        self._post(("open", self.generation))

    def stop(self) -> None:
        """End the session (a DISCONNECT if it is open; no will then)."""
        with self._lock:
            self._stopped = True
            if not self._open:
                return
            self._open = False
        try:
            self.client.disconnect()
        except Exception:  # the socket may be gone already
            log.debug("MQTT disconnect failed", exc_info=True)

    # -- the session thread's share of paho -------------------------------------------
    def socket(self) -> Any:
        """The socket to wait on (None until open, and once closed)."""
        return self.client.socket() if self._open else None

    def wants_write(self) -> bool:
        return self._open and self.client.want_write()

    def serve(self) -> None:
        """Read what arrived (also what TLS holds decrypted), send what waits,
        keep the session alive. paho closes the socket and calls
        on_disconnect when the connection is lost."""
        c = self.client
        c.loop_read()  # non-blocking: nothing there is a cheap EAGAIN
        while (sock := c.socket()) is not None and getattr(sock, "pending", lambda: 0)() > 0:
            c.loop_read()
        if c.want_write():
            c.loop_write()
        c.loop_misc()

    def publish(self, msg: Message) -> int | None:
        """Hand a message to paho (it goes onto the socket at once); its mid
        (None if paho refused it). A connection found dead by this very write
        is not a refusal: paho ends the session (on_disconnect) and the
        uplink takes the message back with the others not acknowledged."""
        info = self.client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        if info.rc not in _KEPT:
            log.warning("MQTT publish to %s refused: %s", msg.topic, mqtt.error_string(info.rc))
            return None
        return int(info.mid)

    def subscribe(self, topics: list[str]) -> None:
        if topics:
            self.client.subscribe([(t, 1) for t in topics])

    # -- paho's callbacks ------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._post(("connected", self.generation, bool(reason.is_failure), str(reason)))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._post(("ended", self.generation, str(reason)))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acked.append(mid)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._post(("message", self.generation, message.topic, bytes(message.payload)))
