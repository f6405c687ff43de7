"""The processes a reliability benchmark drives: the simulator runner and
the gateway (``btms-gateway run -c FILE``), plus /proc sampling of CPU and RSS."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
GATEWAY = str(BIN / "btms-gateway")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def to_toml(data: dict[str, Any]) -> str:
    """Just enough TOML for a gateway config (tables, arrays of tables, scalars)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {scalar(x)}" for k, x in v.items()) + "}"
        return json.dumps(str(v))

    out: list[str] = []

    def table(prefix: str, d: dict[str, Any], array: bool = False) -> None:
        out.append(f"[[{prefix}]]" if array else f"[{prefix}]")
        nested = []
        for k, v in d.items():
            if v is None:
                continue
            if isinstance(v, dict) or (
                isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
            ):
                nested.append((k, v))
            else:
                out.append(f"{k} = {scalar(v)}")
        for k, v in nested:
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)
            else:
                for item in v:
                    table(f"{prefix}.{k}", item, array=True)

    for key, value in data.items():
        if isinstance(value, dict):
            table(key, value)
        else:
            for item in value:
                table(key, item, array=True)
    return "\n".join(out) + "\n"


class JsonLines:
    """A child process that answers each JSON line on its stdin with one on
    its stdout, and ends when its stdin closes (so it never outlives the bench)."""

    def __init__(self, command: list[str], what: str, cwd: Path | None = None) -> None:
        self.what = what
        self.proc = subprocess.Popen(
            command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._lock = threading.Lock()

    def read(self) -> Any:
        """The next line, decoded."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.what} ended (exit status {self.proc.poll()})")
        return json.loads(line)

    def call(self, **cmd: Any) -> Any:
        """Send one command; its answer."""
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SimRunner(JsonLines):
    """bench/scale/simrunner.py in a child process; ``call`` sends one command."""

    def __init__(self, spec: list[dict[str, Any]]) -> None:
        fd, path = tempfile.mkstemp(suffix=".json", prefix="btms-simspec-")
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        super().__init__([sys.executable, str(HERE / "simrunner.py"), path], "the simulator runner")
        self.where: dict[str, Any] = self.read()


class GatewayProcess:
    """``btms-gateway run -c FILE`` as a child; ``kill9`` for crash tests.
    ``prefix`` goes before the command (``prlimit --nofile=1024:1024``)."""

    def __init__(self, config: dict[str, Any], workdir: str, prefix: tuple[str, ...] = ()) -> None:
        self.config = config
        self.path = Path(workdir) / "generated.toml"
        self.path.write_text(to_toml(config))
        self.log = open(Path(workdir) / "gateway.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*prefix, GATEWAY, "run", "-c", str(self.path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_http(self, port: int, path: str = "/health/live", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"gateway exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"gateway not serving http://127.0.0.1:{port}{path} in {timeout} s")

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()
        return self.proc.returncode


def cpu_seconds(pid: int, thread: int | None = None, *, kernel_only: bool = False) -> float:
    """utime + stime of ``pid`` (all its threads, those gone included), from
    /proc/PID/stat; of one thread of it with ``thread`` (a TID; the main
    thread's is the PID); stime alone (system calls, scheduling) with
    ``kernel_only``."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (stime if kernel_only else utime + stime) / TICKS


class CpuSplit:
    """The gateway's CPU over a stretch of time, and the part its main thread
    took: the event loop, where every northbound server, the alarms and the
    plugins' hooks run. The rest is the bus threads (acquisition) and the
    plugins' worker threads. Says which side a client's cost lands on."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self._total, self._main = cpu_seconds(pid), cpu_seconds(pid, pid)
        self._kernel = cpu_seconds(pid, kernel_only=True)

    def fractions(self) -> dict[str, float]:
        """Fractions of one core since construction: ``total``, ``loop``,
        ``other`` (the rest) and ``kernel`` (the part of ``total`` in the kernel)."""
        span = time.monotonic() - self.started
        total = (cpu_seconds(self.pid) - self._total) / span
        loop = (cpu_seconds(self.pid, self.pid) - self._main) / span
        kernel = (cpu_seconds(self.pid, kernel_only=True) - self._kernel) / span
        return {"total": total, "loop": loop, "other": total - loop, "kernel": kernel}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per hour (memory growth)."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in samples) / den * 3600


class StealMonitor:
    """CPU time the hypervisor took from this VM (/proc/stat "steal") while the
    bench measured, sampled every ``every`` s in a thread of its own: the
    total, and the worst window, with when it was. On a shared VM the host
    takes a core away in bursts; every process stalls at once then, and the
    worst poll cycles and data ages of a run line up with those bursts."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.windows: list[tuple[float, float, float]] = []  # (at, steal s, all cpu s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steal", daemon=True)

    @staticmethod
    def _read() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]

    def _run(self) -> None:
        before = self._read()
        while not self._stop.wait(self.every):
            now = self._read()
            delta = [a - b for a, b in zip(now, before, strict=True)]
            self.windows.append((time.time(), delta[7] / TICKS, sum(delta) / TICKS))
            before = now

    def start(self) -> StealMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def stolen_s(self, start: float, end: float) -> float:
        """CPU seconds (all cores) the host took between two wall-clock times:
        each sample's steal spread evenly over the ``every`` s before it, so a
        window shorter than a sample gets its share (/proc/stat counts in
        10 ms ticks: a figure under 10 ms is a share of one tick)."""
        total = 0.0
        for at, steal, _all in self.windows:
            overlap = min(end, at) - max(start, at - self.every)
            if overlap > 0:
                total += steal * overlap / self.every
        return total

    def cpu_by_steal(
        self, marks: list[tuple[float, float]], quiet_share: float = 0.01
    ) -> dict[str, tuple[int, float]]:
        """A process's CPU (fraction of a core) over the stretches between
        ``marks`` ((wall time, its CPU seconds so far), taken every few
        seconds), pooled by whether the host took under ``quiet_share`` of
        all CPU time in the stretch: ``{"quiet": (stretches, cpu),
        "stolen": ...}``. Shows, inside one run, what the host's bursts do
        to the figure measured over the whole run."""
        cores = os.cpu_count() or 1
        pooled = {"quiet": [0, 0.0, 0.0], "stolen": [0, 0.0, 0.0]}  # n, cpu s, wall s
        for (t0, c0), (t1, c1) in itertools.pairwise(marks):
            if t1 <= t0:
                continue
            share = self.stolen_s(t0, t1) / (cores * (t1 - t0))
            p = pooled["quiet" if share < quiet_share else "stolen"]
            p[0], p[1], p[2] = p[0] + 1, p[1] + c1 - c0, p[2] + t1 - t0
        return {k: (int(n), c / w if w else math.nan) for k, (n, c, w) in pooled.items()}

    def summary(self) -> dict[str, float]:
        """Steal as a share of all CPU time, and the worst window's share of one core."""
        steal = sum(w[1] for w in self.windows)
        total = sum(w[2] for w in self.windows) or 1.0
        worst = max(self.windows, key=lambda w: w[1], default=(0.0, 0.0, 0.0))
        return {"share": steal / total, "worst_core": worst[1] / self.every, "worst_at": worst[0]}
