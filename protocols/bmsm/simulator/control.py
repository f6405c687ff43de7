"""Driving a running simulator from another process: start a discharge, force
an alarm. Integrators asked for it: "show me what the SCADA does when the
mains fail" without pulling a breaker.

A small UNIX socket (a path under the demo's temporary folder, or the one
``btms-gateway simulate --control PATH`` names), one JSON request per line,
one JSON answer per line. Only the local user reaches it (the socket file is
0600, in a folder of the user's own); nothing on the network listens.
``btms-gateway simulate-control`` is its client.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import StringModel
from .server import Simulator

#: what a forced alarm sets, by the gateway's rule name: (level, field, how)
#: how: ("set", value) a value; ("times", k) the current value times k;
#: ("plus", d) the current value plus d; ("bit", b) an alarm word bit.
#: The values lie past the gateway's default limits (docs/alarms.md).
FORCINGS: dict[str, tuple[str, str, tuple[str, float]]] = {
    "cell_voltage_high": ("cell", "voltage_v", ("set", 2.45)),
    "cell_voltage_low": ("cell", "voltage_v", ("set", 1.85)),
    "cell_resistance_warning": ("cell", "resistance_mohm", ("times", 1.35)),
    "cell_resistance_alarm": ("cell", "resistance_mohm", ("times", 1.65)),
    "cell_resistance_median_warning": ("cell", "resistance_mohm", ("times", 1.35)),
    "cell_resistance_median_alarm": ("cell", "resistance_mohm", ("times", 1.65)),
    "cell_temperature_high": ("cell", "temperature_c", ("set", 45.0)),
    "cell_temperature_vs_median": ("cell", "temperature_c", ("plus", 8.0)),
    "cell_temperature_vs_ambient": ("cell", "temperature_c", ("plus", 12.0)),
    "cell_soc_low": ("cell", "soc_pct", ("set", 20.0)),
    "cell_soh_low": ("cell", "soh_pct", ("set", 70.0)),
    "string_voltage_high": ("cells", "voltage_v", ("set", 2.42)),
    "string_voltage_low": ("cells", "voltage_v", ("set", 1.84)),
    "string_current_charge_high": ("string", "current_a", ("set", 150.0)),
    "string_current_discharge_high": ("string", "current_a", ("set", -600.0)),
    "string_soc_low": ("string", "soc_pct", ("set", 40.0)),
    "string_comm_lost": ("vanish", "", ("set", 0.0)),
    "string_thermal_runaway": ("runaway", "", ("set", 0.0)),
    "bmsm_current_high_charge": ("string", "alarms", ("bit", 0)),
    "bmsm_current_high_discharge": ("string", "alarms", ("bit", 1)),
    "bmsm_voltage_high": ("string", "alarms", ("bit", 2)),
    "bmsm_voltage_low": ("string", "alarms", ("bit", 3)),
    "bmsm_soc_low": ("string", "alarms", ("bit", 4)),
    "bmsm_soh_low": ("string", "alarms", ("bit", 5)),
    "bmsm_hall_sensor_disconnected": ("string", "alarms", ("bit", 6)),
}


class ControlError(ValueError):
    """A request the simulator cannot carry out; the answer says why."""


@dataclass(frozen=True, slots=True)
class Target:
    sim: Simulator
    slave: int


class Controller:
    """Carries out requests on named strings (the demo's names, or slave ids)."""

    def __init__(self, targets: Mapping[str, Target]) -> None:
        self.targets = dict(targets)
        self._saved: dict[tuple[str, str, int], Any] = {}
        self._lock = threading.Lock()

    def handle(self, req: Mapping[str, Any]) -> dict[str, Any]:
        command = req.get("command")
        handlers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "status": self._status,
            "discharge": self._discharge,
            "stop": self._stop,
            "force-alarm": self._force,
        }
        handler = handlers.get(str(command))
        if handler is None:
            raise ControlError(f"command: one of {', '.join(handlers)}, found {command!r}")
        with self._lock:
            return handler(req)

    def _target(self, req: Mapping[str, Any]) -> tuple[str, Target]:
        name = str(req.get("string", ""))
        target = self.targets.get(name)
        if target is None:
            raise ControlError(f"string: one of {', '.join(self.targets)}, found {name!r}")
        return name, target

    def _status(self, req: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, t in self.targets.items():
            m = t.sim.model(t.slave)
            run = m.run
            out[name] = {
                "slave": t.slave,
                "cells": len(m.cells),
                "weak_cells": sorted(i + 1 for i in m.weak),
                "voltage_v": m.string.get("voltage_v"),
                "current_a": m.string.get("current_a"),
                "discharging": run is not None,
                "elapsed_s": run.elapsed_s if run else None,
                "ah": round(run.ah, 3) if run else None,
            }
        return {"ok": True, "strings": out}

    def _discharge(self, req: Mapping[str, Any]) -> dict[str, Any]:
        name, t = self._target(req)
        try:
            current = float(req["current_a"])
            duration = req.get("duration_s")
            run = t.sim.start_discharge(
                t.slave,
                current,
                duration_s=None if duration is None else float(duration),
                cutoff_v=float(req.get("cutoff_v", 1.75)),
                stop_at_cutoff=bool(req.get("stop_at_cutoff", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"discharge of {name}: {exc}") from None
        until = f"{run.duration_s:g} s" if run.duration_s else "the string's end voltage"
        return {"ok": True, "result": f"{name}: discharging at {current:g} A until {until}"}

    def _stop(self, req: Mapping[str, Any]) -> dict[str, Any]:
        name, t = self._target(req)
        run = t.sim.stop_discharge(t.slave)
        if run is None:
            return {"ok": False, "result": f"{name} is not discharging"}
        return {
            "ok": True,
            "result": f"{name}: discharge stopped after {run.elapsed_s:.0f} s, {run.ah:.2f} Ah",
        }

    def _force(self, req: Mapping[str, Any]) -> dict[str, Any]:
        name, t = self._target(req)
        rule = str(req.get("alarm", ""))
        forcing = FORCINGS.get(rule)
        if forcing is None:
            raise ControlError(f"alarm: one of {', '.join(FORCINGS)}, found {rule!r}")
        level, field, how = forcing
        clear = bool(req.get("clear", False))
        cell = int(req.get("cell") or 1)
        key = (name, rule, cell)
        model = t.sim.model(t.slave)
        if level == "cell" and not 1 <= cell <= len(model.cells):
            raise ControlError(f"cell: 1..{len(model.cells)}, found {cell}")
        if clear:
            if key not in self._saved:
                return {"ok": False, "result": f"{rule} was not forced on {name}"}
            self._restore(t, level, field, cell, self._saved.pop(key))
            return {"ok": True, "result": f"{name}: {rule} no longer forced"}
        if key in self._saved:
            return {"ok": True, "result": f"{name}: {rule} already forced"}
        self._saved[key] = self._apply(t, model, level, field, how, cell)
        where = f" cell {cell}" if level == "cell" else ""
        return {"ok": True, "result": f"{name}{where}: {rule} forced"}

    @staticmethod
    def _apply(
        t: Target, model: StringModel, level: str, field: str, how: tuple[str, float], cell: int
    ) -> Any:
        """Change the truth; returns what to put back on clear."""
        op, x = how
        if level == "vanish":
            t.sim.vanish(t.slave)
            return None
        if level == "runaway":
            t.sim.set_runaway(t.slave, cell)
            return None
        if level == "cell":
            old = getattr(model.cells[cell - 1], field)
            t.sim.set_cell(t.slave, cell, **{field: _new(old, op, x)})
            return old
        if level == "cells":
            old = [getattr(c, field) for c in model.cells]
            for i, v in enumerate(old, start=1):
                t.sim.set_cell(t.slave, i, **{field: _new(v, op, x)})
            return old
        old = model.string[field]
        value = old | (1 << int(x)) if op == "bit" else _new(old, op, x)
        t.sim.set_string(t.slave, **{field: value})
        return old

    @staticmethod
    def _restore(t: Target, level: str, field: str, cell: int, old: Any) -> None:
        if level == "vanish":
            t.sim.restore(t.slave)
        elif level == "runaway":
            t.sim.set_runaway(t.slave, None)
        elif level == "cell":
            t.sim.set_cell(t.slave, cell, **{field: old})
        elif level == "cells":
            for i, v in enumerate(old, start=1):
                t.sim.set_cell(t.slave, i, **{field: v})
        else:
            t.sim.set_string(t.slave, **{field: old})


def _new(old: float, op: str, x: float) -> float:
    if op == "times":
        return round(old * x, 3)
    if op == "plus":
        return round(old + x, 3)
    return x


class ControlServer:
    """The UNIX socket a running simulator (or demo) is driven through."""

    def __init__(self, path: str | Path, targets: Mapping[str, Target]) -> None:
        self.path = Path(path)
        self.controller = Controller(targets)
        controller = self.controller

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    try:
                        req = json.loads(line)
                        if not isinstance(req, dict):
                            raise ControlError("a JSON object per line")
                        answer = controller.handle(req)
                    except (ControlError, json.JSONDecodeError) as exc:
                        answer = {"ok": False, "error": str(exc)}
                    self.wfile.write(json.dumps(answer).encode() + b"\n")

        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        finally:
            os.umask(old)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="simulator-control", daemon=True
        )

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: str | Path, req: Mapping[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Send one request to a control socket and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(path))
        s.sendall(json.dumps(dict(req)).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer: dict[str, Any] = json.loads(buf or b"{}")
    return answer
