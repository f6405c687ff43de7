"""Everything of pymodbus the plugin uses at run time, and nothing else does.

pymodbus (3.16.x, pinned in pyproject) gives the listener: its TCP/TLS
servers accept connections and hand each one a ``ServerRequestHandler``;
with ``fast_path = false`` it also decodes and answers every request (its
decoder, request handling and ``SimCore`` datastore, with one ``SimDevice``
per unit id whose action is :class:`UnitAction`). That library path is the
reference the fast path (answer.py) is proven against.

The internals this relies on, which pymodbus does not document as an API,
are all used in this module and listed in :data:`INTERNALS`;
tests/test_modbus_adapter.py asserts each exists with the signature
expected, so a pymodbus upgrade that moves one fails there, by name, before
anything else does:

- ``ServerRequestHandler(owner, trace_packet, trace_pdu, trace_connect)``,
  the per-connection protocol a listener's ``callback_new_connection``
  returns: :class:`Connection` subclasses it and keeps its ``transport``,
  ``loop`` and ``close()``;
- ``TransactionManager.callback_data`` (frame -> ``last_pdu``, or
  ``ModbusIOException`` for a PDU it cannot decode), ``handle_request`` and
  ``server_send``: :meth:`Connection.decode` and :meth:`Connection.answer`;
- the servers' ``init_setup_connect_listen``, ``comm_params.sslctx``,
  ``active_connections``, ``decoder.list_function_codes()`` and
  ``transport``: :class:`Listener`;
- ``SimCore``'s action hook ``action(function_code, start_address, address,
  count, registers, values)``: :class:`UnitAction`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.logging import Log
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.transaction import TransactionManager

from .answer import IDENTITY, READ_FUNCTIONS, Exc, ServerStats, UnitRegisters

#: (class, method, the parameters this module passes, in order) the version test checks
INTERNALS: list[tuple[type, str, tuple[str, ...]]] = [
    (
        ServerRequestHandler,
        "__init__",
        ("self", "owner", "trace_packet", "trace_pdu", "trace_connect"),
    ),
    (ServerRequestHandler, "handle_request", ("self",)),
    (ServerRequestHandler, "server_send", ("self", "pdu", "addr")),
    (ServerRequestHandler, "close", ("self", "reconnect")),
    (TransactionManager, "callback_data", ("self", "data", "addr")),
    (ModbusTcpServer, "callback_new_connection", ("self",)),
    (ModbusTlsServer, "init_setup_connect_listen", ("self", "host", "port")),
    (ModbusTcpServer, "serve_forever", ("self", "background")),
    (ModbusTcpServer, "shutdown", ("self",)),
    (
        ModbusIOException,
        "__init__",
        ("self", "string", "function_code", "transaction_id", "dev_id"),
    ),
    (
        ExceptionResponse,
        "__init__",
        ("self", "function_code", "exception_code", "device_id", "transaction"),
    ),
    (SimDevice, "__init__", ("self", "id", "simdata", "use_bit_addressing", "identity", "action")),
    (SimData, "__init__", ("self", "address", "count", "values", "datatype")),
    (ModbusDeviceIdentification, "__init__", ("self", "info", "info_name")),
    (Log, "transport_dump", ("data_type", "data", "old_data")),
]
#: attributes a pymodbus connection and listener have once made, used here
CONNECTION_ATTRIBUTES = ("transport", "loop", "last_pdu", "last_addr", "server")
LISTENER_ATTRIBUTES = ("decoder", "active_connections", "transport", "comm_params", "context")

PYMODBUS_LOG = logging.getLogger("pymodbus.logging")  # pymodbus's Log._logger


class UnitAction:
    """A configured unit id's ``SimDevice`` action on the library path: pymodbus
    has answered 02 outside the unit's blocks; reads get the image's registers
    (:meth:`UnitRegisters.read`, the fast path's decision), anything else 01."""

    def __init__(self, registers: UnitRegisters) -> None:
        self.registers = registers

    async def __call__(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: Any,
    ) -> ExcCodes | None:
        stats = self.registers.stats
        if values is not None or function_code not in READ_FUNCTIONS:
            stats.requests += 1
            stats.refused_function += 1
            return ExcCodes.ILLEGAL_FUNCTION
        got = self.registers.read(address, count)
        if isinstance(got, Exc):
            return ExcCodes(int(got))
        offset = address - start_address
        registers[offset : offset + count] = [
            got[i] << 8 | got[i + 1] for i in range(0, len(got), 2)
        ]
        return None


class UnknownUnitAction:
    """Device id 0 in pymodbus means "every id not defined": path unavailable."""

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats

    async def __call__(self, *_args: Any) -> ExcCodes:
        self.stats.requests += 1
        self.stats.unknown_unit += 1
        return ExcCodes.GATEWAY_PATH_UNAVIABLE


def _blocks(extents: tuple[tuple[int, int], ...]) -> list[SimData]:
    return [
        SimData(start, count=end - start, values=0, datatype=DataType.REGISTERS)
        for start, end in extents
    ]


def library_devices(units: Mapping[int, UnitRegisters], stats: ServerStats) -> list[SimDevice]:
    """One SimDevice per configured unit id (blocks from its extents, so
    pymodbus answers 02 outside them) plus the catch-all id 0."""
    devices = [
        SimDevice(u, simdata=_blocks(r.extents.spans), action=UnitAction(r).__call__)
        for u, r in units.items()
    ]
    devices.append(
        SimDevice(0, simdata=_blocks(((0, 65535),)), action=UnknownUnitAction(stats).__call__)
    )
    return devices


def identity() -> ModbusDeviceIdentification:
    """FC 0x2B/0x0E answers on the library path: answer.IDENTITY."""
    return ModbusDeviceIdentification(info=dict(IDENTITY))


class Undecodable(Exception):
    """pymodbus's decoder refused a PDU: answer ``code`` (03; 01: a function it does not know)."""

    def __init__(self, code: Exc, unit: int, tid: int) -> None:
        super().__init__(code)
        self.code, self.unit, self.tid = code, unit, tid


class Connection(ServerRequestHandler):
    """pymodbus's per-connection protocol, reduced to what the guarded handler
    needs: ``transport``, ``loop``, ``close()``, ``connection_made`` and
    ``connection_lost`` (which register and release it with its listener),
    and on the library path :meth:`decode`, :meth:`answer` and :meth:`refuse`."""

    def __init__(self, owner: Any) -> None:
        super().__init__(owner, None, None, None)
        self.listener_server = owner

    def decode(self, frame: bytes) -> Any:
        """One whole MBAP frame, decoded by pymodbus, or :class:`Undecodable`."""
        answering = self.last_pdu  # decoding sets last_pdu: keep the one being answered
        try:
            TransactionManager.callback_data(self, frame, None)
            return self.last_pdu
        except ModbusIOException as exc:
            known = (frame[7] & 0x7F) in self.listener_server.known_functions
            code = Exc.ILLEGAL_VALUE if known else Exc.ILLEGAL_FUNCTION
            raise Undecodable(code, exc.dev_id, exc.transaction_id) from exc
        finally:
            self.last_pdu = answering

    async def answer(self, request: Any) -> None:
        """pymodbus's request handling and send path for a decoded request."""
        self.last_pdu, self.last_addr = request, None
        await self.handle_request()

    def refuse(self, function_code: int, code: Exc, unit: int, tid: int) -> None:
        """An exception answer through pymodbus's send path."""
        self.server_send(
            ExceptionResponse(
                function_code & 0x7F, exception_code=ExcCodes(int(code)), device_id=unit,
                transaction=tid,
            ),
            None,
        )  # fmt: skip

    def send(self, data: bytes, addr: tuple | None = None) -> None:
        """pymodbus's send also empties its receive buffer (right for a client);
        the guarded handler keeps its own, so only the write is wanted."""
        if PYMODBUS_LOG.isEnabledFor(logging.DEBUG):
            Log.transport_dump(Log.SEND_DATA, data, None)
        if self.transport:
            # pymodbus types it a BaseTransport; a connection's is a stream (write) transport
            cast(asyncio.WriteTransport, self.transport).write(data)

    @staticmethod
    def dump_received(data: bytes, buffered: bytes) -> None:
        """pymodbus's frame log, when its logger is at DEBUG."""
        if PYMODBUS_LOG.isEnabledFor(logging.DEBUG):
            Log.transport_dump(Log.RECV_DATA, data, buffered)


class Listener:
    """Mixin for pymodbus's servers: connections from :meth:`new_connection`,
    the bound port, the open connections, and (TLS) a plain TCP listener whose
    connections each start TLS themselves (``tls_context``). The attributes it
    reads (``decoder``, ``active_connections``, ``transport``) are those of the
    pymodbus server it is mixed into, declared here for the type checker."""

    #: TLS is started by each connection once admitted (TLS listener)
    tls_context: ssl.SSLContext | None = None

    if TYPE_CHECKING:  # the pymodbus server's (ModbusTcpServer, ModbusTlsServer)
        decoder: Any
        active_connections: dict[str, Any]
        transport: Any

    def new_connection(self) -> Connection:
        raise NotImplementedError

    def callback_new_connection(self) -> Connection:
        return self.new_connection()

    @property
    def known_functions(self) -> frozenset[int]:
        return frozenset(self.decoder.list_function_codes())

    def connections(self) -> list[Any]:
        return list(self.active_connections.values())

    @property
    def listening(self) -> bool:
        return self.transport is not None

    @property
    def bound_port(self) -> int:
        return int(self.transport.sockets[0].getsockname()[1])


class TcpListener(Listener, ModbusTcpServer):
    def __init__(
        self, units: Mapping[int, UnitRegisters], stats: ServerStats, **kwargs: Any
    ) -> None:
        super().__init__(library_devices(units, stats), identity=identity(), **kwargs)


class TlsListener(Listener, ModbusTlsServer):
    """See server.GatewayTlsServer: the socket listens as plain TCP."""

    def __init__(
        self, units: Mapping[int, UnitRegisters], stats: ServerStats, **kwargs: Any
    ) -> None:
        super().__init__(library_devices(units, stats), identity=identity(), **kwargs)

    def init_setup_connect_listen(self, host: str, port: int) -> None:
        """pymodbus's listener without ``ssl=``: see the class docstring."""
        self.tls_context = self.comm_params.sslctx
        self.comm_params.sslctx = None
        super().init_setup_connect_listen(host, port)
