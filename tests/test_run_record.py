"""bench/run_record.py: every bench run leaves one JSON file under bench/results/
(docs/performance.md and docs/reliability.md keep only the latest figures)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import run_record  # bench/, on the path from conftest.py

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_a_run_leaves_its_machine_output_figures_and_exit_code(tmp_path: Path) -> None:
    def main() -> int:
        print("figure  measured")
        run_record.add(cpu_core=0.083, ages={"modbus": float("nan")})
        print("target: MISSED")
        return 1

    code = run_record.recorded("bench_x", main, argv=["--minutes", "1"], directory=tmp_path)
    assert code == 1
    (path,) = tmp_path.iterdir()
    assert re.fullmatch(r"bench_x-\d{8}T\d{6}Z\.json", path.name)
    record = json.loads(path.read_text(), parse_constant=refuse)
    assert record["bench"] == "bench_x" and record["argv"] == ["--minutes", "1"]
    assert record["exit_code"] == 1 and record["ok"] is False
    assert record["figures"] == {"cpu_core": 0.083, "ages": {"modbus": None}}
    assert record["output"] == ["figure  measured", "target: MISSED"]
    assert record["machine"]["cores"] >= 1 and record["machine"]["python"]
    assert record["date"][:10].replace("-", "") == path.name[8:16]


def refuse(constant: str) -> None:
    """NaN and Infinity are Python's extensions; other JSON readers refuse them."""
    raise AssertionError(f"{constant} is not JSON")


def test_a_worker_child_and_an_opt_out_record_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_record.recorded("b", lambda: 0, argv=["--serve", "1"], directory=tmp_path) == 0
    assert run_record.recorded("b", lambda: 0, argv=["--no-record"], directory=tmp_path) == 0
    monkeypatch.setenv(run_record.NO_RECORD, "1")
    assert run_record.recorded("b", lambda: 0, argv=[], directory=tmp_path) == 0
    assert list(tmp_path.iterdir()) == []


def test_figures_of_one_run_do_not_leak_into_the_next(tmp_path: Path) -> None:
    def first() -> int:
        run_record.add(only_first=1)
        return 0

    run_record.recorded("a", first, argv=[], directory=tmp_path)
    run_record.recorded("b", lambda: 0, argv=[], directory=tmp_path)
    (b,) = tmp_path.glob("b-*.json")
    assert json.loads(b.read_text())["figures"] == {}


def test_every_bench_records_its_runs() -> None:
    """A bench that prints figures and keeps none loses its history: the
    reference pages keep only the latest run."""
    own_writers = {"bench_history.py", "history_engines.py", "bench_mqtt.py", "bench_health.py"}
    silent = [
        path.name
        for path in sorted(BENCH.glob("*.py"))
        if 'if __name__ == "__main__":' in (text := path.read_text())
        and "run_record.recorded(" not in text
        and not (path.name in own_writers and "RESULTS = " in text)
    ]
    assert silent == []
