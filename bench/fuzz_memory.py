"""Hostile input and memory: does an attack leave objects behind, or only RSS?

bench/fuzz_northbound.py shows the gateway's RSS rising through its HTTP
phases. This runs the same attack (``fuzz_protocol``: random and mutated
frames, slow drips, a flood past the limit) against one plugin inside this
process (GatewayHarness, no device), several passes, and after each pass
counts what Python holds (allocated blocks, live objects, tasks) next to the
RSS before and after glibc's ``malloc_trim(0)``. Objects that stay flat
while the RSS rises mean the C allocator keeps freed buffers, not a leak.

Target: Python's allocated blocks after the last pass within 5 % of after
the first (a leak of one 100-byte object per input crosses it in a pass).

    python bench/fuzz_memory.py --protocol http --passes 6 --count 10000
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_northbound
import run_record
from scale.procs import free_port, rss_mb

BLOCKS_GROWTH_LIMIT = 0.05
SECTIONS = {"http": "web", "modbus": "modbus_tcp"}


class NoChecks:
    """fuzz_protocol's well-behaved client: memory is the question here."""

    def check(self, proto: str) -> bool:
        return True


def trim() -> None:
    with_trim = getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    if with_trim is not None:
        with_trim(0)


async def passes(protocol: str, rounds: int, count: int, seed: int) -> list[dict[str, Any]]:
    from btms_gateway.kit.testing import GatewayHarness, plant_config

    port = free_port()
    config = plant_config(4, 2, plugins={SECTIONS[protocol]: {"port": port}})
    rng, out = random.Random(seed), []
    async with GatewayHarness(config):
        for _ in range(rounds):
            await asyncio.to_thread(
                fuzz_northbound.fuzz_protocol, protocol, port, NoChecks(), count, 1000, 600, rng
            )
            await asyncio.sleep(1.0)  # connections the attack left finish closing
            gc.collect()
            rss = rss_mb(os.getpid())
            trim()
            out.append(
                {
                    "rss": rss,
                    "trimmed": rss_mb(os.getpid()),
                    "blocks": sys.getallocatedblocks(),
                    "objects": len(gc.get_objects()),
                    "tasks": len(asyncio.all_tasks()),
                }
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--protocol", choices=sorted(SECTIONS), default="http")
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--count", type=int, default=10_000, help="inputs per pass")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import logging

    logging.disable(logging.ERROR)  # aiohttp logs every malformed request with a traceback
    rows = asyncio.run(passes(a.protocol, a.passes, a.count, a.seed))
    print(f"\n{a.protocol}: {a.count} hostile inputs a pass, in this process")
    print(f"{'pass':>4}{'RSS MB':>9}{'trimmed':>9}{'blocks':>10}{'objects':>9}{'tasks':>7}")
    for i, r in enumerate(rows, start=1):
        print(
            f"{i:>4}{r['rss']:>9.1f}{r['trimmed']:>9.1f}{r['blocks']:>10}"
            f"{r['objects']:>9}{r['tasks']:>7}"
        )
    growth = rows[-1]["blocks"] / rows[0]["blocks"] - 1
    ok = growth < BLOCKS_GROWTH_LIMIT
    run_record.add(protocol=a.protocol, passes=rows, blocks_growth=growth)
    print(
        f"allocated blocks, last pass / first: {growth:+.1%} "
        f"(target < {BLOCKS_GROWTH_LIMIT:.0%}): {'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_record.recorded("fuzz_memory", main))
