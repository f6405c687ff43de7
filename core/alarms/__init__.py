"""The alarm engine: rules with hysteresis and delays, a per-cell resistance
baseline, and a crash-safe SQLite event log (see docs/alarms.md)."""
