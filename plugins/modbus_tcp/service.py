"""One running Modbus TCP service: image store, listeners, idle sweeper.

Created in ``startup`` on the gateway's event loop. Readings and alarms
mark images out of date; a request builds the image it reads when it is out
of date (image.py), so nothing is built for data no client asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

from btms_gateway.core.api import ActiveAlarms, Gateway, PlantSnapshot, StringSnapshot, table_of

from .answer import ServerStats, unit_registers
from .image import AlarmSummary, ImageStore
from .map import RegisterMap, string_unit, ups_unit
from .pymodbus_adapter import PYMODBUS_LOG
from .server import GatewayTcpServer, GatewayTlsServer, Guard
from .settings import ModbusTcpSettings, TlsSettings

log = logging.getLogger("btms_gateway.plugins.modbus_tcp")


class BindFailure(logging.Filter):
    """pymodbus logs why a listener could not start ("address already in use")
    as a warning, then raises a RuntimeError that does not say. Kept here, the
    cause goes into the start-up error, the one line an operator reads."""

    PREFIX = "Failed to start server "

    def __init__(self) -> None:
        super().__init__()
        self.cause: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        self.cause = message.removeprefix(self.PREFIX)
        return False


class QuietDecodeErrors(logging.Filter):
    """pymodbus logs every undecodable frame; the server counts them instead
    (ServerStats.malformed_pdu) and logs a rate-limited note, so a flood of
    junk cannot flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable to decode frame")


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """TLS 1.2+ server context; with require_client_cert, a client must present
    a certificate signed by ``cafile`` (Modbus/TCP Security's mutual auth)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.certfile), str(tls.keyfile))
    if tls.cafile is not None:
        ctx.load_verify_locations(cafile=str(tls.cafile))
    if tls.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif tls.cafile is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class ModbusService:
    def __init__(self, settings: ModbusTcpSettings, gateway: Gateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self.stats = ServerStats()
        self.store = ImageStore(
            high_first=settings.high_word_first,
            honest=settings.stale_behaviour == "exception",
            rmap=RegisterMap(table_of(gateway)),
        )
        self.guard = Guard.from_settings(settings, self.stats)
        self.tcp: GatewayTcpServer | None = None
        self.tls: GatewayTlsServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._quiet = QuietDecodeErrors()
        #: the newest plant the hooks delivered (the store's at start): an alarm
        #: marks images from it, never from a newer store snapshot whose readings
        #: are still on their way, so no image steps back when they arrive
        self.plant: PlantSnapshot = gateway.store.snapshot
        #: the last delivered active tuple and plant, and their summary
        self._summarized: tuple[ActiveAlarms, PlantSnapshot, AlarmSummary] | None = None

    # --- image -------------------------------------------------------------------
    def rebuild(self) -> None:
        """Every image from the plant and the alarms active now (at start; then
        each alarm event brings the active alarms after its commit)."""
        try:
            alarms = AlarmSummary.of(self.gateway.alarms.active(), self.plant)
        except Exception:  # the alarm engine's trouble must not stop serving values
            log.exception("could not read active alarms")
            alarms = self.store.alarms
        self.store.rebuild_all(self.plant, alarms)

    def on_reading(self, string: StringSnapshot, plant: PlantSnapshot) -> None:
        """The plugin channel delivers plants in time order (docs/plugin_hooks.md)."""
        self.plant = plant
        self.store.update_string(string, plant)

    def on_alarm(self, active: ActiveAlarms) -> None:
        """``active``: the alarms active after an event's commit, as delivered
        (one tuple for every event of a commit: summarized once)."""
        plant = self.plant
        last = self._summarized
        if last is None or last[0] is not active or last[1] is not plant:
            last = self._summarized = (active, plant, AlarmSummary.of(active, plant))
            self.store.update_alarms(last[2], plant)

    # --- listeners ---------------------------------------------------------------
    async def start(self) -> None:
        """Listen on every configured port, or close what was opened and raise:
        the gateway then refuses to start rather than run half-served."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        plant = self.plant
        self.rebuild()
        PYMODBUS_LOG.addFilter(self._quiet)
        ups_units = [ups_unit(u.index) for u in plant.ups.values()]
        string_units = [string_unit(s.index) for s in plant.strings.values()]
        s = self.settings
        units = unit_registers(
            ups_units,
            string_units,
            self.store,
            self.stats,
            (self.store.rmap.ups_extent,),
            self.store.rmap.string_extents,
        )
        self.tcp = GatewayTcpServer(
            units, self.guard, fast_path=s.fast_path, address=(s.host, s.port)
        )
        await self._listen(self.tcp, s.host, s.port)
        if s.tls.enabled:
            host = s.tls.host or s.host
            self.tls = GatewayTlsServer(
                units,
                self.guard,
                fast_path=s.fast_path,
                address=(host, s.tls.port),
                sslctx=tls_context(s.tls),
            )
            await self._listen(self.tls, host, s.tls.port)
        if s.idle_timeout_s is not None:
            self._sweeper = asyncio.create_task(self._sweep(s.idle_timeout_s), name="modbus-idle")

    async def _listen(self, server: Any, host: str, port: int) -> None:
        failure = BindFailure()
        PYMODBUS_LOG.addFilter(failure)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            cause = failure.cause or str(exc)
            raise RuntimeError(f"cannot listen on {host}:{port}: {cause}") from exc
        finally:
            PYMODBUS_LOG.removeFilter(failure)
        log.info("serving on %s:%d", host, server.bound_port)

    async def _sweep(self, idle_s: float) -> None:
        """Close connections silent for idle_s: one pass every idle_s/4 (at most
        1 s), so a request costs a timestamp, not a timer reschedule."""
        period = min(1.0, idle_s / 4)
        failed = False
        while True:
            await asyncio.sleep(period)
            try:
                self._close_idle(time.monotonic() - idle_s)
            except Exception:  # a dead sweeper would leak connection slots for good
                if not failed:
                    log.exception("idle sweep failed; going on")
                failed = True

    def _close_idle(self, limit: float) -> None:
        for server in (self.tcp, self.tls):
            if server is None:
                continue
            for handler in server.handlers():
                if handler.admitted and handler.last_seen < limit:
                    self.stats.idle_closed += 1
                    handler.drop()

    @property
    def port(self) -> int:
        assert self.tcp is not None
        return self.tcp.bound_port

    @property
    def tls_port(self) -> int:
        assert self.tls is not None
        return self.tls.bound_port

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        served = False
        for server in (self.tcp, self.tls):
            if server is not None and server.listening:
                served = True
                await server.shutdown()
        PYMODBUS_LOG.removeFilter(self._quiet)
        if served:  # after a failed start, the start-up error is the one line
            log.info("stopped; %s", self.stats)
