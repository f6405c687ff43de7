"""The pymodbus internals the Modbus plugin relies on (pymodbus_adapter.py, the
one module that touches them) exist with the signatures it expects.

pymodbus does not document these as an API; an upgrade that renames or
reshapes one fails here, by name, instead of somewhere in a server test.
"""

from __future__ import annotations

import inspect
import ssl

import pymodbus
import pytest
from btms_gateway.plugins.modbus_tcp import pymodbus_adapter
from btms_gateway.plugins.modbus_tcp.answer import ServerStats, unit_registers
from btms_gateway.plugins.modbus_tcp.image import ImageStore
from btms_gateway.plugins.modbus_tcp.map import STRING_EXTENTS, UPS_EXTENT
from btms_gateway.plugins.modbus_tcp.pymodbus_adapter import (
    CONNECTION_ATTRIBUTES,
    INTERNALS,
    LISTENER_ATTRIBUTES,
    Connection,
    TcpListener,
    TlsListener,
)
from pymodbus.constants import ExcCodes
from pymodbus.simulator import SimDevice


def test_the_installed_pymodbus_is_the_one_the_adapter_was_written_for() -> None:
    """pyproject pins 3.16.x: a wider pin needs this module re-read first."""
    assert pymodbus.__version__.startswith("3.16."), pymodbus.__version__


@pytest.mark.parametrize(
    ("owner", "name", "params"),
    INTERNALS,
    ids=[f"{owner.__name__}.{name}" for owner, name, _ in INTERNALS],
)
def test_each_internal_exists_with_the_parameters_passed(
    owner: type, name: str, params: tuple[str, ...]
) -> None:
    """The parameters the adapter passes are the function's, in that order
    (others, with defaults, may follow or sit between)."""
    function = getattr(owner, name, None)
    assert callable(function), f"{owner.__name__}.{name} is gone"
    have = list(inspect.signature(function).parameters)
    at = [have.index(p) if p in have else -1 for p in params]
    assert -1 not in at, f"{owner.__name__}.{name}{tuple(have)} lacks some of {params}"
    assert at == sorted(at), f"{owner.__name__}.{name}{tuple(have)}: {params} out of order"


def test_the_exception_codes_the_fast_path_answers_are_pymodbus_own() -> None:
    from btms_gateway.plugins.modbus_tcp.answer import Exc

    for code in Exc:
        assert code.value in {c.value for c in ExcCodes}, code


async def test_a_listener_and_its_connection_have_the_attributes_used() -> None:
    """Made as the plugin makes them (no socket: the attributes exist once built)."""
    stats = ServerStats()
    units = unit_registers([1], [101], ImageStore(), stats, (UPS_EXTENT,), STRING_EXTENTS)

    class Probe(TcpListener):
        def new_connection(self) -> Connection:
            return Connection(self)

    listener = Probe(units, stats, address=("127.0.0.1", 0))
    for attribute in LISTENER_ATTRIBUTES:
        assert hasattr(listener, attribute), attribute
    assert 3 in listener.known_functions and 0x2B in listener.known_functions
    assert listener.connections() == []
    connection = listener.callback_new_connection()
    assert isinstance(connection, Connection)
    for attribute in CONNECTION_ATTRIBUTES:
        assert hasattr(connection, attribute), attribute
    devices = pymodbus_adapter.library_devices(units, stats)
    assert all(isinstance(d, SimDevice) for d in devices)
    assert sorted(d.id for d in devices) == [0, 1, 101]


async def test_the_tls_listener_takes_over_the_context_pymodbus_would_listen_with() -> None:
    """The TLS listener listens as plain TCP (each connection starts TLS once
    admitted): pymodbus keeps the context in ``comm_params.sslctx``."""
    stats = ServerStats()
    units = unit_registers([1], [], ImageStore(), stats, (UPS_EXTENT,), STRING_EXTENTS)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener = TlsListener(units, stats, address=("127.0.0.1", 0), sslctx=ctx)
    assert listener.tls_context is ctx and listener.comm_params.sslctx is None
    await listener.serve_forever(background=True)
    try:
        assert listener.listening and listener.bound_port > 0
    finally:
        await listener.shutdown()
