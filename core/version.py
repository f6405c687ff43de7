"""The single source of the gateway's version (read by setuptools and every protocol)."""

__version__ = "0.1.0"
VENDOR = "btms-gateway project"
PRODUCT = "btms-gateway"
