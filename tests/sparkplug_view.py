"""What a Sparkplug host application knows after a run, rebuilt from the
messages pysparkplug decoded (tests/peers/sparkplug_host.py), and the checks
a host makes: seq continuity per session, bdSeq pairing, values against the
simulator's truth. Independent of the plugin's code: the metric names are
written out here as docs/mqtt.md gives them."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

#: Sparkplug metric name -> StringReading field (docs/mqtt.md)
STRING_METRICS = {
    "Voltage": "voltage_v",
    "Current": "current_a",
    "SOC": "soc_pct",
    "Balance": "balance_pct",
    "Cell Count": "cell_count",
    "Ambient Temperature": "ambient_temperature_c",
    "Ambient Humidity": "ambient_humidity_pct",
    "Relay Closed": "relay_closed",
    "Aux Input": "aux_input_on",
}
CELL_METRICS = {
    "Voltage": "voltage_v",
    "Resistance": "resistance_mohm",
    "Temperature": "temperature_c",
    "SOC": "soc_pct",
    "SOH": "soh_pct",
}


def f32(x: float) -> float:
    """What a Sparkplug Float carries of ``x``."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


@dataclass
class Session:
    bdseq: int
    seqs: list[int] = field(default_factory=list)
    ended_by: int | None = None  # the bdSeq of the NDEATH that ended it


@dataclass
class HostView:
    node: str
    sessions: list[Session] = field(default_factory=list)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> metric -> value
    alive: dict[str, bool] = field(default_factory=dict)
    historical: list[tuple[str, str, int, Any]] = field(default_factory=list)
    values_seen: list[tuple[str, str, int, Any, bool]] = field(default_factory=list)
    births: dict[str, int] = field(default_factory=dict)
    deaths: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, messages: list[dict[str, Any]], node: str) -> HostView:
        view = cls(node)
        for m in messages:
            if m.get("node") == node:
                view.apply(m)
        return view

    def apply(self, m: dict[str, Any]) -> None:
        if "error" in m:
            self.errors.append(f"{m['topic']}: {m['error']}")
            return
        kind, device = m["type"], m.get("device")
        metrics = {x["name"]: x for x in m.get("metrics", [])}
        if kind == "NBIRTH":
            self.sessions.append(Session(int(metrics["bdSeq"]["value"]), [m["seq"]]))
            self.alive = dict.fromkeys(self.alive, False)
            return
        if kind == "NDEATH":
            if self.sessions:
                self.sessions[-1].ended_by = int(metrics["bdSeq"]["value"])
            self.alive = dict.fromkeys(self.alive, False)
            return
        if not self.sessions:
            self.errors.append(f"{kind} {device} before any NBIRTH")
            return
        self.sessions[-1].seqs.append(m["seq"])
        if kind == "DBIRTH":
            self.births[device] = self.births.get(device, 0) + 1
            self.alive[device] = True
            self.live[device] = {}
        elif kind == "DDEATH":
            self.deaths[device] = self.deaths.get(device, 0) + 1
            self.alive[device] = False
            return
        elif not self.alive.get(device):
            self.errors.append(f"{kind} for {device}, which is not alive (seq {m['seq']})")
        for name, x in metrics.items():
            value = None if x["is_null"] else x["value"]
            self.values_seen.append((device, name, x["timestamp"], value, x["is_historical"]))
            if x["is_historical"]:
                self.historical.append((device, name, x["timestamp"], value))
            else:
                self.live.setdefault(device, {})[name] = value

    def seq_problems(self) -> list[str]:
        """Every session: NBIRTH seq 0, then +1 mod 256 per message; bdSeq
        of its NDEATH (if one came) equal to its NBIRTH's; each new session's
        bdSeq one more than the one before (mod 256), or the same for a
        rebirth (a new NBIRTH without an NDEATH before it)."""
        bad = list(self.errors)
        for i, s in enumerate(self.sessions):
            if s.seqs[0] != 0:
                bad.append(f"session {i}: NBIRTH seq {s.seqs[0]}")
            for a, b in zip(s.seqs, s.seqs[1:], strict=False):
                if b != (a + 1) % 256:
                    bad.append(f"session {i}: seq {a} then {b}")
            if s.ended_by is not None and s.ended_by != s.bdseq:
                bad.append(f"session {i}: NDEATH bdSeq {s.ended_by} for NBIRTH bdSeq {s.bdseq}")
            if i:
                prev = self.sessions[i - 1]
                rebirth = s.bdseq == prev.bdseq and prev.ended_by is None
                if not rebirth and s.bdseq != (prev.bdseq + 1) % 256:
                    bad.append(f"session {i}: bdSeq {s.bdseq} after {prev.bdseq}")
        return bad

    def mismatches(self, device: str, expected: Any) -> list[str]:
        """Every live metric of ``device`` against a StringReading (the
        simulator's truth)."""
        got = self.live.get(device, {})
        bad = []
        for name, attr in STRING_METRICS.items():
            want = getattr(expected, attr)
            if isinstance(want, float):
                want = f32(want)
            if got.get(name) != want:
                bad.append(f"{device} {name}: {got.get(name)!r} != {want!r}")
        for c in expected.cells:
            for name, attr in CELL_METRICS.items():
                want = getattr(c, attr)
                key = f"Cells/{c.index:03d}/{name}"
                if isinstance(want, float):
                    want = f32(want)
                if got.get(key) != want:
                    bad.append(f"{device} {key}: {got.get(key)!r} != {want!r}")
            key = f"Cells/{c.index:03d}/Status"
            if got.get(key) != int(c.status):
                bad.append(f"{device} {key}: {got.get(key)!r} != {int(c.status)}")
        return bad
