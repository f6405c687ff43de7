"""Southbound device profiles (BM-SM and transports)."""
