"""The bench's load generator: raw sockets, no Modbus library, so it costs far
less per request than the servers it measures (bench_modbus.py prints its CPU
share and its ceiling against a server that does no work)."""

from __future__ import annotations

import random
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

UNITS = range(101, 133)
REGISTERS = 12100  # a string unit's extent (cells 1..120 at 100*ci + k)
COUNT = 100
RESPONSE_LEN = 9 + 2 * COUNT


def requests(n: int = 4096, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [
        struct.pack(">HHHBBHH", i % 65536, 0, 6, rng.choice(UNITS), 3,
                    rng.randrange(100, REGISTERS - COUNT + 1), COUNT)
        for i in range(n)
    ]  # fmt: skip


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ns: list[int]
    gen_cpu: float  # generator CPU seconds / wall seconds
    server_cpu_s: float = 0.0  # server process CPU during the measured window

    @property
    def cpu_us(self) -> float:
        """Server CPU per request over the measured window (/proc, 10 ms ticks).
        Far less sensitive than req/s to other load on a shared machine."""
        return 1e6 * self.server_cpu_s / self.requests

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct_ms(self, q: float) -> float:
        lat = sorted(self.latencies_ns)
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6 if lat else float("nan")


def _nop() -> None:
    pass


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def load_1(port: int, seconds: float, warmup: float, on_start: Callable[[], None] = _nop) -> Result:
    """One connection, one request in flight: a blocking send/recv loop."""
    reqs, sock = requests(), _connect(port)
    lat: list[int] = []
    n = errors = 0
    t_end_warm = time.perf_counter() + warmup
    while time.perf_counter() < t_end_warm:
        sock.sendall(reqs[n % len(reqs)])
        _recv_frame(sock)
        n += 1
    n = 0
    on_start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    end = t0 + seconds
    while True:
        start = time.perf_counter_ns()
        sock.sendall(reqs[n % len(reqs)])
        frame = _recv_frame(sock)
        lat.append(time.perf_counter_ns() - start)
        n += 1
        errors += len(frame) != RESPONSE_LEN
        if n % 64 == 0 and time.perf_counter() >= end:
            break
    wall = time.perf_counter() - t0
    sock.close()
    return Result(n, errors, wall, lat, (time.process_time() - cpu0) / wall)


def _recv_frame(sock: socket.socket) -> bytes:
    buf = sock.recv(512)
    while len(buf) < 6 or len(buf) < 6 + (buf[4] << 8 | buf[5]):
        more = sock.recv(512)
        if not more:
            raise ConnectionError("server closed the connection")
        buf += more
    return buf


def load_n(
    port: int, conns: int, seconds: float, warmup: float, on_start: Callable[[], None] = _nop
) -> Result:
    """``conns`` connections, one request in flight each, driven by one epoll loop."""
    reqs = requests()
    socks = [_connect(port) for _ in range(conns)]
    ep = select.epoll()
    state: dict[int, list] = {}  # fd -> [sock, buffer, sent_at_ns]
    for s in socks:
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
        state[s.fileno()] = [s, b"", 0]
    lat: list[int] = []
    n = errors = 0
    k = 0
    measuring = False
    t_warm = time.perf_counter() + warmup
    t0 = cpu0 = end = 0.0
    for st in state.values():
        st[2] = time.perf_counter_ns()
        st[0].send(reqs[k % len(reqs)])
        k += 1
    while True:
        for fd, _ev in ep.poll():
            st = state[fd]
            data = st[0].recv(4096)
            if not data:
                raise ConnectionError("server closed a connection")
            buf = st[1] + data
            if len(buf) < 6 or len(buf) < 6 + (buf[4] << 8 | buf[5]):
                st[1] = buf
                continue
            now = time.perf_counter_ns()
            if measuring:
                lat.append(now - st[2])
                n += 1
                errors += len(buf) != RESPONSE_LEN
            st[1] = b""
            st[2] = now
            st[0].send(reqs[k % len(reqs)])
            k += 1
        if not measuring and time.perf_counter() >= t_warm:
            measuring = True
            on_start()
            cpu0, t0 = time.process_time(), time.perf_counter()
            end = t0 + seconds
        elif measuring and time.perf_counter() >= end:
            break
    wall = time.perf_counter() - t0
    for s in socks:
        s.close()
    ep.close()
    return Result(n, errors, wall, lat, (time.process_time() - cpu0) / wall)
