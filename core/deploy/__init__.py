"""Running the gateway as a systemd service: the unit file and its install
commands (``btms-gateway service ...``), readiness and watchdog notifications,
and log lines that journald files under the right priority. See
docs/deployment.md."""
