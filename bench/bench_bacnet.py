"""BACnet/IP device at full scale: 32 strings x 120 cells (23,617 objects).

Measures, in one run:
* start-up of the device (objects built, port bound, first plant applied),
* RSS of the process holding the device (a child process: the plugin's
  share is the growth from before start-up to after the first snapshots,
  and to after 1,000 COV subscriptions and the client phase),
* time to apply one full plant snapshot in which every value changed, one in
  which nothing changed, one that takes every string offline, and one with
  1,000 objects under COV subscription (their notifications sent), and the
  mean time to apply one 120-cell reading (256 readings of 8 plants whose
  every value differs from the last),
* ReadPropertyMultiple throughput (present values per second) from a
  bacpypes3 client in this process (and, to tell the device's share from the
  client's, from rusty-bacnet), and one read of the whole object list,
* side by side, stock bacpypes3 local objects against this plugin's views:
  memory per analog input (tracemalloc), writing one 120-cell reading into
  600 analog inputs, and reading one element of the device's object list.

Targets: start-up < 5 s, plugin RSS < 30 MB started and < 200 MB serving,
full snapshot < 0.2 s, one reading < 0.1 ms. Exits 1 when one is missed.
Bounded: each RPM phase stops after 15 s.

    python bench/bench_bacnet.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import run_record

STRINGS, UPS, CELLS = 32, 8, 120
TARGETS = {"startup_s": 5.0, "plugin_rss_mb": 200.0, "started_rss_mb": 30.0,
           "apply_full_s": 0.2, "apply_reading_ms": 0.1}  # fmt: skip
PLANTS = 8  # distinct plants cycled through for the per-reading figure
RPM_BATCH, RPM_LIMIT_S = 50, 15.0
SUBSCRIBED = 1000


def rss_mb(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def plant(offset: float, quality: Any = None) -> tuple[Any, list[Any]]:
    from dataclasses import replace

    from btms_gateway.core.model import Quality, StringSnapshot
    from btms_gateway.core.store import SnapshotStore
    from btms_gateway.kit.testing import make_reading

    strings = [
        StringSnapshot(f"S{i}", i, f"UPS{(i - 1) % UPS + 1}", (i - 1) % UPS + 1, i, "bus1",
                       Quality.OFFLINE, None, 0.0)
        for i in range(1, STRINGS + 1)
    ]  # fmt: skip
    store = SnapshotStore(strings, [(f"UPS{u}", u) for u in range(1, UPS + 1)])
    snaps = []
    for s in strings:
        reading = make_reading(CELLS, cell_voltage_v=2.2 + offset, current_a=-10 - offset * 100)
        snap = replace(s, reading=reading, quality=quality or Quality.GOOD)
        store.publish(snap)
        snaps.append(snap)
    return store.snapshot, snaps


async def serve(port: int) -> None:
    """The child: hold the device, report timings as JSON, serve until stdin closes."""
    from btms_gateway.core.model import Quality
    from btms_gateway.plugins.bacnet.service import BacnetService
    from btms_gateway.plugins.bacnet.settings import BacnetSettings

    first, _ = plant(0.0)
    second, changed = plant(0.05)
    _, offline = plant(0.05, Quality.OFFLINE)
    _, moved = plant(0.1)
    cycle = [plant(0.2 + 0.001 * n) for n in range(PLANTS)]
    before = rss_mb()  # the test data above is not the plugin's
    svc = BacnetService(BacnetSettings(address=f"127.0.0.1/8:{port}"))
    started = time.perf_counter()
    await svc.start(first, [])
    startup = time.perf_counter() - started
    timings = {}
    for label, snaps, ups in (("apply_full_s", changed, second), ("apply_same_s", changed, second),
                              ("apply_offline_s", offline, second)):  # fmt: skip
        t = time.perf_counter()
        for s in snaps:
            svc.on_reading(s, ups)
        timings[label] = time.perf_counter() - t
    timings["rss_started_mb"] = rss_mb()
    t, n = time.perf_counter(), 0
    for _ in range(2):
        for ups, snaps in cycle:
            for s in snaps:
                svc.on_reading(s, ups)
                n += 1
    timings["apply_reading_ms"] = (time.perf_counter() - t) / n * 1e3
    timings["apply_subscribed_s"] = await apply_subscribed(svc, first, moved)
    for s in changed:  # back to GOOD for the client phase
        svc.on_reading(s, second)
    await asyncio.sleep(0.5)  # let the notifications of the last two steps go out
    result = {"startup_s": startup, "objects": len(svc.objects) + 2, "rss_before_mb": before,
              "rss_after_mb": rss_mb(), **timings}  # fmt: skip
    print(json.dumps(result), flush=True)
    loop = asyncio.get_running_loop()
    # after the parent has taken the serving RSS (the stock objects built here
    # would count in it): S32, which has no COV subscriber
    if await loop.run_in_executor(None, sys.stdin.readline):
        print(json.dumps(side_by_side(svc, [snaps[-1] for _, snaps in cycle])), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
    svc.stop()


async def apply_subscribed(svc: Any, ups: Any, snaps: list[Any]) -> float:
    """A full snapshot (every value changed) with SUBSCRIBED cell voltages under
    unconfirmed COV subscriptions, until every notification is handed to the
    stack (addressed to the UDP discard port): the cost of the path that goes
    through bacpypes3's property machinery and COV criteria."""
    from bacpypes3.pdu import Address
    from bacpypes3.service.cov import Subscription

    app, sink = svc.app, Address("127.0.0.1:9")
    volts = [p for p in svc.points if p.scope == "cell" and p.quantity.key == "voltage"]
    cells = [svc.objects[p.oid] for p in volts[:SUBSCRIBED]]  # each one moves by 0.1 V
    for n, obj in enumerate(cells):
        oid = obj.objectIdentifier
        detection = app._cov_detections[oid] = obj._cov_criteria(obj)
        detection.add_subscription(Subscription(obj, sink, n, oid, False, 0, None))
    sent = 0
    stock = app.cov_notification

    def counting(cov: Any, request: Any) -> None:
        nonlocal sent
        sent += 1
        stock(cov, request)

    app.cov_notification = counting
    t = time.perf_counter()
    for s in snaps:
        svc.on_reading(s, ups)
    while sent < SUBSCRIBED and time.perf_counter() - t < 10:
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - t
    app.cov_notification = stock
    return elapsed


def side_by_side(svc: Any, snaps: list[Any]) -> dict[str, float]:
    """Stock bacpypes3 local objects against this plugin's views, in one
    process. ``snaps``: one string's readings, each value differing from the
    one before."""
    import tracemalloc

    from bacpypes3.local.analog import AnalogInputObject
    from bacpypes3.local.device import DeviceObject
    from btms_gateway.plugins.bacnet.image import Image
    from btms_gateway.plugins.bacnet.service import points_for

    points = [p for p in svc.points if p.kind == "analogInput"][:1000]
    tracemalloc.start()
    stock = [
        AnalogInputObject(
            objectIdentifier=("analogInput", 4_000_000 + n),
            objectName=p.name,
            presentValue=0.0,
            units=p.quantity.units,
            covIncrement=p.quantity.cov_increment,
            description=p.description,
            statusFlags=[0, 0, 0, 0],
            eventState="normal",
            outOfService=False,
        )
        for n, p in enumerate(points)
    ]
    stock_bytes = tracemalloc.get_traced_memory()[0] / len(stock)
    tracemalloc.stop()
    tracemalloc.start()  # this plugin: the table rows and the image, whole plant
    table = points_for(svc.settings, _layout(svc))
    image = Image(table)
    view_bytes = tracemalloc.get_traced_memory()[0] / len(table)
    tracemalloc.stop()
    del image, table
    # one 120-cell reading into 600 stock analog inputs, the straightforward way
    reading = snaps[0].reading
    cells = [(obj, p.cell, str(p.quantity.source)) for obj, p in zip(stock[:600], (
        q for q in svc.points if q.scope == "cell"), strict=False)]  # fmt: skip
    t = time.perf_counter()
    for obj, c, attr in cells:
        obj.presentValue = getattr(reading.cells[c - 1], attr)
        obj.reliability = "noFaultDetected"
    stock_apply = time.perf_counter() - t
    t = time.perf_counter()
    for s in snaps[:8]:
        svc.image.apply_string(s)
    view_apply = (time.perf_counter() - t) / 8
    device = svc.app.device_object
    t = time.perf_counter()
    _ = DeviceObject.objectList.fget(device)[20000]  # the stock property: rebuilt per read
    stock_list = time.perf_counter() - t
    t = time.perf_counter()
    _ = device.objectList[20000]
    view_list = time.perf_counter() - t
    return {"stock_bytes_per_ai": stock_bytes, "view_bytes_per_object": view_bytes,
            "stock_apply_reading_s": stock_apply, "view_apply_reading_s": view_apply,
            "stock_object_list_s": stock_list, "cached_object_list_s": view_list}  # fmt: skip


def _layout(svc: Any) -> Any:
    from btms_gateway.plugins.bacnet.objects import Layout

    return Layout(
        tuple((f"UPS{u}", u) for u in range(1, UPS + 1)),
        tuple((f"S{i}", i, f"UPS{(i - 1) % UPS + 1}") for i in range(1, STRINGS + 1)),
    )


async def client_phase(port: int) -> dict[str, float]:
    from bacpypes3.pdu import Address
    from btms_gateway.kit.bacnet_client import make_client, oid
    from btms_gateway.kit.ports import free_udp_port
    from btms_gateway.plugins.bacnet.objects import cell_instance

    app = make_client(free_udp_port())
    address = Address(f"127.0.0.1:{port}")
    try:
        t = time.perf_counter()
        [(_, _, _, objects)] = await app.read_property_multiple(
            address, [oid("device", 47808), ["objectList"]]
        )
        list_s = time.perf_counter() - t
        cells = [oid("analogInput", cell_instance(s, c, q)) for s in range(1, STRINGS + 1)
                 for c in range(1, CELLS + 1) for q in range(5)]  # fmt: skip
        values, started = 0, time.perf_counter()
        for i in range(0, len(cells), RPM_BATCH):
            request: list[Any] = []
            for o in cells[i : i + RPM_BATCH]:
                request += [o, ["presentValue"]]
            values += len(await app.read_property_multiple(address, request))
            if time.perf_counter() - started > RPM_LIMIT_S:
                break
        elapsed = time.perf_counter() - started
    finally:
        app.close()
    return {"object_list_entries": len(objects), "object_list_rpm_s": list_s,
            "rpm_values": values, "rpm_values_per_s": values / elapsed,
            **await rusty_phase(port, len(cells))}  # fmt: skip


async def rusty_phase(port: int, count: int) -> dict[str, float]:
    """The same reads from rusty-bacnet (a Rust client), to separate the
    device's share of the time from the bacpypes3 client's decoding."""
    import rusty_bacnet as rb
    from btms_gateway.kit.ports import free_udp_port
    from btms_gateway.plugins.bacnet.objects import cell_instance

    ai, pv = rb.ObjectType.ANALOG_INPUT, rb.PropertyIdentifier.PRESENT_VALUE
    cells = [rb.ObjectIdentifier(ai, cell_instance(s, c, q)) for s in range(1, STRINGS + 1)
             for c in range(1, CELLS + 1) for q in range(5)][:count]  # fmt: skip
    async with rb.BACnetClient(
        interface="127.0.0.1", port=free_udp_port(), broadcast_address="127.255.255.255"
    ) as client:
        t = time.perf_counter()
        whole = await client.read_property(
            f"127.0.0.1:{port}", rb.ObjectIdentifier(rb.ObjectType.DEVICE, 47808),
            rb.PropertyIdentifier.OBJECT_LIST,
        )  # fmt: skip
        list_s = time.perf_counter() - t
        values, started = 0, time.perf_counter()
        for i in range(0, len(cells), RPM_BATCH):
            batch = [(o, [(pv, None)]) for o in cells[i : i + RPM_BATCH]]
            values += len(await client.read_property_multiple(f"127.0.0.1:{port}", batch))
            if time.perf_counter() - started > RPM_LIMIT_S:
                break
        rate = values / (time.perf_counter() - started)
    return {"rusty_rpm_values_per_s": rate, "rusty_object_list_s": list_s,
            "rusty_object_list_entries": len(whole.value)}  # fmt: skip


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(serve(int(sys.argv[2])))
        return 0
    from btms_gateway.kit.ports import free_udp_port

    port = free_udp_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            print("the device process failed to start", file=sys.stderr)
            return 1
        r = json.loads(line)
        r.update(asyncio.run(asyncio.wait_for(client_phase(port), RPM_LIMIT_S + 30)))
        r["rss_serving_mb"] = rss_mb(str(child.pid))
        assert child.stdin is not None
        child.stdin.write("side by side\n")
        child.stdin.flush()
        r.update(json.loads(child.stdout.readline()))
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(10)
    r["plugin_rss_mb"] = r["rss_serving_mb"] - r["rss_before_mb"]
    run_record.add(r)
    return report(r)


def report(r: dict[str, float]) -> int:
    print(f"BACnet/IP device, {STRINGS} strings x {CELLS} cells: {r['objects']:.0f} objects")
    print(f"{'measure':<44}{'value':>12}{'target':>10}{'ratio':>8}  ok")
    rows = [
        ("start-up (build, bind, first plant) [s]", r["startup_s"], TARGETS["startup_s"]),
        (
            "plugin RSS growth, started [MB]",
            r["rss_started_mb"] - r["rss_before_mb"],
            TARGETS["started_rss_mb"],
        ),
        (
            "plugin RSS growth, serving, subscribed [MB]",
            r["plugin_rss_mb"],
            TARGETS["plugin_rss_mb"],
        ),
        ("process RSS, serving [MB]", r["rss_serving_mb"], None),
        ("full snapshot, every value changed [s]", r["apply_full_s"], TARGETS["apply_full_s"]),
        ("full snapshot, nothing changed [s]", r["apply_same_s"], None),
        (
            "one 120-cell reading, values changed [ms]",
            r["apply_reading_ms"],
            TARGETS["apply_reading_ms"],
        ),
        ("full snapshot, every string offline [s]", r["apply_offline_s"], None),
        (f"full snapshot, {SUBSCRIBED:,} objects subscribed [s]", r["apply_subscribed_s"], None),
        ("RPM present values/s, bacpypes3 client", r["rpm_values_per_s"], None),
        ("RPM present values/s, rusty-bacnet client", r["rusty_rpm_values_per_s"], None),
        ("whole object list, bacpypes3 client [s]", r["object_list_rpm_s"], None),
        ("whole object list, rusty-bacnet client [s]", r["rusty_object_list_s"], None),
    ]
    failed = False
    for name, value, target in rows:
        ok = "" if target is None else ("yes" if value < target else "NO")
        failed |= ok == "NO"
        ratio = "" if target is None else f"{target / max(value, 1e-9):.1f}x"
        tgt = "" if target is None else f"< {target:g}"
        print(f"{name:<44}{value:>12.3f}{tgt:>10}{ratio:>8}  {ok}")
    print("side by side (stock bacpypes3 local objects / this plugin's views):")
    for name, stock, ours, fmt in (
        ("memory per analog input [bytes]", r["stock_bytes_per_ai"],
         r["view_bytes_per_object"], ".0f"),
        ("one reading into 600 analog inputs [s]", r["stock_apply_reading_s"],
         r["view_apply_reading_s"], ".6f"),
        ("read object-list[20000] [s]", r["stock_object_list_s"],
         r["cached_object_list_s"], ".6f"),
    ):  # fmt: skip
        print(f"  {name:<42}{stock:>10{fmt}} / {ours:{fmt}}  = {stock / max(ours, 1e-9):.0f}x")
    for key in ("object_list_entries", "rusty_object_list_entries"):
        if r[key] != r["objects"]:
            print(f"{key}: {r[key]} entries, expected {r['objects']}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_record.recorded("bench_bacnet", main))
