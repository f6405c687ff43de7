"""btms-gateway's kit: what sits above core and knows a protocol.

The ``demo`` command (simulated strings through the real RTU link), the plugin
test kit (``GatewayHarness``, reading factories) and synthetic plants for
tests and benchmarks. Core never imports this package; the kit reaches the
command line through its own plugin (``kit/plugin.py``), like any plugin.
"""
