"""Hostile clients, shared by bench/attack.py (long, against a gateway
process) and the tests' short versions (tests/test_modbus_lockout.py,
test_web_limits.py, test_web_requests.py, test_bacnet_limits.py,
test_snmp_limits.py): one definition of each attack.

127.0.0.0/8 is all loopback on Linux, so an attacker bound to 127.0.0.2 and
up is "another host" without any set-up (``net.attacker``).
"""
