"""The in-process figure of bench_modbus.py: one connection's handler fed
request frames with no sockets, so what a request costs in the framer,
decoder, datastore, encoder and asyncio scheduling shows without the system
calls. Its own module to keep bench_modbus.py short; the servers it measures
are built by bench_modbus.py, which passes in the functions that build them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from loadgen import REGISTERS, UNITS

INPROC_REQUESTS = 10_000
INPROC_COUNT = 125  # registers per request: the most FC 03 allows, what a SCADA scan uses


class _Wire:
    """The transport a handler writes its answers to: resolves the waiting future."""

    answered: asyncio.Future[bytes]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.answered.set_result(data)

    def abort(self) -> None:
        pass

    close = abort


async def _per_request_us(handler: Any, wire: _Wire, frames: list[bytes]) -> float:
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    for frame in frames:
        wire.answered = loop.create_future()
        handler.data_received(frame)
        answer = await wire.answered
        if len(answer) != 9 + 2 * INPROC_COUNT:
            raise RuntimeError(f"in-process case answered {answer!r}")
    return 1e6 * (time.perf_counter() - t0) / len(frames)


async def inprocess_us(
    n: int,
    rounds: int,
    plugin_service: Callable[[int], Any],
    bare_devices: Callable[[], list[Any]],
    only_plugin: bool = False,
) -> dict[str, float]:
    """Microseconds per 125-register FC 03 request through one connection's handler
    (framer, decoder, datastore, encoder, asyncio scheduling; no socket calls):
    the plugin (its fast path), the plugin's library path (``fast_path = false``:
    pymodbus's request handling, SimCore datastore and send path), and bare
    pymodbus. Cases alternate; best of ``rounds``.
    ``plugin_service(port)`` builds the plugin's service, ``bare_devices()`` the
    bare server's devices (bench_modbus.py's, the servers its wire cases run)."""
    import random
    import struct

    from pymodbus.server import ModbusTcpServer

    rng = random.Random(2)
    frames = [
        struct.pack(">HHHBBHH", i % 65536, 0, 6, rng.choice(UNITS), 3,
                    rng.randrange(100, REGISTERS - INPROC_COUNT + 1), INPROC_COUNT)
        for i in range(n)
    ]  # fmt: skip
    svc = plugin_service(0)
    await svc.start()
    fast = svc.tcp.answerer
    bare = ModbusTcpServer(bare_devices(), address=("127.0.0.1", 0))
    cases: dict[str, tuple[Any, Any]] = {}  # name -> (server, its fast path or None)
    cases["plugin"] = (svc.tcp, fast)
    if not only_plugin:
        cases["plugin, library path"] = (svc.tcp, None)
        cases["bare pymodbus"] = (bare, None)
    best = dict.fromkeys(cases, float("inf"))
    try:
        for _ in range(rounds):
            for name, (server, answerer) in cases.items():
                if server is svc.tcp:  # read when the connection is made
                    server.answerer = answerer
                wire = _Wire()
                handler = server.callback_new_connection()
                handler.connection_made(wire)
                best[name] = min(best[name], await _per_request_us(handler, wire, frames))
                handler.connection_lost(None)
    finally:
        svc.tcp.answerer = fast
        await svc.stop()
    return best


def report_inprocess(
    n: int,
    rounds: int,
    plugin_service: Callable[[int], Any],
    bare_devices: Callable[[], list[Any]],
) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    best = asyncio.run(inprocess_us(n, rounds, plugin_service, bare_devices))
    print(f"\nin process, one handler, no sockets: {INPROC_COUNT}-register FC 03 reads, "
          f"best of {rounds} x {n:,}")  # fmt: skip
    print(f"  {'case':<36} {'us/req':>7} {'x plugin':>8}")
    for name, us in best.items():
        print(f"  {name:<36} {us:>7.1f} {us / best['plugin']:>8.2f}")
