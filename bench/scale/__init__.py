"""Helpers shared by the reliability benchmarks (bench/scale.py, bench/soak.py,
bench/fuzz_northbound.py, bench/crash.py) and their short versions in tests/.

The gateway runs as its own process (``btms-gateway run -c FILE``) and the
simulators in another one, so the gateway's CPU and memory are measured alone.
"""
