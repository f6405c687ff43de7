"""`btms-gateway demo` runs simulated strings through the real poller with every
plugin that runs on its defaults, prints the endpoints and a line per poll."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_polls_four_strings_in_two_ups_and_prints_endpoints(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "btms_gateway.core",
            "--log-level",
            "WARNING",
            "demo",
            "--duration",
            "6",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "bus demo-pty" in out and "bus demo-tcp" in out
    assert re.search(r"modbus_tcp\s+host=127\.0\.0\.1 port=5020", out)
    polls = re.findall(r"^\d\d:\d\d:\d\d  (A1|A2|B1|B2)\s+GOOD .* (\d+) cells", out, flags=re.M)
    assert {name for name, _ in polls} == {"A1", "A2", "B1", "B2"}
    assert ("A1", "120") in polls
    assert "Traceback" not in result.stderr
