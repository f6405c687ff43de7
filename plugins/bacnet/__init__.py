"""BACnet/IP northbound plugin: the battery plant as BACnet objects (see docs/bacnet.md)."""
