"""The latest-snapshot store: one immutable PlantSnapshot, swapped whole.

Updating one string rebuilds the plant snapshot by copying references (32
strings) and re-aggregating only that string's UPS, so the engine can publish
after every poll. Readers never lock: they take ``store.snapshot`` and keep a
consistent view for as long as they hold it.
"""

from __future__ import annotations

import time

from .aggregate import aggregate_ups
from .config import GatewayConfig, index_of
from .model import PlantSnapshot, Quality, StringSnapshot


class SnapshotStore:
    def __init__(self, strings: list[StringSnapshot], ups_order: list[tuple[str, int]]) -> None:
        by_name = {s.name: s for s in sorted(strings, key=lambda s: s.index)}
        self._members: dict[str, list[str]] = {name: [] for name, _ in ups_order}
        for s in by_name.values():
            if s.ups is not None:
                self._members[s.ups].append(s.name)
        ups = {
            name: aggregate_ups(name, idx, (by_name[m] for m in self._members[name]))
            for name, idx in ups_order
        }
        self._snapshot = PlantSnapshot(strings=by_name, ups=ups)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> SnapshotStore:
        """Every configured string starts OFFLINE with no values: nothing is
        served until it has really been read."""
        now = time.time()
        ups_index = {u.name: index_of(u) for u in config.ups}
        strings = [
            StringSnapshot(
                name=s.name,
                index=index_of(s),
                ups=s.ups,
                ups_index=ups_index.get(s.ups, 0) if s.ups else 0,
                slave_id=s.slave_id,
                bus=s.bus,
                quality=Quality.OFFLINE,
                reading=None,
                changed_at=now,
            )
            for s in config.strings
        ]
        return cls(strings, [(u.name, index_of(u)) for u in config.ups])

    @property
    def snapshot(self) -> PlantSnapshot:
        return self._snapshot

    def string(self, name: str) -> StringSnapshot:
        return self._snapshot.strings[name]

    def publish(self, string: StringSnapshot) -> PlantSnapshot:
        """Replace one string and return the new plant snapshot."""
        old = self._snapshot
        strings = dict(old.strings)
        strings[string.name] = string
        ups = old.ups
        if string.ups is not None:
            ups = dict(old.ups)
            members = (strings[m] for m in self._members[string.ups])
            ups[string.ups] = aggregate_ups(string.ups, old.ups[string.ups].index, members)
        self._snapshot = PlantSnapshot(strings=strings, ups=ups)
        return self._snapshot
