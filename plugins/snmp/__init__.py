"""The SNMP northbound plugin: a pysnmp agent serving BTMS-GATEWAY-MIB and
sending notifications for alarms and string quality changes.

The MIB text (docs/mib/BTMS-GATEWAY-MIB.txt) and the agent's instrumentation
are both built from :mod:`btms_gateway.plugins.snmp.tables`, so they cannot drift.
"""
