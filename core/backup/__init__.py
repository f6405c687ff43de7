"""Backup and restore of a gateway: its config file, the files it names
(register-override files, TLS certificates and keys) and its data directory
(event log, learned baselines, history, plugin stores), as one checked
archive. See docs/deployment.md."""
