"""Modbus TCP northbound plugin: the BM-GW "v2" compatible map plus every cell,
honest data quality (exception 0x0B for values that are not current) and an
optional Modbus/TCP Security (TLS) listener.

Modules, one job each: ``map`` (the one register table), ``image`` (register
images built from snapshots), ``server`` (pymodbus devices and the hardened
listener), ``service`` (lifecycle), ``settings``, ``export`` (the
``export modbus-map`` command) and ``plugin`` (the hook implementations).
"""
