"""Modbus TCP northbound plugin: the BM-GW "v2" compatible map plus every cell,
honest data quality (exception 0x0B for values that are not current) and an
optional Modbus/TCP Security (TLS) listener.

Modules, one job each: ``map`` (the one register table), ``image`` (register
images built from snapshots), ``answer`` (the fast path: the reply to any
request, from the image), ``server`` (the hardened listener),
``pymodbus_adapter`` (everything of pymodbus used at run time: the listener
and the library path), ``service`` (lifecycle), ``settings``, ``export`` (the
``export modbus-map`` command) and ``plugin`` (the hook implementations).
"""
