"""The pysnmp command responder: transport, security, access control, MIB objects.

Traps avoided (pysnmp 7.1.30): the UDP socket is bound here, synchronously,
so a port already in use fails the plugin's startup loudly instead of
silently inside the loop; GETBULK's 64-varbind cap is raised to the
configured ``max_bulk_varbinds``; the read view is restricted to the system
and snmp groups, the engine and USM statistics and our base, so the
community/USM/VACM tables pysnmp keeps in its own MIB are never readable.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from btms_gateway.core.api import LOOPBACK, ClientAllowlist, LogTally, TokenBuckets, __version__
from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import context
from pysnmp.proto import rfc1902

from . import responders
from .controller import BtmsController
from .direct import DirectReads
from .image import AgentStats, ServeContext, build_index
from .settings import SnmpSettings, UserSettings

log = logging.getLogger("btms_gateway.plugins.snmp")

AUTH = {
    "SHA": config.USM_AUTH_HMAC96_SHA,
    "SHA-224": config.USM_AUTH_HMAC128_SHA224,
    "SHA-256": config.USM_AUTH_HMAC192_SHA256,
    "SHA-384": config.USM_AUTH_HMAC256_SHA384,
    "SHA-512": config.USM_AUTH_HMAC384_SHA512,
}
PRIV = {
    "AES": config.USM_PRIV_CFB128_AES,
    "AES-128": config.USM_PRIV_CFB128_AES,
    "AES-192": config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES-256": config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}
READ_VIEW, NO_VIEW = "btms-read", "btms-none"
COMMUNITY_NAME = "btms-ro"
READ_SUBTREES = (
    (1, 3, 6, 1, 2, 1, 1),  # SNMPv2-MIB system group
    (1, 3, 6, 1, 2, 1, 11),  # SNMPv2-MIB snmp group (counters)
    (1, 3, 6, 1, 6, 3, 10, 2, 1),  # snmpEngine (engine id, boots, time)
    (1, 3, 6, 1, 6, 3, 15, 1, 1),  # usmStats
)


class AgentStartError(RuntimeError):
    pass


def engine_id(settings: SnmpSettings, gateway_name: str) -> bytes:
    """RFC 3411 text format under net-snmp's enterprise (8072): stable across
    restarts, so v3 trap receivers can be configured with it."""
    if settings.engine_id:
        return bytes.fromhex(settings.engine_id.removeprefix("0x"))
    return bytes.fromhex("80001f8804") + f"btms:{gateway_name}".encode()[:27]


#: the agent engine's housekeeping tick (pysnmp's default is 0.1 s)
TIMER_RESOLUTION_S = 1.0


def add_user(snmp_engine: Any, user: UserSettings) -> None:
    config.add_v3_user(
        snmp_engine,
        user.name,
        AUTH[user.auth_protocol],
        user.auth_key.get_secret_value(),
        PRIV[user.priv_protocol],
        user.priv_key.get_secret_value(),
    )


#: the agent's application-layer service (RFC 3418 sysServices: 2^(7-1) = 64
#: for applications, plus 2^(4-1) = 8 for end-to-end hosts), as net-snmp's snmpd says
SYS_SERVICES = 72


class AllowlistUdp(udp.UdpAsyncioTransport):
    """Drops (and counts) datagrams from sources outside the manager allowlist,
    then those past their source's rate limit, before pysnmp parses them: no
    answer, no error, no CPU spent on BER."""

    allowlist = ClientAllowlist(list(LOOPBACK))
    rate: TokenBuckets | None = None  # None: no rate limit
    stats: AgentStats | None = None
    direct: DirectReads | None = None
    tally = LogTally(log)

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:
        source = transportAddress[0]
        if not self.allowlist.allows(source):
            if self.stats is not None:
                self.stats.dropped_sources += 1
            self.tally.note("source", "dropped an SNMP datagram from %s: not a manager", source)
            return
        if self.rate is not None and not self.rate.take(source):
            if self.stats is not None:
                self.stats.rate_limited += 1
            self.tally.note(
                "rate", "dropped SNMP requests from %s: over %.0f a second", source, self.rate.rate
            )
            return
        direct, transport = self.direct, self.transport
        if (
            direct is not None
            and transport is not None  # None once closing: pysnmp's path decides
            and direct.answer(datagram, lambda reply: transport.sendto(reply, transportAddress))
        ):
            return
        self.loop.call_soon(self._process, transportAddress, datagram)

    def _process(self, address: Any, datagram: bytes) -> None:
        """pysnmp lets some decoder errors (TypeError, IndexError...) escape;
        count and drop such datagrams instead of logging a traceback each."""
        try:
            self._callback_function(self, address, datagram)
        except Exception as exc:
            if self.stats is not None:
                self.stats.bad_datagrams += 1
            self.tally.note(
                "undecodable", "dropped an undecodable SNMP datagram from %s: %s",
                address[0], type(exc).__name__,
            )  # fmt: skip


class AllowlistUdp6(AllowlistUdp):
    SOCK_FAMILY = socket.AF_INET6
    ADDRESS_TYPE = udp6.Udp6TransportAddress


def bind_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise AgentStartError(f"SNMP agent cannot bind udp {address}:{port}: {exc}") from exc
    sock.setblocking(False)
    return sock


class Agent:
    """One SNMP engine answering GET/GETNEXT/GETBULK (and refusing SET)."""

    def __init__(
        self, settings: SnmpSettings, base: tuple[int, ...], ctx: ServeContext, sys_name: str
    ) -> None:
        self.settings = settings
        self.base = base
        self.ctx = ctx
        self.engine_id = engine_id(settings, ctx.gateway_name)
        self.engine = engine.SnmpEngine(rfc1902.OctetString(self.engine_id))
        self._security()
        self._system(sys_name)
        self._bound_responses(settings.max_response_bytes)
        # pysnmp indexes its MIB tree on the first GETNEXT that reaches it
        # (3 ms): here at start-up, not in the first walk's last request
        self.engine.message_dispatcher.mib_instrum_controller.read_next_variables(((1, 3, 6), None))
        self.controller = BtmsController(
            base,
            self.engine.message_dispatcher.mib_instrum_controller,
            ctx,
            lambda previous, changed: build_index(base, ctx, previous, changed),
        )
        snmp_context = context.SnmpContext(self.engine)
        snmp_context.context_names[b""] = self.controller
        self.get = responders.GetResponder(self.engine, snmp_context)
        self.next = responders.NextResponder(self.engine, snmp_context)
        self.bulk = responders.BulkResponder(self.engine, snmp_context)
        self.bulk.max_varbinds = settings.max_bulk_varbinds  # pysnmp's default is 64
        for responder in (self.get, self.next, self.bulk):
            responder.max_response_bytes = settings.max_response_bytes
            responder.fast = settings.fast_path
        responders.SetResponder(self.engine, snmp_context)
        self.direct = (
            DirectReads(
                self.engine,
                self.controller,
                # the octets pysnmp's community table holds (pyasn1's encoding)
                rfc1902.OctetString(settings.community.get_secret_value()).asOctets(),
                COMMUNITY_NAME,
                settings.max_bulk_varbinds,
                settings.max_response_bytes,
            )
            if settings.fast_path and settings.v2c and settings.community is not None
            else None
        )
        ctx.stats.auth_failures = self._auth_failures
        self.transport: AllowlistUdp | None = None
        self.bound: tuple[str, int] | None = None

    def _security(self) -> None:
        e, s = self.engine, self.settings
        config.add_context(e, "")
        for sub in (*READ_SUBTREES, self.base):
            config.add_vacm_view(e, READ_VIEW, "included", sub, "")
        config.add_vacm_view(e, NO_VIEW, "excluded", (1,), "")
        if s.v2c and s.community is not None:
            config.add_v1_system(
                e, COMMUNITY_NAME, s.community.get_secret_value(), securityName=COMMUNITY_NAME
            )
            config.add_vacm_group(e, "btms-v2c", 2, COMMUNITY_NAME)
            config.add_vacm_access(
                e, "btms-v2c", "", 2, "noAuthNoPriv", "exact", READ_VIEW, NO_VIEW, NO_VIEW
            )
        for user in s.users:
            add_user(e, user)
            config.add_vacm_group(e, "btms-v3", 3, user.name)
        if s.users:
            config.add_vacm_access(
                e, "btms-v3", "", 3, "authPriv", "exact", READ_VIEW, NO_VIEW, NO_VIEW
            )

    def _system(self, sys_name: str) -> None:
        builder = self.engine.get_mib_builder()
        syms = builder.import_symbols(
            "__SNMPv2-MIB", "sysDescr", "sysObjectID", "sysContact", "sysName", "sysLocation"
        )
        descr, oid, contact, name, location = syms
        descr.syntax = descr.syntax.clone(f"btms-gateway {__version__}: BTMS battery monitoring")
        oid.syntax = oid.syntax.clone(self.base)
        contact.syntax = contact.syntax.clone(self.settings.sys_contact)
        name.syntax = name.syntax.clone(sys_name)
        location.syntax = location.syntax.clone(self.settings.sys_location)
        (services,) = builder.import_symbols("__SNMPv2-MIB", "sysServices")
        services.syntax = services.syntax.clone(SYS_SERVICES)

    def _bound_responses(self, max_bytes: int) -> None:
        """pysnmp's engine sends no message larger than this (it drops one and
        counts snmpSilentDrops); the responders and the direct path keep every
        response under it (limits.py), so that drop is only a backstop."""
        builder = self.engine.get_mib_builder()
        (max_size,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineMaxMessageSize")
        max_size.syntax = max_size.syntax.clone(max_bytes)

    def _auth_failures(self) -> int:
        b = self.engine.get_mib_builder()
        (bad_community,) = b.import_symbols("__SNMPv2-MIB", "snmpInBadCommunityNames")
        usm = b.import_symbols(
            "__SNMP-USER-BASED-SM-MIB",
            "usmStatsUnknownUserNames",
            "usmStatsWrongDigests",
            "usmStatsDecryptionErrors",
        )
        return int(bad_community.syntax) + sum(int(u.syntax) for u in usm)

    async def start(self, loop: asyncio.AbstractEventLoop) -> tuple[str, int]:
        sock = bind_socket(self.settings.address, self.settings.port)
        cls = AllowlistUdp6 if sock.family == socket.AF_INET6 else AllowlistUdp
        transport = cls(loop=loop)
        s = self.settings
        transport.allowlist = s.managers
        if s.rate_limit_per_s > 0:
            transport.rate = TokenBuckets(s.rate_limit_per_s, s.rate_limit_burst)
        transport.tally = LogTally(log)
        transport.stats = self.ctx.stats
        transport.direct = self.direct
        transport.open_server_mode(sock=sock)
        await transport._lport  # the endpoint exists before startup returns
        domain = udp6.DOMAIN_NAME if cls is AllowlistUdp6 else udp.DOMAIN_NAME
        config.add_transport(self.engine, domain, transport)
        # pysnmp's dispatcher wakes the loop every timer tick (0.1 s by default)
        # for housekeeping a responder does on a scale of minutes (expiring USM
        # time lines and engine info, all converted from seconds through this
        # resolution): ten of the twelve times a second an idle gateway's loop
        # woke, each a wake-up of ~50 us of CPU on a VM. Requests never wait
        # for a tick; the notifier's engine (informs' retries) keeps its own.
        self.engine.transport_dispatcher.set_timer_resolution(TIMER_RESOLUTION_S)
        self.transport = transport
        self.bound = sock.getsockname()[:2]
        community = s.community.get_secret_value() if s.community is not None else None
        if s.v2c and s.allowed_managers and community == "public":
            log.warning(
                "SNMP v2c still uses the demo's default community while managers beyond "
                "loopback are allowed: set [plugins.snmp] community"
            )
        log.info(
            "SNMP agent listening on udp %s:%d, snmpEngineID 0x%s (v3 trap receivers "
            "need it: createUser -e 0x%s ...)",
            *self.bound, self.engine_id.hex(), self.engine_id.hex(),
        )  # fmt: skip
        return self.bound

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.tally.close()
            self.engine.close_dispatcher()
            self.transport = None
